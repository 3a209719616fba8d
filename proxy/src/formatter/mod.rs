//! Envoy's substitution format strings (`%START_TIME%`, `%REQ(X?Y):Z%`, …),
//! shared by access logs and header values
//! (`request_headers_to_add: {value: "%DOWNSTREAM_REMOTE_ADDRESS%"}`).
//!
//! A format string is parsed once, when configuration is compiled, into a
//! list of parts; formatting walks the parts against a [`StreamInfo`].
//! The grammar is Envoy's: `%COMMAND(ARGUMENT):LENGTH%`, where COMMAND is
//! `[A-Z0-9_]+`, ARGUMENT has no `)`, LENGTH is decimal, and `%%` is a
//! literal percent sign. Anything else after a `%` is rejected, as Envoy
//! rejects it at config load.

mod json;
mod operator;
mod start_time;

pub use json::JsonFormat;

use operator::{Operator, Rendered};
use std::fmt::Write;

use crate::stream_info::StreamInfo;

/// A parsed format string.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatString {
    parts: Vec<Part>,
    /// What an absent value prints: `-`, or nothing with `omit_empty_values`.
    absent: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(Box<str>),
    Operator(Operator),
}

impl FormatString {
    /// Parses `text`; an unknown or malformed `%OPERATOR%` is an error
    /// naming it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts = parse_parts(text).map_err(|error| format!("format \"{text}\": {error}"))?;
        Ok(FormatString { parts, absent: "-" })
    }

    /// With `omit`, absent values print as nothing instead of `-`
    /// (`SubstitutionFormatString.omit_empty_values`).
    pub fn with_omit_empty_values(mut self, omit: bool) -> Self {
        self.absent = if omit { "" } else { "-" };
        self
    }

    /// True when the string has no operators (formatting is a copy).
    pub fn is_literal(&self) -> bool {
        self.parts
            .iter()
            .all(|part| matches!(part, Part::Literal(_)))
    }

    /// True when some operator reads request headers other than the
    /// pseudo-headers StreamInfo keeps in its own fields.
    pub fn reads_request_headers(&self) -> bool {
        self.parts.iter().any(|part| match part {
            Part::Operator(operator) => operator.reads_request_headers(),
            Part::Literal(_) => false,
        })
    }

    /// Appends the formatted string to `out`.
    pub fn format_into(&self, info: &StreamInfo, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Operator(operator) => render_text(operator, info, self.absent, out),
            }
        }
    }

    pub fn format(&self, info: &StreamInfo) -> String {
        let mut out = String::new();
        self.format_into(info, &mut out);
        out
    }

    /// The only operator, when the string is exactly one `%OPERATOR%`
    /// (typed JSON keeps such values' types).
    fn single_operator(&self) -> Option<&Operator> {
        match self.parts.as_slice() {
            [Part::Operator(operator)] => Some(operator),
            _ => None,
        }
    }
}

fn render_text(operator: &Operator, info: &StreamInfo, absent: &str, out: &mut String) {
    match operator.render(info, out) {
        Rendered::Text => {}
        Rendered::Number(value) => {
            let _ = write!(out, "{value}");
        }
        Rendered::Absent => out.push_str(absent),
    }
}

fn parse_parts(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(percent) = rest.find('%') {
        literal.push_str(&rest[..percent]);
        let position = text.len() - rest.len() + percent;
        let command = &rest[percent + 1..];
        if let Some(after) = command.strip_prefix('%') {
            literal.push('%');
            rest = after;
            continue;
        }
        let Some((name, argument, max_length, consumed)) = split_command(command) else {
            return Err(format!(
                "Incorrect configuration: {text}. Couldn't find valid command at position {position}"
            ));
        };
        if !literal.is_empty() {
            parts.push(Part::Literal(std::mem::take(&mut literal).into()));
        }
        parts.push(Part::Operator(Operator::build(name, argument, max_length)?));
        rest = &command[consumed..];
    }
    literal.push_str(rest);
    if !literal.is_empty() || parts.is_empty() {
        parts.push(Part::Literal(literal.into()));
    }
    Ok(parts)
}

/// Splits `COMMAND(ARGUMENT):LENGTH%…` (the text after the opening `%`)
/// into its pieces and the number of bytes up to and including the
/// closing `%`; `None` when it is not a well-formed command.
fn split_command(command: &str) -> Option<(&str, Option<&str>, Option<usize>, usize)> {
    let bytes = command.as_bytes();
    let name_len = bytes
        .iter()
        .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || **b == b'_')
        .count();
    if name_len == 0 {
        return None;
    }
    let name = &command[..name_len];
    let mut at = name_len;
    let mut argument = None;
    if bytes.get(at) == Some(&b'(') {
        let close = command[at + 1..].find(')')? + at + 1;
        argument = Some(&command[at + 1..close]);
        at = close + 1;
    }
    let mut max_length = None;
    if bytes.get(at) == Some(&b':') {
        let digits = bytes[at + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        max_length = Some(command[at + 1..at + 1 + digits].parse().ok()?);
        at += 1 + digits;
    }
    if bytes.get(at) != Some(&b'%') {
        return None;
    }
    Some((name, argument, max_length, at + 1))
}

#[cfg(test)]
pub(crate) mod tests;
