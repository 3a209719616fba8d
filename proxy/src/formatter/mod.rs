//! Envoy's substitution format strings (`%START_TIME%`, `%REQ(X?Y):Z%`, …),
//! shared by access logs and header values
//! (`request_headers_to_add: {value: "%DOWNSTREAM_REMOTE_ADDRESS%"}`).
//!
//! A format string is parsed once, when configuration is compiled, into a
//! list of parts; formatting walks the parts against a [`StreamInfo`].

use crate::stream_info::StreamInfo;

/// A parsed format string.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatString {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
}

impl FormatString {
    /// Parses `text`; an unknown or malformed `%OPERATOR%` is an error
    /// naming it.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.contains('%') {
            return Err(format!(
                "format string \"{text}\": command operators are not supported yet"
            ));
        }
        Ok(FormatString {
            parts: vec![Part::Literal(text.to_string())],
        })
    }

    /// True when the string has no operators (formatting is a copy).
    pub fn is_literal(&self) -> bool {
        self.parts
            .iter()
            .all(|part| matches!(part, Part::Literal(_)))
    }

    /// Appends the formatted string to `out`.
    pub fn format_into(&self, info: &StreamInfo, out: &mut String) {
        let _ = info;
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
            }
        }
    }

    pub fn format(&self, info: &StreamInfo) -> String {
        let mut out = String::new();
        self.format_into(info, &mut out);
        out
    }
}
