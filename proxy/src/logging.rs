//! Process logging: Envoy's level names (`--log-level`), Envoy's named
//! loggers mapped onto `tracing` targets (`http` → `sluice::http`, …), an
//! Envoy-like line format, and live level changes for the admin `/logging`
//! endpoint through a reloadable filter.
//!
//! Code picks its logger by living in the matching module (`sluice::http::…`
//! is the `http` logger, since target filters match by prefix) or by naming
//! a target from [`targets`]. Request-path code logs at `debug` or `trace`
//! only.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::reload;

/// An Envoy log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    /// Envoy's `critical`; `tracing` has nothing above error, so it filters
    /// like `error`.
    Critical,
    Off,
}

impl LogLevel {
    /// Every level in Envoy's (spdlog's) order.
    pub const ALL: [LogLevel; 7] = [
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warning,
        LogLevel::Error,
        LogLevel::Critical,
        LogLevel::Off,
    ];

    /// Envoy's name for the level (`warning`, not `warn`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
            LogLevel::Off => "off",
        }
    }

    /// The `EnvFilter` directive value for the level.
    fn directive(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warn",
            LogLevel::Error | LogLevel::Critical => "error",
            LogLevel::Off => "off",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "trace" => Ok(LogLevel::Trace),
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warning" | "warn" => Ok(LogLevel::Warning),
            "error" => Ok(LogLevel::Error),
            "critical" => Ok(LogLevel::Critical),
            "off" => Ok(LogLevel::Off),
            _ => Err(format!(
                "invalid log level '{s}': expected one of trace, debug, info, warning, warn, \
                 error, critical, off"
            )),
        }
    }
}

/// Envoy's logger names that Sluice uses; logger `x` is target `sluice::x`.
pub const LOGGERS: [&str; 13] = [
    "admin",
    "config",
    "connection",
    "filter",
    "hc",
    "http",
    "listener",
    "main",
    "misc",
    "pool",
    "router",
    "runtime",
    "upstream",
];

/// `tracing` targets of the named loggers, for `target:` in log macros.
pub mod targets {
    pub const ADMIN: &str = "sluice::admin";
    pub const CONFIG: &str = "sluice::config";
    pub const CONNECTION: &str = "sluice::connection";
    pub const FILTER: &str = "sluice::filter";
    pub const HC: &str = "sluice::hc";
    pub const HTTP: &str = "sluice::http";
    pub const LISTENER: &str = "sluice::listener";
    pub const MAIN: &str = "sluice::main";
    pub const MISC: &str = "sluice::misc";
    pub const POOL: &str = "sluice::pool";
    pub const ROUTER: &str = "sluice::router";
    pub const RUNTIME: &str = "sluice::runtime";
    pub const UPSTREAM: &str = "sluice::upstream";
}

type ApplyFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// The live log levels: what `/logging` reads and changes.
pub struct LogHandle {
    levels: Mutex<Levels>,
    /// Installs a new filter in the running subscriber; `None` when detached.
    apply: Option<ApplyFilter>,
}

struct Levels {
    /// Level of everything outside the named loggers (other crates too).
    default: LogLevel,
    loggers: BTreeMap<&'static str, LogLevel>,
}

impl Levels {
    fn directives(&self) -> String {
        let mut directives = vec![self.default.directive().to_string()];
        for (name, level) in &self.loggers {
            directives.push(format!("sluice::{name}={}", level.directive()));
        }
        directives.join(",")
    }
}

impl fmt::Debug for LogHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogHandle")
            .field("levels", &self.levels())
            .finish()
    }
}

impl LogHandle {
    /// A handle that tracks levels without any subscriber (tests, tools).
    pub fn detached(level: LogLevel) -> Self {
        Self::with_apply(level, None)
    }

    fn with_apply(level: LogLevel, apply: Option<ApplyFilter>) -> Self {
        let loggers = LOGGERS.iter().map(|name| (*name, level)).collect();
        LogHandle {
            levels: Mutex::new(Levels {
                default: level,
                loggers,
            }),
            apply,
        }
    }

    fn filter(&self) -> EnvFilter {
        EnvFilter::new(self.levels.lock().unwrap().directives())
    }

    fn reload(&self) -> Result<(), String> {
        match &self.apply {
            Some(apply) => apply(self.filter()),
            None => Ok(()),
        }
    }

    /// Every named logger with its level, sorted by name.
    pub fn levels(&self) -> Vec<(&'static str, LogLevel)> {
        let levels = self.levels.lock().unwrap();
        levels.loggers.iter().map(|(n, l)| (*n, *l)).collect()
    }

    /// Sets every logger (and everything unnamed) to `level`.
    pub fn set_all(&self, level: LogLevel) -> Result<(), String> {
        {
            let mut levels = self.levels.lock().unwrap();
            levels.default = level;
            levels.loggers.values_mut().for_each(|l| *l = level);
        }
        tracing::info!(target: targets::ADMIN, "change all log levels: level='{level}'");
        self.reload()
    }

    /// Sets the named loggers; changes nothing if any name is unknown.
    pub fn set_levels(&self, changes: &[(&str, LogLevel)]) -> Result<(), String> {
        {
            let mut levels = self.levels.lock().unwrap();
            if changes
                .iter()
                .any(|(name, _)| !levels.loggers.contains_key(name))
            {
                return Err("unknown logger name".to_string());
            }
            for (name, level) in changes {
                if let Some((_, current)) = levels.loggers.iter_mut().find(|(n, _)| **n == *name) {
                    *current = *level;
                }
            }
        }
        for (name, level) in changes {
            tracing::info!(target: targets::ADMIN, "change log level: name='{name}' level='{level}'");
        }
        self.reload()
    }

    /// Envoy's `/logging` listing: `active loggers:` then `  name: level` lines.
    pub fn active_loggers_text(&self) -> String {
        let mut out = String::from("active loggers:\n");
        for (name, level) in self.levels() {
            out.push_str(&format!("  {name}: {level}\n"));
        }
        out.push('\n');
        out
    }
}

/// Builds the subscriber and its handle without installing it.
pub fn build<W>(level: LogLevel, make_writer: W) -> (impl Subscriber + Send + Sync, LogHandle)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let initial = LogHandle::detached(level).filter();
    let (filter_layer, reload_handle) = reload::Layer::new(initial);
    let fmt_layer = tracing_subscriber::fmt::layer()
        .event_format(EnvoyFormat)
        .with_ansi(false)
        .with_writer(make_writer);
    let subscriber = tracing_subscriber::registry()
        .with(filter_layer)
        .with(fmt_layer);
    let apply: ApplyFilter = Box::new(move |filter| {
        reload_handle
            .reload(filter)
            .map_err(|error| error.to_string())
    });
    (subscriber, LogHandle::with_apply(level, Some(apply)))
}

/// Installs the process-wide subscriber (logging to stderr, as Envoy does)
/// and returns the handle `/logging` uses. If a subscriber is already
/// installed, that one stays and the handle only tracks levels.
pub fn init(level: LogLevel) -> LogHandle {
    let (subscriber, handle) = build(level, std::io::stderr);
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        eprintln!(
            "sluice: a global log subscriber is already installed; log levels will not change live"
        );
        return LogHandle::detached(level);
    }
    handle
}

/// `[2026-11-25 14:00:00.123][12][info][main] message key=value`.
struct EnvoyFormat;

impl<S, N> FormatEvent<S, N> for EnvoyFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let level = match *metadata.level() {
            Level::TRACE => "trace",
            Level::DEBUG => "debug",
            Level::INFO => "info",
            Level::WARN => "warning",
            Level::ERROR => "error",
        };
        write!(
            writer,
            "[{}][{}][{}][{}] ",
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f"),
            thread_id(),
            level,
            logger_name(metadata.target())
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// The logger a target belongs to: `sluice::http::codec` → `http`; a target
/// outside Sluice shows its crate (`hyper`).
fn logger_name(target: &str) -> &str {
    let rest = target.strip_prefix("sluice::").unwrap_or(target);
    rest.split("::").next().unwrap_or(rest)
}

/// The kernel thread id, which Envoy prints in every line.
fn thread_id() -> i32 {
    // SAFETY: gettid takes no arguments, cannot fail and touches no memory.
    unsafe { libc::gettid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::Arc;

    #[test]
    fn parses_envoy_level_names() {
        assert_eq!("trace".parse(), Ok(LogLevel::Trace));
        assert_eq!("warning".parse(), Ok(LogLevel::Warning));
        assert_eq!("warn".parse(), Ok(LogLevel::Warning));
        assert_eq!("critical".parse(), Ok(LogLevel::Critical));
        assert_eq!("off".parse(), Ok(LogLevel::Off));
        for bad in ["", "INFO", "verbose", "fatal", "warn "] {
            let err = bad.parse::<LogLevel>().unwrap_err();
            assert!(err.contains("invalid log level"), "{err}");
            assert!(err.contains("critical"), "{err}");
        }
        assert_eq!(LogLevel::Warning.to_string(), "warning");
        assert_eq!(LogLevel::Critical.directive(), "error");
    }

    #[test]
    fn handle_lists_and_changes_levels() {
        let handle = LogHandle::detached(LogLevel::Info);
        let text = handle.active_loggers_text();
        assert!(text.starts_with("active loggers:\n  admin: info\n  config: info\n"));
        assert!(text.ends_with("  upstream: info\n\n"));
        handle
            .set_levels(&[("http", LogLevel::Debug), ("router", LogLevel::Critical)])
            .unwrap();
        let levels: BTreeMap<_, _> = handle.levels().into_iter().collect();
        assert_eq!(levels["http"], LogLevel::Debug);
        assert_eq!(levels["router"], LogLevel::Critical);
        assert_eq!(levels["admin"], LogLevel::Info);
        assert_eq!(
            handle.set_levels(&[("http", LogLevel::Trace), ("nope", LogLevel::Info)]),
            Err("unknown logger name".to_string())
        );
        assert_eq!(
            handle.levels()[5],
            ("http", LogLevel::Debug),
            "unchanged on error"
        );
        handle.set_all(LogLevel::Warning).unwrap();
        assert!(handle.levels().iter().all(|(_, l)| *l == LogLevel::Warning));
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn levels_change_live_and_lines_look_like_envoys() {
        let captured = Captured::default();
        let sink = captured.clone();
        let (subscriber, handle) = build(LogLevel::Info, move || sink.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "sluice::http::codec", "hidden");
            tracing::info!(target: "sluice::main", answer = 42, "starting");
            handle.set_levels(&[("http", LogLevel::Debug)]).unwrap();
            tracing::debug!(target: "sluice::http::codec", "shown");
            tracing::debug!(target: "sluice::upstream", "still hidden");
            handle.set_all(LogLevel::Off).unwrap();
            tracing::error!(target: "sluice::main", "silenced");
        });
        let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = output.lines().collect();
        assert!(!output.contains("hidden"), "{output}");
        assert!(!output.contains("silenced"), "{output}");
        let starting = lines.iter().find(|l| l.contains("starting")).unwrap();
        let line_format = regex::Regex::new(
            r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\]\[\d+\]\[info\]\[main\] starting answer=42$",
        )
        .unwrap();
        assert!(line_format.is_match(starting), "{starting}");
        assert!(
            lines.iter().any(|l| l.contains("[debug][http] shown")),
            "{output}"
        );
        assert!(lines
            .iter()
            .any(|l| l.contains("[info][admin] change log level: name='http' level='debug'")));
    }

    #[test]
    fn logger_names_come_from_targets() {
        assert_eq!(logger_name("sluice::http::codec"), "http");
        assert_eq!(logger_name("sluice::main"), "main");
        assert_eq!(logger_name("hyper::proto::h1"), "hyper");
    }
}
