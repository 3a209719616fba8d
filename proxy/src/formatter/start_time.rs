//! `%START_TIME%` and `%START_TIME(<strftime>)%`: the request start time in
//! UTC, with Envoy's extensions to strftime (`%f` and `%1f`…`%9f` for
//! fractional seconds, `%s` for epoch seconds) and Abseil's (`%E3S`,
//! `%E*S`, `%Ez`), which Envoy inherits.
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
    /// Abseil's `%E<N>S` (N fraction digits) and `%E*S` (`None`: all
    /// significant digits): seconds with a fraction.
    SecondsWithFraction(Option<u32>),
}

impl StartTimeFormat {
    /// Compiles `pattern` (empty means Envoy's default). Like Envoy, a
    /// specifier it does not know is printed as written.
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Ok(StartTimeFormat::Default);
        }
        let mut segments = Vec::new();
        let mut chrono_text = String::new();
        let mut rest = pattern;
        while let Some(percent) = rest.find('%') {
            chrono_text.push_str(&rest[..percent]);
            let after = &rest[percent + 1..];
            let (special, consumed) = match after.as_bytes() {
                [b'f', ..] => (Some(Segment::Fraction(9)), 1),
                [d @ b'1'..=b'9', b'f', ..] => (Some(Segment::Fraction(u32::from(d - b'0'))), 2),
                [b'E', b'*', b'S', ..] => (Some(Segment::SecondsWithFraction(None)), 3),
                [b'E', d @ b'0'..=b'9', b'S', ..] => (
                    Some(Segment::SecondsWithFraction(Some(u32::from(d - b'0')))),
                    3,
                ),
                _ => (None, 0),
            };
            if let Some(segment) = special {
                push_chrono(&mut segments, &mut chrono_text)?;
                segments.push(segment);
                rest = &after[consumed..];
                continue;
            }
            if let Some(tail) = after.strip_prefix("Ez") {
                chrono_text.push_str("%:z");
                rest = tail;
                continue;
            }
            let specifier_len = after
                .bytes()
                .take_while(|b| b"-_0.:#123456789".contains(b))
                .count();
            let specifier_end = after[specifier_len..]
                .chars()
                .next()
                .map_or(after.len(), |c| specifier_len + c.len_utf8());
            let specifier = &rest[percent..percent + 1 + specifier_end];
            if StrftimeItems::new(specifier).parse().is_ok() {
                chrono_text.push_str(specifier);
            } else {
                chrono_text.push_str(&specifier.replace('%', "%%"));
            }
            rest = &after[specifier_end..];
        }
        chrono_text.push_str(rest);
        push_chrono(&mut segments, &mut chrono_text)?;
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
                        Segment::Fraction(digits) => write_fraction(out, &time, *digits),
                        Segment::SecondsWithFraction(digits) => {
                            let _ = write!(out, "{:02}", time.second());
                            let digits = digits.unwrap_or_else(|| significant_digits(&time));
                            if digits > 0 {
                                out.push('.');
                                write_fraction(out, &time, digits);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The first `digits` digits of the nanoseconds (leap seconds folded in).
fn write_fraction(out: &mut String, time: &DateTime<Utc>, digits: u32) {
    let nanos = time.timestamp_subsec_nanos() % 1_000_000_000;
    let value = nanos / 10u32.pow(9 - digits);
    let _ = write!(out, "{value:0width$}", width = digits as usize);
}

/// How many fraction digits `%E*S` prints: trailing zeros dropped.
fn significant_digits(time: &DateTime<Utc>) -> u32 {
    let mut nanos = time.timestamp_subsec_nanos() % 1_000_000_000;
    if nanos == 0 {
        return 0;
    }
    let mut digits = 9;
    while nanos.is_multiple_of(10) {
        nanos /= 10;
        digits -= 1;
    }
    digits
}

/// Moves the accumulated strftime text into a chrono segment.
fn push_chrono(segments: &mut Vec<Segment>, text: &mut String) -> Result<(), String> {
    if text.is_empty() {
        return Ok(());
    }
    let items = StrftimeItems::new(text)
        .parse_to_owned()
        .map_err(|_| format!("invalid START_TIME format \"{text}\""))?;
    text.clear();
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
    fn abseil_extensions_envoy_accepts() {
        assert_eq!(render("%E3S|%E6S|%E0S"), "00.310|00.310123|00");
        assert_eq!(render("%E*S"), "00.310123456");
        assert_eq!(render("%Ez"), "+00:00");
    }

    #[test]
    fn unknown_specifiers_print_as_written_like_envoy() {
        assert_eq!(render("%Q %H"), "%Q 20");
        assert_eq!(render("%Y %"), "2016 %");
        assert_eq!(render("%-d/%e"), "15/15");
    }
}
