//! `*_headers_to_add` / `*_headers_to_remove` at one level (route, virtual
//! host, route configuration or weighted cluster), as Envoy's
//! `HeaderParser`: removals first, then every value is formatted against the
//! unmodified headers, then overwrites are applied, then additions.

use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValueOption,
};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{ConfigError, ConfigErrors};
use crate::formatter::FormatString;
use crate::stream_info::StreamInfo;

/// Envoy's limit on a configured header value (PGV `max_bytes`).
const MAX_HEADER_VALUE_BYTES: usize = 16384;

/// What to do when the header already exists (`append_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendAction {
    AppendIfExistsOrAdd,
    AddIfAbsent,
    OverwriteIfExistsOrAdd,
    OverwriteIfExists,
}

#[derive(Debug, Clone)]
struct HeaderAddition {
    name: HeaderName,
    value: FormatString,
    /// The value, ready to insert, when the format string has no operators.
    literal: Option<HeaderValue>,
    action: AppendAction,
    keep_empty_value: bool,
}

/// The header mutations of one configuration level.
#[derive(Debug, Clone, Default)]
pub struct HeaderMutations {
    remove: Vec<HeaderName>,
    add: Vec<HeaderAddition>,
}

impl HeaderMutations {
    /// Compiles one level's lists; `add_field` / `remove_field` name them in
    /// error paths (e.g. `request_headers_to_add[1].header.key`).
    pub fn compile(
        add: &[HeaderValueOption],
        add_field: &str,
        remove: &[String],
        remove_field: &str,
    ) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut mutations = HeaderMutations::default();
        for (i, name) in remove.iter().enumerate() {
            match removable_name(name) {
                Ok(name) => mutations.remove.push(name),
                Err(message) => {
                    errors.push(ConfigError::new(format!("{remove_field}[{i}]"), message))
                }
            }
        }
        for (i, option) in add.iter().enumerate() {
            match compile_addition(option) {
                Ok(addition) => mutations.add.push(addition),
                Err(error) => errors.push(error.under(&format!("{add_field}[{i}]"))),
            }
        }
        errors.into_result(mutations)
    }

    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    /// True when a value reads request headers (`%REQ(...)%`), so the
    /// stream must keep a copy of them in its `StreamInfo`.
    pub fn reads_request_headers(&self) -> bool {
        self.add.iter().any(|a| a.value.reads_request_headers())
    }

    /// Applies this level to `headers`.
    pub fn apply(&self, headers: &mut HeaderMap, info: &StreamInfo) {
        for name in &self.remove {
            headers.remove(name);
        }
        if self.add.is_empty() {
            return;
        }
        let mut overwrites: Vec<(&HeaderName, HeaderValue)> = Vec::new();
        let mut additions: Vec<(&HeaderName, HeaderValue)> = Vec::new();
        for entry in &self.add {
            let Some(value) = entry.evaluate(info) else {
                continue;
            };
            let exists = || headers.contains_key(&entry.name);
            match entry.action {
                AppendAction::AppendIfExistsOrAdd => additions.push((&entry.name, value)),
                AppendAction::AddIfAbsent => {
                    if !exists() {
                        additions.push((&entry.name, value));
                    }
                }
                AppendAction::OverwriteIfExists => {
                    if exists() {
                        overwrites.push((&entry.name, value));
                    }
                }
                AppendAction::OverwriteIfExistsOrAdd => overwrites.push((&entry.name, value)),
            }
        }
        for (name, value) in overwrites {
            headers.insert(name.clone(), value);
        }
        for (name, value) in additions {
            headers.append(name.clone(), value);
        }
    }
}

impl HeaderAddition {
    /// The value to set, or `None` when it formats to empty (and empty values
    /// are not kept) or to something that is not a valid header value.
    fn evaluate(&self, info: &StreamInfo) -> Option<HeaderValue> {
        let value = match &self.literal {
            Some(value) => value.clone(),
            None => {
                let text = self.value.format(info);
                HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).ok()?
            }
        };
        (self.keep_empty_value || !value.is_empty()).then_some(value)
    }
}

fn compile_addition(option: &HeaderValueOption) -> Result<HeaderAddition, ConfigError> {
    let Some(header) = &option.header else {
        return Err(ConfigError::new("header", "is required"));
    };
    let name = modifiable_name(&header.key).map_err(|m| ConfigError::new("header.key", m))?;
    let text = match (header.value.is_empty(), header.raw_value.is_empty()) {
        (_, true) => header.value.as_str(),
        (true, false) => std::str::from_utf8(&header.raw_value)
            .map_err(|_| ConfigError::new("header.raw_value", "must be valid UTF-8 in Sluice"))?,
        (false, false) => {
            return Err(ConfigError::new(
                "header",
                "only one of value or raw_value can be set",
            ))
        }
    };
    let value_field = if header.raw_value.is_empty() {
        "header.value"
    } else {
        "header.raw_value"
    };
    if text.len() > MAX_HEADER_VALUE_BYTES {
        return Err(ConfigError::new(
            value_field,
            format!(
                "is {} bytes; the maximum is {MAX_HEADER_VALUE_BYTES}",
                text.len()
            ),
        ));
    }
    if text.contains(['\0', '\r', '\n']) {
        return Err(ConfigError::new(
            value_field,
            "must not contain NUL, CR or LF",
        ));
    }
    // In header values Envoy renders an absent operator value as nothing
    // (not the access log's `-`), so `keep_empty_value` can drop the header.
    let value = FormatString::parse(text)
        .map_err(|m| ConfigError::new(value_field, m))?
        .with_omit_empty_values(true);
    let literal = if value.is_literal() {
        Some(
            HeaderValue::from_str(text)
                .map_err(|_| ConfigError::new(value_field, "is not a valid header value"))?,
        )
    } else {
        None
    };
    #[allow(deprecated)]
    let append = option.append.as_ref().map(|v| v.value);
    let action = match (append, HeaderAppendAction::try_from(option.append_action)) {
        (_, Err(_)) => {
            return Err(ConfigError::new(
                "append_action",
                format!("unknown value {}", option.append_action),
            ))
        }
        (Some(_), Ok(action)) if action != HeaderAppendAction::AppendIfExistsOrAdd => {
            return Err(ConfigError::new(
                "append",
                "both append and append_action are set; use only append_action",
            ))
        }
        (Some(true), _) => AppendAction::AppendIfExistsOrAdd,
        (Some(false), _) => AppendAction::OverwriteIfExistsOrAdd,
        (None, Ok(HeaderAppendAction::AppendIfExistsOrAdd)) => AppendAction::AppendIfExistsOrAdd,
        (None, Ok(HeaderAppendAction::AddIfAbsent)) => AppendAction::AddIfAbsent,
        (None, Ok(HeaderAppendAction::OverwriteIfExistsOrAdd)) => {
            AppendAction::OverwriteIfExistsOrAdd
        }
        (None, Ok(HeaderAppendAction::OverwriteIfExists)) => AppendAction::OverwriteIfExists,
    };
    Ok(HeaderAddition {
        name,
        value,
        literal,
        action,
        keep_empty_value: option.keep_empty_value,
    })
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name \"{name}\""))
}

/// Envoy's `isModifiableHeader`: no pseudo-headers, no `host`.
fn modifiable_name(name: &str) -> Result<HeaderName, String> {
    if name.starts_with(':') || name.eq_ignore_ascii_case("host") {
        return Err(format!(
            "\"{name}\": :-prefixed or host headers may not be modified"
        ));
    }
    header_name(name)
}

/// Envoy's `isRemovableHeader`: no pseudo-headers, no `host`.
fn removable_name(name: &str) -> Result<HeaderName, String> {
    if name.starts_with(':') || name.eq_ignore_ascii_case("host") {
        return Err(format!(
            "\"{name}\": :-prefixed or host headers may not be removed"
        ));
    }
    header_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::HeaderValue as HeaderValueConfig;
    use envoy_types::pb::google::protobuf::BoolValue;

    fn option(key: &str, value: &str, action: HeaderAppendAction) -> HeaderValueOption {
        HeaderValueOption {
            header: Some(HeaderValueConfig {
                key: key.into(),
                value: value.into(),
                raw_value: vec![],
            }),
            append_action: action as i32,
            ..Default::default()
        }
    }

    fn apply(add: &[HeaderValueOption], remove: &[&str], headers: &mut HeaderMap) {
        let remove: Vec<String> = remove.iter().map(|s| s.to_string()).collect();
        let mutations = HeaderMutations::compile(add, "add", &remove, "remove").unwrap();
        mutations.apply(headers, &StreamInfo::new(None, None));
    }

    fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    fn start() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-old", HeaderValue::from_static("old"));
        headers.insert("x-gone", HeaderValue::from_static("bye"));
        headers
    }

    #[test]
    fn each_append_action_behaves_like_envoy() {
        use HeaderAppendAction::*;
        let cases: &[(HeaderAppendAction, &str, &[&str])] = &[
            (AppendIfExistsOrAdd, "x-old", &["old", "new"]),
            (AppendIfExistsOrAdd, "x-none", &["new"]),
            (AddIfAbsent, "x-old", &["old"]),
            (AddIfAbsent, "x-none", &["new"]),
            (OverwriteIfExistsOrAdd, "x-old", &["new"]),
            (OverwriteIfExistsOrAdd, "x-none", &["new"]),
            (OverwriteIfExists, "x-old", &["new"]),
            (OverwriteIfExists, "x-none", &[]),
        ];
        for (action, name, want) in cases {
            let mut headers = start();
            apply(&[option(name, "new", *action)], &[], &mut headers);
            assert_eq!(values(&headers, name), *want, "{action:?} on {name}");
        }
    }

    #[test]
    fn absent_operator_values_are_empty_and_dropped() {
        use HeaderAppendAction::*;
        let mut headers = start();
        // No upstream yet: Envoy renders nothing (not `-`) and, without
        // keep_empty_value, adds no header.
        apply(
            &[option(
                "x-upstream",
                "%UPSTREAM_REMOTE_ADDRESS%",
                AppendIfExistsOrAdd,
            )],
            &[],
            &mut headers,
        );
        assert!(values(&headers, "x-upstream").is_empty());
        let mut keep = option(
            "x-upstream",
            "at %UPSTREAM_REMOTE_ADDRESS%",
            AppendIfExistsOrAdd,
        );
        keep.keep_empty_value = true;
        apply(&[keep], &[], &mut headers);
        assert_eq!(values(&headers, "x-upstream"), ["at "]);
    }

    #[test]
    fn deprecated_append_maps_to_actions() {
        let with_append = |append: bool| {
            let mut opt = option("x-old", "new", HeaderAppendAction::AppendIfExistsOrAdd);
            #[allow(deprecated)]
            {
                opt.append = Some(BoolValue { value: append });
            }
            let mut headers = start();
            apply(&[opt], &[], &mut headers);
            values(&headers, "x-old")
        };
        assert_eq!(with_append(true), ["old", "new"]);
        assert_eq!(with_append(false), ["new"]);

        let mut both = option("x", "v", HeaderAppendAction::AddIfAbsent);
        #[allow(deprecated)]
        {
            both.append = Some(BoolValue { value: true });
        }
        let error = HeaderMutations::compile(&[both], "add", &[], "remove").unwrap_err();
        assert_eq!(error.0[0].path, "add[0].append");
    }

    #[test]
    fn removal_happens_before_additions_and_empty_values_are_dropped() {
        let mut headers = start();
        let mut keep = option("x-keep", "", HeaderAppendAction::AppendIfExistsOrAdd);
        keep.keep_empty_value = true;
        apply(
            &[
                option("x-gone", "back", HeaderAppendAction::AddIfAbsent),
                option("x-empty", "", HeaderAppendAction::AppendIfExistsOrAdd),
                keep,
            ],
            &["x-gone"],
            &mut headers,
        );
        assert_eq!(values(&headers, "x-gone"), ["back"]);
        assert!(!headers.contains_key("x-empty"));
        assert_eq!(values(&headers, "x-keep"), [""]);
    }

    #[test]
    fn add_if_absent_sees_headers_before_this_level_adds() {
        let mut headers = HeaderMap::new();
        apply(
            &[
                option("x-a", "1", HeaderAppendAction::AppendIfExistsOrAdd),
                option("x-a", "2", HeaderAppendAction::AddIfAbsent),
            ],
            &[],
            &mut headers,
        );
        assert_eq!(values(&headers, "x-a"), ["1", "2"]);
    }

    #[test]
    fn bad_names_and_values_are_rejected_with_paths() {
        let bad = |add: Vec<HeaderValueOption>, remove: Vec<String>| {
            HeaderMutations::compile(
                &add,
                "request_headers_to_add",
                &remove,
                "request_headers_to_remove",
            )
            .unwrap_err()
            .0
        };
        let action = HeaderAppendAction::AppendIfExistsOrAdd;
        let errors = bad(
            vec![option("ok", "v", action), option(":path", "v", action)],
            vec![],
        );
        assert_eq!(errors[0].path, "request_headers_to_add[1].header.key");
        assert!(errors[0].message.contains("may not be modified"));
        assert_eq!(
            bad(vec![option("Host", "v", action)], vec![])[0].path,
            "request_headers_to_add[0].header.key"
        );
        assert_eq!(
            bad(vec![option("bad name", "v", action)], vec![])[0].path,
            "request_headers_to_add[0].header.key"
        );
        let format = bad(vec![option("x", "%NO_SUCH_OPERATOR%", action)], vec![]);
        assert_eq!(format[0].path, "request_headers_to_add[0].header.value");
        assert_eq!(
            bad(vec![option("x", "a\nb", action)], vec![])[0].path,
            "request_headers_to_add[0].header.value"
        );
        let errors = bad(
            vec![],
            vec!["x-ok".into(), "host".into(), ":authority".into(), "".into()],
        );
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "request_headers_to_remove[1]",
                "request_headers_to_remove[2]",
                "request_headers_to_remove[3]"
            ]
        );
        assert!(errors[0].message.contains("may not be removed"));
    }
}
