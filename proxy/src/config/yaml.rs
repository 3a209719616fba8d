//! Envoy v3 configuration text (YAML or JSON) → typed Envoy messages, by the
//! proto3 JSON mapping, as Envoy reads its bootstrap and file-based resources.
//!
//! YAML is read by `serde-saphyr` (anchors, aliases and `<<` merge keys; JSON
//! is valid YAML), the field path is tracked by `serde_path_to_error`, and the
//! proto3 JSON mapping is prost-reflect's (`"@type"` Any with inlined fields,
//! `"5s"` durations, enum names, bare wrapper numbers). Parsing stops at the
//! first syntax or schema error, which carries its path and line/column.

use prost_reflect::{DynamicMessage, MessageDescriptor};
use serde_saphyr::{Budget, Location, Options};

/// YAML nodes and parser events a config may hold. serde-saphyr's defaults
/// (250,000 nodes, 1,000,000 events) reject a bootstrap with 10,000 clusters,
/// which Envoy loads; the alias/anchor limits that stop "billion laughs"
/// expansion stay at their defaults.
const MAX_YAML_NODES: usize = 50_000_000;
const MAX_YAML_EVENTS: usize = 100_000_000;

use super::descriptors::{include_types_named_in, message_descriptor};
use super::{ConfigError, ConfigErrors};

/// Parses `text` (YAML or JSON) as the Envoy message `T`. Only parsing: run
/// [`super::validate_message`] for the PGV rules and the supported-field check.
pub fn parse_message<T>(text: &str) -> Result<T, ConfigErrors>
where
    T: prost::Message + prost::Name + Default,
{
    let full_name = T::full_name();
    let descriptor = message_descriptor(&full_name).ok_or_else(|| {
        ConfigError::new(
            "",
            format!("message type {full_name} is not an Envoy v3 type"),
        )
    })?;
    let dynamic = parse_dynamic(text, &descriptor)?;
    dynamic.transcode_to::<T>().map_err(|error| {
        ConfigErrors::from(ConfigError::new(
            "",
            format!("cannot convert to {full_name}: {error}"),
        ))
    })
}

/// Parses `text` (YAML or JSON) as a reflected message of type `descriptor`.
pub fn parse_dynamic(
    text: &str,
    descriptor: &MessageDescriptor,
) -> Result<DynamicMessage, ConfigError> {
    // An inlined `Any` resolves its `@type` in the pool of `descriptor`: if
    // the text names types outside it, parse against the completed pool.
    let descriptor = if include_types_named_in(text) {
        message_descriptor(descriptor.full_name()).unwrap_or_else(|| descriptor.clone())
    } else {
        descriptor.clone()
    };
    let mut failed_at = String::new();
    let mut options = Options::default();
    options.with_snippet = false;
    let mut budget = Budget::default();
    budget.max_nodes = MAX_YAML_NODES;
    budget.max_events = MAX_YAML_EVENTS;
    options.budget = Some(budget);
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        let mut track = serde_path_to_error::Track::new();
        let tracked = serde_path_to_error::Deserializer::new(de, &mut track);
        let parsed = DynamicMessage::deserialize(descriptor.clone(), tracked);
        if parsed.is_err() {
            failed_at = track.path().to_string();
        }
        parsed
    });
    result.map_err(|error| describe_error(text, &failed_at, &error))
}

/// Turns a parser error into a located `ConfigError`, adding the offending
/// scalar where prost-reflect's message does not name it.
fn describe_error(text: &str, path: &str, error: &serde_saphyr::Error) -> ConfigError {
    let error = error.without_snippet();
    let mut location = error
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| (l.line() as usize, l.column() as usize));
    let message = match error {
        serde_saphyr::Error::Message { msg, .. } => msg.clone(),
        other => strip_location_suffix(&other.to_string()),
    };
    let scalar = error.location().and_then(|l| scalar_at(text, &l));
    let message = reword(&message, scalar);
    if let Some(field) = unknown_field_name(&message) {
        // The parser points at the enclosing mapping; point at the key itself.
        let from = error
            .location()
            .and_then(|l| l.span().byte_offset())
            .and_then(|offset| usize::try_from(offset).ok())
            .unwrap_or(0);
        location = key_location(text, from, field).or(location);
    }
    ConfigError {
        path: clean_path(path),
        message,
        location,
    }
}

/// serde_path_to_error writes `?` for a segment it could not name (inside a
/// syntax error) and `.` for the document root; neither helps a reader.
fn clean_path(path: &str) -> String {
    path.split('.')
        .filter(|segment| !segment.is_empty() && *segment != "?")
        .collect::<Vec<_>>()
        .join(".")
}

/// Messages from the proto3 JSON mapping that do not show the bad value get it.
fn reword(message: &str, scalar: Option<&str>) -> String {
    if let Some(name) = message
        .strip_prefix("message '")
        .and_then(|rest| rest.strip_suffix("' not found"))
    {
        return format!("unknown \"@type\" '{name}': no such Envoy message type");
    }
    let is_duration = message.starts_with("failed to parse duration")
        || message.starts_with("duration")
        || message.contains("invalid duration");
    let Some(value) = scalar else {
        return if is_duration {
            "invalid duration".to_string()
        } else {
            message.to_string()
        };
    };
    let quoted = format!("{:?}", value.trim_matches(|c| c == '"' || c == '\''));
    if is_duration {
        return format!("invalid duration {quoted}");
    }
    if message.contains("timestamp") {
        return format!("invalid timestamp {quoted}");
    }
    // serde's "invalid type: integer `5`, expected ..." already shows the value.
    if message.contains('`') || message.contains(value) {
        return message.to_string();
    }
    let numeric = ["digit", "integer", "float", "out of range", "number"]
        .iter()
        .any(|word| message.contains(word));
    if numeric || message.starts_with("invalid base64") {
        return format!("invalid value {quoted}: {message}");
    }
    message.to_string()
}

fn unknown_field_name(message: &str) -> Option<&str> {
    message
        .strip_prefix("unrecognized field name '")
        .and_then(|rest| rest.strip_suffix('\''))
}

/// The (line, column) of `key` used as a mapping key at or after byte `from`.
fn key_location(text: &str, from: usize, key: &str) -> Option<(usize, usize)> {
    let tail = text.get(from..)?;
    let mut search_from = 0;
    while let Some(found) = tail[search_from..].find(key) {
        let start = search_from + found;
        let before = tail[..start].chars().next_back();
        let after = tail[start + key.len()..].trim_start_matches(['"', '\'']);
        let starts_token = before.is_none_or(|c| c.is_whitespace() || "{,\"'-".contains(c));
        if starts_token && after.trim_start().starts_with(':') {
            let absolute = from + start;
            let line_start = text[..absolute].rfind('\n').map_or(0, |i| i + 1);
            let line = text[..absolute].matches('\n').count() + 1;
            let column = text[line_start..absolute].chars().count() + 1;
            return Some((line, column));
        }
        search_from = start + key.len();
    }
    None
}

/// The source text of the scalar an error points at, when its span is known
/// and it is a scalar (not a mapping or sequence).
fn scalar_at<'a>(text: &'a str, location: &Location) -> Option<&'a str> {
    let span = location.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    let scalar = text.get(start..start.checked_add(len)?)?.trim();
    let structural = scalar.is_empty()
        || scalar.contains('\n')
        || scalar.starts_with(['{', '[', '-'])
        || scalar.ends_with(':');
    (!structural).then_some(scalar)
}

/// Display of non-message errors ends with " at line L column C"; the
/// location is carried separately.
fn strip_location_suffix(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
#[path = "yaml_tests.rs"]
mod tests;
