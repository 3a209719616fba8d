//! Compiling one `envoy.config.accesslog.v3.AccessLog` entry: its typed
//! config (file, stdout or stderr logger) into a format and a destination.
//! Error paths are relative to the entry (`typed_config.log_format…`).

use envoy_types::pb::envoy::config::accesslog::v3::{access_log::ConfigType, AccessLog};
use envoy_types::pb::envoy::config::core::v3::{
    data_source::Specifier, substitution_format_string::Format, DataSource,
    SubstitutionFormatString,
};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::{
    file_access_log::AccessLogFormat as FileFormat, FileAccessLog,
};
use envoy_types::pb::envoy::extensions::access_loggers::stream::v3::{
    stderr_access_log, stdout_access_log, StderrAccessLog, StdoutAccessLog,
};
use prost::Name;

use super::writer::Destination;
use super::LogFormat;
use crate::config::proto::{type_name, unpack};
use crate::config::{ConfigError, ConfigErrors};
use crate::formatter::{FormatString, JsonFormat};

/// Envoy's format when a logger sets none (HTTP and TCP alike).
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// What one entry compiles to, before its destination is opened.
pub(super) struct LoggerConfig {
    pub format: LogFormat,
    pub destination: Destination,
    /// Path of the field naming the destination, for open errors.
    pub destination_path: &'static str,
}

pub(super) fn compile_entry(entry: &AccessLog) -> Result<LoggerConfig, ConfigErrors> {
    if entry.filter.is_some() {
        return Err(ConfigError::new("filter", "field 'filter' is not supported by Sluice").into());
    }
    let Some(ConfigType::TypedConfig(any)) = &entry.config_type else {
        return Err(ConfigError::new(
            "typed_config",
            format!("access log '{}' needs a typed_config", entry.name),
        )
        .into());
    };
    let in_typed_config = |errors: ConfigErrors| {
        let mut out = ConfigErrors::default();
        out.extend_under("typed_config", errors);
        out
    };
    let type_name = type_name(&any.type_url);
    if type_name == FileAccessLog::full_name() {
        let config: FileAccessLog = unpack(any).map_err(|e| in_typed_config(e.into()))?;
        compile_file(&config).map_err(in_typed_config)
    } else if type_name == StdoutAccessLog::full_name() {
        let config: StdoutAccessLog = unpack(any).map_err(|e| in_typed_config(e.into()))?;
        let format = config
            .access_log_format
            .map(|stdout_access_log::AccessLogFormat::LogFormat(format)| format);
        stream_logger(format.as_ref(), Destination::Stdout).map_err(in_typed_config)
    } else if type_name == StderrAccessLog::full_name() {
        let config: StderrAccessLog = unpack(any).map_err(|e| in_typed_config(e.into()))?;
        let format = config
            .access_log_format
            .map(|stderr_access_log::AccessLogFormat::LogFormat(format)| format);
        stream_logger(format.as_ref(), Destination::Stderr).map_err(in_typed_config)
    } else {
        Err(ConfigError::new(
            "typed_config",
            format!(
                "access logger type '{type_name}' is not supported by Sluice \
                 (supported: {}, {}, {})",
                FileAccessLog::full_name(),
                StdoutAccessLog::full_name(),
                StderrAccessLog::full_name()
            ),
        )
        .into())
    }
}

fn stream_logger(
    format: Option<&SubstitutionFormatString>,
    destination: Destination,
) -> Result<LoggerConfig, ConfigErrors> {
    let format = match format {
        Some(format) => compile_substitution(format).map_err(|errors| {
            let mut out = ConfigErrors::default();
            out.extend_under("log_format", errors);
            out
        })?,
        None => default_format(),
    };
    Ok(LoggerConfig {
        format,
        destination,
        destination_path: "",
    })
}

#[allow(deprecated)] // `format`, `json_format`, `typed_json_format` are Envoy's deprecated fields
fn compile_file(config: &FileAccessLog) -> Result<LoggerConfig, ConfigErrors> {
    if config.path.is_empty() {
        return Err(ConfigError::new("path", "access log path must not be empty").into());
    }
    let under = |field: &str, errors: ConfigErrors| {
        let mut out = ConfigErrors::default();
        out.extend_under(field, errors);
        out
    };
    let format = match &config.access_log_format {
        None => default_format(),
        Some(FileFormat::Format(text)) if text.is_empty() => default_format(),
        Some(FileFormat::Format(text)) => LogFormat::Text(
            FormatString::parse(text)
                .map_err(|e| ConfigErrors::from(ConfigError::new("format", e)))?,
        ),
        Some(FileFormat::JsonFormat(format)) => LogFormat::Json(
            JsonFormat::compile(format, false).map_err(|e| under("json_format", e))?,
        ),
        Some(FileFormat::TypedJsonFormat(format)) => LogFormat::Json(
            JsonFormat::compile(format, false).map_err(|e| under("typed_json_format", e))?,
        ),
        Some(FileFormat::LogFormat(format)) => {
            compile_substitution(format).map_err(|e| under("log_format", e))?
        }
    };
    Ok(LoggerConfig {
        format,
        destination: Destination::for_path(&config.path),
        destination_path: "path",
    })
}

fn default_format() -> LogFormat {
    LogFormat::Text(FormatString::parse(DEFAULT_FORMAT).expect("Envoy's default format parses"))
}

/// A `SubstitutionFormatString`. `content_type` and `json_format_options`
/// are accepted: Envoy's access loggers ignore the first, and JSON keys are
/// always sorted, which is all the second can ask for.
#[allow(deprecated)] // `text_format` is deprecated in favour of `text_format_source`
pub(super) fn compile_substitution(
    config: &SubstitutionFormatString,
) -> Result<LogFormat, ConfigErrors> {
    if !config.formatters.is_empty() {
        return Err(ConfigError::new(
            "formatters",
            "field 'formatters' is not supported by Sluice",
        )
        .into());
    }
    let omit = config.omit_empty_values;
    let text = |field: &str, text: &str| -> Result<LogFormat, ConfigErrors> {
        FormatString::parse(text)
            .map(|format| LogFormat::Text(format.with_omit_empty_values(omit)))
            .map_err(|message| ConfigError::new(field, message).into())
    };
    match &config.format {
        None => Err(ConfigError::new(
            "",
            "one of text_format, text_format_source or json_format must be set",
        )
        .into()),
        Some(Format::TextFormat(format)) => text("text_format", format),
        Some(Format::TextFormatSource(source)) => {
            let format = read_data_source(source)
                .map_err(|e| ConfigErrors::from(e.under("text_format_source")))?;
            text("text_format_source", &format)
        }
        Some(Format::JsonFormat(format)) => JsonFormat::compile(format, omit)
            .map(LogFormat::Json)
            .map_err(|errors| {
                let mut out = ConfigErrors::default();
                out.extend_under("json_format", errors);
                out
            }),
    }
}

fn read_data_source(source: &DataSource) -> Result<String, ConfigError> {
    if source.watched_directory.is_some() {
        return Err(ConfigError::new(
            "watched_directory",
            "field 'watched_directory' is not supported by Sluice",
        ));
    }
    match &source.specifier {
        Some(Specifier::InlineString(text)) => Ok(text.clone()),
        Some(Specifier::InlineBytes(bytes)) => String::from_utf8(bytes.clone())
            .map_err(|_| ConfigError::new("inline_bytes", "format is not valid UTF-8")),
        Some(Specifier::Filename(path)) => std::fs::read_to_string(path).map_err(|error| {
            ConfigError::new("filename", format!("cannot read \"{path}\": {error}"))
        }),
        Some(Specifier::EnvironmentVariable(name)) => std::env::var(name).map_err(|_| {
            ConfigError::new(
                "environment_variable",
                format!("environment variable \"{name}\" is not set"),
            )
        }),
        None => Err(ConfigError::new("", "a data source must be set")),
    }
}
