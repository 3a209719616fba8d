//! One PGV rule set (`validate.UInt32Rules`, `StringRules`, `DurationRules`,
//! …) applied to one value; returns what is wrong in PGV's own wording, the
//! words Envoy prints for the same violation.

use std::net::IpAddr;

use prost_reflect::{DynamicMessage, EnumDescriptor, Value};

/// Checks `value` against the rules of kind `kind` (`"uint32"`, `"string"`,
/// `"duration"`, …). Wrapper messages (`UInt32Value`, …) are checked by
/// their inner value, as PGV does.
pub fn check_scalar(
    kind: &str,
    value: &Value,
    rules: &DynamicMessage,
    enum_descriptor: Option<&EnumDescriptor>,
) -> Vec<String> {
    let value = unwrap_wrapper(value);
    let mut problems = Vec::new();
    match kind {
        "string" => {
            if let Some(text) = value.as_str() {
                check_string(text, rules, &mut problems);
            }
        }
        "bytes" => {
            if let Some(bytes) = value.as_bytes() {
                check_bytes(bytes, rules, &mut problems);
            }
        }
        "bool" => {
            if let (Some(actual), Some(want)) = (
                value.as_bool(),
                set_field(rules, "const").and_then(|v| v.as_bool()),
            ) {
                if actual != want {
                    problems.push(format!("value must equal {want}"));
                }
            }
        }
        "enum" => check_enum(&value, rules, enum_descriptor, &mut problems),
        "duration" | "timestamp" => {
            if let Some(nanos) = value.as_message().and_then(seconds_nanos) {
                check_ordered(
                    nanos,
                    rules,
                    &mut problems,
                    |rule| rule.as_message().and_then(seconds_nanos),
                    format_duration,
                );
            }
        }
        _ => {
            if let Some(number) = as_number(&value) {
                if !(number == 0.0 && flag(rules, "ignore_empty")) {
                    check_ordered(number, rules, &mut problems, as_number, format_number);
                }
            }
        }
    }
    problems
}

fn unwrap_wrapper(value: &Value) -> Value {
    if let Some(message) = value.as_message() {
        let name = message.descriptor().full_name().to_string();
        let is_wrapper = name.starts_with("google.protobuf.")
            && name.ends_with("Value")
            && !matches!(
                name.as_str(),
                "google.protobuf.Value" | "google.protobuf.ListValue"
            );
        if is_wrapper {
            if let Some(inner) = message.get_field_by_name("value") {
                return inner.into_owned();
            }
        }
    }
    value.clone()
}

use prost_reflect::ReflectMessage;

fn set_field(rules: &DynamicMessage, name: &str) -> Option<Value> {
    if !rules.has_field_by_name(name) {
        return None;
    }
    rules.get_field_by_name(name).map(|v| v.into_owned())
}

fn flag(rules: &DynamicMessage, name: &str) -> bool {
    set_field(rules, name).and_then(|v| v.as_bool()) == Some(true)
}

fn list(rules: &DynamicMessage, name: &str) -> Vec<Value> {
    set_field(rules, name)
        .and_then(|v| v.as_list().map(<[Value]>::to_vec))
        .unwrap_or_default()
}

fn as_number(value: &Value) -> Option<f64> {
    Some(match value {
        Value::I32(n) => f64::from(*n),
        Value::I64(n) => *n as f64,
        Value::U32(n) => f64::from(*n),
        Value::U64(n) => *n as f64,
        Value::F32(n) => f64::from(*n),
        Value::F64(n) => *n,
        _ => return None,
    })
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// Duration/Timestamp as a single comparable number of nanoseconds.
fn seconds_nanos(message: &DynamicMessage) -> Option<f64> {
    let seconds = message.get_field_by_name("seconds")?.as_i64()?;
    let nanos = message.get_field_by_name("nanos")?.as_i32()?;
    Some(seconds as f64 * 1e9 + f64::from(nanos))
}

fn format_duration(nanos: f64) -> String {
    let seconds = nanos / 1e9;
    format!("{}s", format_number(seconds))
}

/// `const`, `lt`, `lte`, `gt`, `gte`, `in`, `not_in` on any ordered kind.
fn check_ordered(
    actual: f64,
    rules: &DynamicMessage,
    problems: &mut Vec<String>,
    convert: impl Fn(&Value) -> Option<f64>,
    show: impl Fn(f64) -> String,
) {
    let get = |name: &str| set_field(rules, name).as_ref().and_then(&convert);
    if let Some(want) = get("const") {
        if actual != want {
            problems.push(format!("value must equal {}", show(want)));
        }
    }
    let lower = get("gt")
        .map(|v| (v, false))
        .or_else(|| get("gte").map(|v| (v, true)));
    let upper = get("lt")
        .map(|v| (v, false))
        .or_else(|| get("lte").map(|v| (v, true)));
    let above = |(bound, inclusive): (f64, bool)| {
        if inclusive {
            actual >= bound
        } else {
            actual > bound
        }
    };
    let below = |(bound, inclusive): (f64, bool)| {
        if inclusive {
            actual <= bound
        } else {
            actual < bound
        }
    };
    let greater = |(bound, inclusive): (f64, bool)| {
        let or_equal = if inclusive { "or equal to " } else { "" };
        format!("greater than {or_equal}{}", show(bound))
    };
    let less = |(bound, inclusive): (f64, bool)| {
        let or_equal = if inclusive { "or equal to " } else { "" };
        format!("less than {or_equal}{}", show(bound))
    };
    let problem = match (lower, upper) {
        // A lower bound above the upper one means "outside the range".
        (Some(l), Some(u)) if l.0 > u.0 => {
            (!(above(l) || below(u))).then(|| format!("{} or {}", greater(l), less(u)))
        }
        (Some(l), Some(u)) => {
            (!(above(l) && below(u))).then(|| format!("{} and {}", greater(l), less(u)))
        }
        (Some(l), None) => (!above(l)).then(|| greater(l)),
        (None, Some(u)) => (!below(u)).then(|| less(u)),
        (None, None) => None,
    };
    if let Some(problem) = problem {
        problems.push(format!("value must be {problem}"));
    }
    let allowed: Vec<f64> = list(rules, "in").iter().filter_map(&convert).collect();
    if !allowed.is_empty() && !allowed.contains(&actual) {
        let shown: Vec<String> = allowed.iter().map(|v| show(*v)).collect();
        problems.push(format!("value must be in list {}", format_list(&shown)));
    }
    let denied: Vec<f64> = list(rules, "not_in").iter().filter_map(&convert).collect();
    if denied.contains(&actual) {
        let shown: Vec<String> = denied.iter().map(|v| show(*v)).collect();
        problems.push(format!("value must not be in list {}", format_list(&shown)));
    }
}

/// `[a, b, c]`.
pub fn format_list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

fn check_string(text: &str, rules: &DynamicMessage, problems: &mut Vec<String>) {
    if text.is_empty() && flag(rules, "ignore_empty") {
        return;
    }
    let chars = text.chars().count() as u64;
    let bytes = text.len() as u64;
    let get_u64 = |name: &str| set_field(rules, name).and_then(|v| v.as_u64());
    let get_str = |name: &str| set_field(rules, name).and_then(|v| v.as_str().map(str::to_string));
    if let Some(want) = get_str("const") {
        if text != want {
            problems.push(format!("value must equal {want:?}"));
        }
    }
    for (name, actual, unit) in [("len", chars, "characters"), ("len_bytes", bytes, "bytes")] {
        if let Some(want) = get_u64(name) {
            if actual != want {
                problems.push(format!("value length must be {want} {unit}"));
            }
        }
    }
    for (name, actual, unit) in [
        ("min_len", chars, "characters"),
        ("min_bytes", bytes, "bytes"),
    ] {
        if let Some(min) = get_u64(name) {
            if actual < min {
                problems.push(format!("value length must be at least {min} {unit}"));
            }
        }
    }
    for (name, actual, unit) in [
        ("max_len", chars, "characters"),
        ("max_bytes", bytes, "bytes"),
    ] {
        if let Some(max) = get_u64(name) {
            if actual > max {
                problems.push(format!("value length must be at most {max} {unit}"));
            }
        }
    }
    if let Some(pattern) = get_str("pattern") {
        match regex::Regex::new(&pattern) {
            Ok(re) if !re.is_match(text) => {
                problems.push(format!("value does not match regex pattern {pattern:?}"))
            }
            Ok(_) => {}
            Err(error) => problems.push(format!(
                "rule pattern {pattern:?} does not compile: {error}"
            )),
        }
    }
    if let Some(prefix) = get_str("prefix").filter(|p| !text.starts_with(p.as_str())) {
        problems.push(format!("value does not have prefix {prefix:?}"));
    }
    if let Some(suffix) = get_str("suffix").filter(|s| !text.ends_with(s.as_str())) {
        problems.push(format!("value does not have suffix {suffix:?}"));
    }
    if let Some(needle) = get_str("contains").filter(|c| !text.contains(c.as_str())) {
        problems.push(format!("value does not contain substring {needle:?}"));
    }
    if let Some(needle) = get_str("not_contains").filter(|c| text.contains(c.as_str())) {
        problems.push(format!("value contains substring {needle:?}"));
    }
    let strings = |name: &str| -> Vec<String> {
        list(rules, name)
            .iter()
            .filter_map(|v| v.as_str().map(|s| format!("{s:?}")))
            .collect()
    };
    let quoted = format!("{text:?}");
    let allowed = strings("in");
    if !allowed.is_empty() && !allowed.contains(&quoted) {
        problems.push(format!("value must be in list {}", format_list(&allowed)));
    }
    let denied = strings("not_in");
    if denied.contains(&quoted) {
        problems.push(format!(
            "value must not be in list {}",
            format_list(&denied)
        ));
    }
    if let Some(problem) = check_well_known_string(text, rules) {
        problems.push(problem);
    }
}

fn check_well_known_string(text: &str, rules: &DynamicMessage) -> Option<String> {
    // `strict` defaults to true in validate.proto.
    let strict = set_field(rules, "strict")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    let header_name_ok = |t: &str| {
        if !strict {
            return !t.contains(['\0', '\n', '\r']);
        }
        let name = t.strip_prefix(':').unwrap_or(t);
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_|~`".contains(&b))
    };
    let header_value_ok = |t: &str| {
        if !strict {
            return !t.contains(['\0', '\n', '\r']);
        }
        !t.chars().any(|c| (c < ' ' && c != '\t') || c == '\u{7f}')
    };
    let is = |name: &str| flag(rules, name);
    if let Some(regex) = set_field(rules, "well_known_regex").and_then(|v| v.as_enum_number()) {
        // validate.KnownRegex: 1 = HTTP_HEADER_NAME, 2 = HTTP_HEADER_VALUE.
        if regex == 1 && !header_name_ok(text) {
            return Some(format!("value {text:?} is not a valid HTTP header name"));
        }
        if regex == 2 && !header_value_ok(text) {
            return Some(format!("value {text:?} is not a valid HTTP header value"));
        }
    }
    let hostname_ok = |t: &str| {
        let t = t.strip_suffix('.').unwrap_or(t);
        !t.is_empty()
            && t.len() <= 253
            && t.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    let checks: [(&str, bool); 7] = [
        ("ip", text.parse::<IpAddr>().is_ok()),
        ("ipv4", text.parse::<std::net::Ipv4Addr>().is_ok()),
        ("ipv6", text.parse::<std::net::Ipv6Addr>().is_ok()),
        ("hostname", hostname_ok(text)),
        (
            "address",
            text.parse::<IpAddr>().is_ok() || hostname_ok(text),
        ),
        ("uri", uri_scheme_ok(text)),
        ("uri_ref", !text.contains(char::is_whitespace)),
    ];
    for (rule, ok) in checks {
        if is(rule) && !ok {
            return Some(format!(
                "value {text:?} must be a valid {}",
                rule.replace('_', " ")
            ));
        }
    }
    if is("email") && !(text.contains('@') && !text.starts_with('@') && !text.ends_with('@')) {
        return Some(format!("value {text:?} must be a valid email address"));
    }
    if is("uuid") && !is_uuid(text) {
        return Some(format!("value {text:?} must be a valid UUID"));
    }
    None
}

/// An absolute URI: a scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`), then `:`.
fn uri_scheme_ok(text: &str) -> bool {
    match text.split_once(':') {
        Some((scheme, _)) => {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn check_bytes(bytes: &[u8], rules: &DynamicMessage, problems: &mut Vec<String>) {
    if bytes.is_empty() && flag(rules, "ignore_empty") {
        return;
    }
    let actual = bytes.len() as u64;
    let get_u64 = |name: &str| set_field(rules, name).and_then(|v| v.as_u64());
    if let Some(want) = get_u64("len").filter(|want| *want != actual) {
        problems.push(format!("value length must be {want} bytes"));
    }
    if let Some(min) = get_u64("min_len").filter(|min| actual < *min) {
        problems.push(format!("value length must be at least {min} bytes"));
    }
    if let Some(max) = get_u64("max_len").filter(|max| actual > *max) {
        problems.push(format!("value length must be at most {max} bytes"));
    }
    if let Some(want) = set_field(rules, "const").and_then(|v| v.as_bytes().cloned()) {
        if bytes != want.as_ref() {
            problems.push("value must equal the configured constant".to_string());
        }
    }
}

fn check_enum(
    value: &Value,
    rules: &DynamicMessage,
    descriptor: Option<&EnumDescriptor>,
    problems: &mut Vec<String>,
) {
    let Some(number) = value.as_enum_number() else {
        return;
    };
    let name = |n: i32| {
        descriptor
            .and_then(|d| d.get_value(n))
            .map(|v| v.name().to_string())
            .unwrap_or_else(|| n.to_string())
    };
    if let Some(want) = set_field(rules, "const").and_then(|v| v.as_i32()) {
        if number != want {
            problems.push(format!("value must equal {}", name(want)));
        }
    }
    if flag(rules, "defined_only") && descriptor.is_some_and(|d| d.get_value(number).is_none()) {
        problems.push(format!(
            "value {number} must be one of the defined enum values"
        ));
    }
    let numbers = |list_name: &str| -> Vec<i32> {
        list(rules, list_name)
            .iter()
            .filter_map(|v| v.as_i32())
            .collect()
    };
    let allowed = numbers("in");
    if !allowed.is_empty() && !allowed.contains(&number) {
        let names: Vec<String> = allowed.iter().map(|n| name(*n)).collect();
        problems.push(format!("value must be in list {}", format_list(&names)));
    }
    let denied = numbers("not_in");
    if denied.contains(&number) {
        problems.push(format!("value {} is not allowed", name(number)));
    }
}
