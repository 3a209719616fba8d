//! Access log lists: compiling each logger type and format flavour, the
//! errors (with their paths) for what Sluice does not accept, and lines
//! actually reaching a file.

use super::*;
use crate::formatter::tests::{empty_info, filled_info};
use crate::stats::Store;
use envoy_types::pb::envoy::config::accesslog::v3::{access_log::ConfigType, AccessLogFilter};
use envoy_types::pb::envoy::config::core::v3::{
    data_source::Specifier, substitution_format_string::Format, DataSource,
    SubstitutionFormatString, TypedExtensionConfig,
};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::{
    file_access_log::AccessLogFormat as FileFormat, FileAccessLog,
};
use envoy_types::pb::envoy::extensions::access_loggers::stream::v3::{
    stdout_access_log, StderrAccessLog, StdoutAccessLog,
};
use envoy_types::pb::google::protobuf::{value::Kind, Any, Struct, Value};
use prost::{Message, Name};
use std::path::Path;
use std::time::{Duration, Instant};

fn entry<T: Message + Name>(config: &T) -> AccessLog {
    AccessLog {
        name: "test".into(),
        filter: None,
        config_type: Some(ConfigType::TypedConfig(Any {
            type_url: T::type_url(),
            value: config.encode_to_vec(),
        })),
    }
}

fn file_logger(path: &Path, format: Option<FileFormat>) -> AccessLog {
    entry(&FileAccessLog {
        path: path.to_string_lossy().into_owned(),
        access_log_format: format,
    })
}

fn text_source(text: &str) -> SubstitutionFormatString {
    SubstitutionFormatString {
        format: Some(Format::TextFormatSource(DataSource {
            specifier: Some(Specifier::InlineString(text.into())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn json_struct(fields: &[(&str, &str)]) -> Struct {
    Struct {
        fields: fields
            .iter()
            .map(|(key, value)| {
                let value = Value {
                    kind: Some(Kind::StringValue((*value).into())),
                };
                (key.to_string(), value)
            })
            .collect(),
    }
}

fn format_of(config: AccessLog) -> String {
    let writers = AccessLogWriters::new(&Store::new());
    let logs = AccessLogs::compile(&[config], &writers).unwrap();
    let mut line = String::new();
    logs.loggers[0]
        .format
        .format_into(&filled_info(), &mut line);
    line
}

/// Reads `path` until it holds `lines` lines or five seconds pass.
fn wait_for_lines(path: &Path, lines: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= lines || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn default_format_matches_envoys_example_line() {
    let dir = tempfile::tempdir().unwrap();
    let line = format_of(file_logger(&dir.path().join("a.log"), None));
    assert_eq!(
        line,
        "[2016-04-15T20:17:00.310Z] \"POST /api/v1/locations HTTP/2\" 204 UT,UF 154 0 226 100 \
         \"10.0.35.28\" \"nsq2http\" \"cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2\" \"locations\" \
         \"10.0.2.1:80\"\n"
    );
}

#[test]
fn default_format_for_an_empty_request_prints_dashes() {
    let writers = AccessLogWriters::new(&Store::new());
    let dir = tempfile::tempdir().unwrap();
    let logs =
        AccessLogs::compile(&[file_logger(&dir.path().join("a.log"), None)], &writers).unwrap();
    let mut line = String::new();
    logs.loggers[0].format.format_into(&empty_info(), &mut line);
    assert_eq!(
        line,
        "[2016-04-15T20:17:00.310Z] \"- - -\" 0 - 0 0 - - \"-\" \"-\" \"-\" \"-\" \"-\"\n"
    );
}

#[test]
#[allow(deprecated)]
fn every_file_format_flavour_compiles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    let source = FileFormat::LogFormat(text_source("%RESPONSE_CODE% %PROTOCOL%"));
    assert_eq!(format_of(file_logger(&path, Some(source))), "204 HTTP/2");
    let deprecated_text = FileFormat::LogFormat(SubstitutionFormatString {
        format: Some(Format::TextFormat("%RESPONSE_CODE%\n".into())),
        ..Default::default()
    });
    assert_eq!(
        format_of(file_logger(&path, Some(deprecated_text))),
        "204\n"
    );
    let top_level = FileFormat::Format("code=%RESPONSE_CODE%".into());
    assert_eq!(format_of(file_logger(&path, Some(top_level))), "code=204");
    let empty_top_level = FileFormat::Format(String::new());
    assert!(format_of(file_logger(&path, Some(empty_top_level))).starts_with("[2016-"));
    let json = json_struct(&[("code", "%RESPONSE_CODE%"), ("proto", "%PROTOCOL%")]);
    let expected = "{\"code\":204,\"proto\":\"HTTP/2\"}\n";
    for format in [
        FileFormat::JsonFormat(json.clone()),
        FileFormat::TypedJsonFormat(json.clone()),
        FileFormat::LogFormat(SubstitutionFormatString {
            format: Some(Format::JsonFormat(json)),
            ..Default::default()
        }),
    ] {
        assert_eq!(format_of(file_logger(&path, Some(format))), expected);
    }
}

#[test]
fn omit_empty_values_applies_to_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let writers = AccessLogWriters::new(&Store::new());
    let mut text = text_source("[%REQ(X-MISSING)%]");
    text.omit_empty_values = true;
    let json = SubstitutionFormatString {
        format: Some(Format::JsonFormat(json_struct(&[(
            "m",
            "%REQ(X-MISSING)%",
        )]))),
        omit_empty_values: true,
        ..Default::default()
    };
    let configs = [text, json].map(|format| {
        file_logger(
            &dir.path().join("a.log"),
            Some(FileFormat::LogFormat(format)),
        )
    });
    let logs = AccessLogs::compile(&configs, &writers).unwrap();
    let mut lines = String::new();
    for logger in &logs.loggers {
        logger.format.format_into(&filled_info(), &mut lines);
    }
    assert_eq!(lines, "[]{}\n");
}

#[test]
fn file_logger_writes_lines_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    std::fs::write(&path, "existing\n").unwrap();
    let store = Store::new();
    let writers = AccessLogWriters::new(&store);
    let format = FileFormat::LogFormat(text_source("%REQ(:METHOD)% %RESPONSE_CODE%\n"));
    let logs = AccessLogs::compile(&[file_logger(&path, Some(format))], &writers).unwrap();
    logs.log(&filled_info());
    logs.log(&empty_info());
    assert_eq!(wait_for_lines(&path, 3), "existing\nPOST 204\n- 0\n");
    assert_eq!(store.counter("filesystem.write_buffered").value(), 2);
}

#[test]
fn two_loggers_on_one_path_share_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.log");
    let writers = AccessLogWriters::new(&Store::new());
    let a = FileFormat::LogFormat(text_source("a\n"));
    let b = FileFormat::LogFormat(text_source("b\n"));
    let first = AccessLogs::compile(&[file_logger(&path, Some(a))], &writers).unwrap();
    let second = AccessLogs::compile(&[file_logger(&path, Some(b))], &writers).unwrap();
    assert!(Arc::ptr_eq(
        &first.loggers[0].writer,
        &second.loggers[0].writer
    ));
    first.log(&empty_info());
    second.log(&empty_info());
    assert_eq!(wait_for_lines(&path, 2), "a\nb\n");
}

#[test]
fn stdout_and_stderr_loggers_compile() {
    let writers = AccessLogWriters::new(&Store::new());
    let configs = [
        entry(&StdoutAccessLog::default()),
        entry(&StdoutAccessLog {
            access_log_format: Some(stdout_access_log::AccessLogFormat::LogFormat(text_source(
                "%PROTOCOL%\n",
            ))),
        }),
        entry(&StderrAccessLog::default()),
    ];
    let logs = AccessLogs::compile(&configs, &writers).unwrap();
    assert_eq!(logs.loggers.len(), 3);
    let mut line = String::new();
    logs.loggers[1]
        .format
        .format_into(&filled_info(), &mut line);
    assert_eq!(line, "HTTP/2\n");
}

#[test]
fn needs_request_headers_only_when_a_format_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    let writers = AccessLogWriters::new(&Store::new());
    let compile = |format: Option<FileFormat>| {
        AccessLogs::compile(&[file_logger(&path, format)], &writers).unwrap()
    };
    assert!(compile(None).needs_request_headers());
    let pseudo_only = FileFormat::LogFormat(text_source("%REQ(:METHOD)% %REQ(:PATH)%"));
    assert!(!compile(Some(pseudo_only)).needs_request_headers());
    assert!(!AccessLogs::default().needs_request_headers());
}

fn errors_of(configs: &[AccessLog]) -> Vec<String> {
    let writers = AccessLogWriters::new(&Store::new());
    AccessLogs::compile(configs, &writers)
        .unwrap_err()
        .0
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn unknown_logger_type_is_an_error_at_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut unknown = file_logger(&dir.path().join("a.log"), None);
    let Some(ConfigType::TypedConfig(any)) = &mut unknown.config_type else {
        unreachable!()
    };
    any.type_url =
        "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig"
            .into();
    let errors = errors_of(&[file_logger(&dir.path().join("b.log"), None), unknown]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("[1].typed_config: access logger type 'envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig' is not supported"),
        "{errors:?}"
    );
    let missing = AccessLog {
        name: "x".into(),
        ..Default::default()
    };
    assert!(errors_of(&[missing])[0].starts_with("[0].typed_config: access log 'x' needs"));
}

#[test]
fn unopenable_file_is_an_error_naming_the_path() {
    let errors = errors_of(&[file_logger(Path::new("/nonexistent-dir/x/a.log"), None)]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(
            "[0].typed_config.path: cannot open access log file \"/nonexistent-dir/x/a.log\""
        ),
        "{errors:?}"
    );
    let errors = errors_of(&[entry(&FileAccessLog::default())]);
    assert_eq!(
        errors,
        ["[0].typed_config.path: access log path must not be empty"]
    );
}

#[test]
fn unsupported_fields_are_errors_with_paths() {
    let dir = tempfile::tempdir().unwrap();
    let mut filtered = file_logger(&dir.path().join("a.log"), None);
    filtered.filter = Some(AccessLogFilter::default());
    assert_eq!(
        errors_of(&[filtered]),
        ["[0].filter: field 'filter' is not supported by Sluice"]
    );
    let mut with_formatters = text_source("%PROTOCOL%");
    with_formatters
        .formatters
        .push(TypedExtensionConfig::default());
    let config = file_logger(
        &dir.path().join("a.log"),
        Some(FileFormat::LogFormat(with_formatters)),
    );
    assert_eq!(
        errors_of(&[config]),
        ["[0].typed_config.log_format.formatters: field 'formatters' is not supported by Sluice"]
    );
}

#[test]
#[allow(deprecated)]
fn bad_format_strings_are_errors_at_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    let cases = [
        (
            FileFormat::LogFormat(text_source("%REQ%")),
            "[0].typed_config.log_format.text_format_source: format \"%REQ%\": REQ requires parameters",
        ),
        (
            FileFormat::Format("%NOPE%".into()),
            "[0].typed_config.format: format \"%NOPE%\": Not supported field in StreamInfo: NOPE",
        ),
        (
            FileFormat::JsonFormat(json_struct(&[("k", "%REQ(%")])),
            "[0].typed_config.json_format.k: format \"%REQ(%\": Incorrect configuration",
        ),
        (
            FileFormat::LogFormat(SubstitutionFormatString::default()),
            "[0].typed_config.log_format: one of text_format",
        ),
    ];
    for (format, expected) in cases {
        let errors = errors_of(&[file_logger(&path, Some(format))]);
        assert!(errors[0].starts_with(expected), "{errors:?}");
    }
}

#[test]
fn compiled_logs_can_be_shared_across_worker_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<AccessLogs>();
    shareable::<FormatString>();
    shareable::<JsonFormat>();
}
