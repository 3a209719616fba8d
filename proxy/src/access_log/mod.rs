//! Access logs: the `access_log` lists of the HTTP connection manager,
//! tcp_proxy and listeners, compiled into [`AccessLogs`]. Each logger
//! formats a finished request's [`StreamInfo`] and hands the line to a
//! writer thread (see [`writer`]), so logging never blocks a worker.
//!
//! Supported loggers: `envoy.extensions.access_loggers.file.v3.FileAccessLog`,
//! `envoy.extensions.access_loggers.stream.v3.StdoutAccessLog` and
//! `StderrAccessLog`. Without a format, Envoy's default format is used;
//! custom text formats are written exactly as given (no newline is added,
//! as in Envoy), JSON formats one object per line.

mod config;
pub mod writer;

use std::sync::Arc;

use envoy_types::pb::envoy::config::accesslog::v3::AccessLog;

use crate::config::ConfigErrors;
use crate::formatter::{FormatString, JsonFormat};
use crate::stream_info::StreamInfo;

pub use config::DEFAULT_FORMAT;
pub use writer::{AccessLogWriters, Destination};

use writer::LogWriter;

/// How a logger turns a [`StreamInfo`] into a line.
#[derive(Debug, Clone, PartialEq)]
pub enum LogFormat {
    Text(FormatString),
    Json(JsonFormat),
}

impl LogFormat {
    /// Appends one log line to `out`.
    pub fn format_into(&self, info: &StreamInfo, out: &mut String) {
        match self {
            LogFormat::Text(format) => format.format_into(info, out),
            LogFormat::Json(format) => format.format_line_into(info, out),
        }
    }

    fn reads_request_headers(&self) -> bool {
        match self {
            LogFormat::Text(format) => format.reads_request_headers(),
            LogFormat::Json(format) => format.reads_request_headers(),
        }
    }
}

#[derive(Debug)]
struct Logger {
    format: LogFormat,
    writer: Arc<LogWriter>,
}

/// A compiled `access_log` list. Empty by default.
#[derive(Debug, Default)]
pub struct AccessLogs {
    loggers: Vec<Logger>,
    needs_request_headers: bool,
}

impl AccessLogs {
    /// Compiles `configs`, opening each destination (append mode) now so a
    /// bad path fails the configuration. Error paths are relative to the
    /// list: `[0].typed_config.path`.
    pub fn compile(
        configs: &[AccessLog],
        writers: &AccessLogWriters,
    ) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut loggers = Vec::with_capacity(configs.len());
        for (index, entry) in configs.iter().enumerate() {
            let prefix = format!("[{index}]");
            let compiled = match config::compile_entry(entry) {
                Ok(compiled) => compiled,
                Err(entry_errors) => {
                    errors.extend_under(&prefix, entry_errors);
                    continue;
                }
            };
            match writers.writer(&compiled.destination) {
                Ok(writer) => loggers.push(Logger {
                    format: compiled.format,
                    writer,
                }),
                Err(error) => {
                    let path = crate::config::error::join_path(
                        &format!("{prefix}.typed_config"),
                        compiled.destination_path,
                    );
                    errors.push(crate::config::ConfigError::new(
                        path,
                        format!(
                            "cannot open access log file \"{}\": {error}",
                            compiled.destination
                        ),
                    ));
                }
            }
        }
        let needs_request_headers = loggers
            .iter()
            .any(|logger| logger.format.reads_request_headers());
        errors.into_result(AccessLogs {
            loggers,
            needs_request_headers,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.loggers.is_empty()
    }

    /// True when some logger reads request headers beyond the method,
    /// path, authority and scheme that [`StreamInfo`] always keeps: only
    /// then must the connection manager copy them into the StreamInfo.
    pub fn needs_request_headers(&self) -> bool {
        self.needs_request_headers
    }

    /// Formats and queues one line per logger. Never blocks.
    pub fn log(&self, info: &StreamInfo) {
        for logger in &self.loggers {
            let mut line = String::with_capacity(256);
            logger.format.format_into(info, &mut line);
            logger.writer.write(line);
        }
    }
}

#[cfg(test)]
mod tests;
