//! `%START_TIME%` and `%START_TIME(<strftime>)%`: the request start time in
//! UTC, with Envoy's extensions to strftime (`%f` and `%1f`…`%9f` for
//! fractional seconds, `%s` for epoch seconds).
//!
//! The pattern is split once into chrono items and fraction specifiers, so
//! formatting neither parses nor allocates beyond the output string.

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Datelike, Timelike, Utc};
use std::fmt::Write;
use std::time::SystemTime;

/// A compiled `START_TIME` pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StartTimeFormat {
    /// Envoy's default, `2016-04-15T20:17:00.310Z`.
    Default,
    Custom(Vec<Segment>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    /// Plain strftime items, handled by chrono.
    Chrono(Vec<Item<'static>>),
    /// Envoy's `%Nf`: the first N digits of the nanoseconds.
    Fraction(u32),
}

impl StartTimeFormat {
    /// Compiles `pattern` (empty means Envoy's default); an invalid
    /// strftime specifier is an error.
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Ok(StartTimeFormat::Default);
        }
        let mut segments = Vec::new();
        let mut plain_start = 0;
        let bytes = pattern.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'%' || i + 1 >= bytes.len() {
                i += 1;
                continue;
            }
            let (digits, consumed) = match (bytes[i + 1], bytes.get(i + 2)) {
                (b'%', _) => {
                    i += 2;
                    continue;
                }
                (b'f', _) => (9, 2),
                (d @ b'1'..=b'9', Some(b'f')) => (u32::from(d - b'0'), 3),
                _ => {
                    i += 1;
                    continue;
                }
            };
            push_chrono(&mut segments, &pattern[plain_start..i])?;
            segments.push(Segment::Fraction(digits));
            i += consumed;
            plain_start = i;
        }
        push_chrono(&mut segments, &pattern[plain_start..])?;
        Ok(StartTimeFormat::Custom(segments))
    }

    pub(crate) fn format_into(&self, time: SystemTime, out: &mut String) {
        let time: DateTime<Utc> = time.into();
        match self {
            StartTimeFormat::Default => {
                let _ = write!(
                    out,
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                    time.year(),
                    time.month(),
                    time.day(),
                    time.hour(),
                    time.minute(),
                    time.second(),
                    time.timestamp_subsec_millis()
                );
            }
            StartTimeFormat::Custom(segments) => {
                for segment in segments {
                    match segment {
                        Segment::Chrono(items) => {
                            let _ = write!(out, "{}", time.format_with_items(items.iter()));
                        }
                        Segment::Fraction(digits) => {
                            let nanos = time.timestamp_subsec_nanos() % 1_000_000_000;
                            let value = nanos / 10u32.pow(9 - digits);
                            let _ = write!(out, "{value:0width$}", width = *digits as usize);
                        }
                    }
                }
            }
        }
    }
}

fn push_chrono(segments: &mut Vec<Segment>, pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Ok(());
    }
    let items = StrftimeItems::new(pattern)
        .parse_to_owned()
        .map_err(|_| format!("invalid START_TIME format \"{pattern}\""))?;
    segments.push(Segment::Chrono(items));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn sample_time() -> SystemTime {
        // 2016-04-15T20:17:00.310123456Z
        UNIX_EPOCH + Duration::new(1_460_751_420, 310_123_456)
    }

    fn render(pattern: &str) -> String {
        let mut out = String::new();
        StartTimeFormat::parse(pattern)
            .unwrap()
            .format_into(sample_time(), &mut out);
        out
    }

    #[test]
    fn default_is_envoy_iso8601_with_milliseconds() {
        assert_eq!(render(""), "2016-04-15T20:17:00.310Z");
    }

    #[test]
    fn envoy_fraction_and_epoch_specifiers() {
        assert_eq!(render("%s.%3f"), "1460751420.310");
        assert_eq!(render("%s.%6f"), "1460751420.310123");
        assert_eq!(render("%s.%9f"), "1460751420.310123456");
        assert_eq!(render("%f"), "310123456");
        assert_eq!(render("%1f|%2f"), "3|31");
    }

    #[test]
    fn plain_strftime_in_utc() {
        assert_eq!(render("%Y/%m/%dT%H:%M:%S%z"), "2016/04/15T20:17:00+0000");
        assert_eq!(render("100%% %Y"), "100% 2016");
        assert_eq!(render("%%f"), "%f");
    }

    #[test]
    fn invalid_specifier_is_rejected() {
        assert!(StartTimeFormat::parse("%Q").is_err());
        assert!(StartTimeFormat::parse("%Y %").is_err());
    }
}
