//! `json_format` (format dictionaries): a `google.protobuf.Struct` whose
//! string values are format strings, compiled once and rendered per request
//! as one JSON object, with Envoy's typing rules:
//!
//! - a value that is exactly one operator keeps its type: numbers for
//!   `%RESPONSE_CODE%`, `%BYTES_SENT%`, `%DURATION%`, ports, …; strings for
//!   the rest; `null` when absent;
//! - any other string is a template rendered as a string, absent operators
//!   printing `-` (or nothing with `omit_empty_values`);
//! - numbers, booleans and nulls in the Struct are copied; objects and lists
//!   nest;
//! - keys come out sorted; with `omit_empty_values`, null keys are dropped and
//!   so are nested objects left empty (lists and the root object stay).

use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value as ProtoValue};
use serde_json::{Map, Number, Value};

use super::operator::{Operator, Rendered};
use super::FormatString;
use crate::config::error::join_path;
use crate::config::{ConfigError, ConfigErrors};
use crate::stream_info::StreamInfo;

/// A compiled `json_format`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonFormat {
    root: Vec<(String, Node)>,
    omit_empty_values: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Constant(Value),
    Typed(Operator),
    Template(FormatString),
    Object(Vec<(String, Node)>),
    List(Vec<Node>),
}

impl JsonFormat {
    /// Compiles `format`; errors name the offending key's path, relative
    /// to the Struct (`nested.key`).
    pub fn compile(format: &Struct, omit_empty_values: bool) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let root = compile_object(format, "", omit_empty_values, &mut errors);
        errors.into_result(JsonFormat {
            root,
            omit_empty_values,
        })
    }

    /// True when some value reads request headers (see
    /// [`FormatString::reads_request_headers`]).
    pub fn reads_request_headers(&self) -> bool {
        fn node_reads(node: &Node) -> bool {
            match node {
                Node::Constant(_) => false,
                Node::Typed(operator) => operator.reads_request_headers(),
                Node::Template(format) => format.reads_request_headers(),
                Node::Object(fields) => fields.iter().any(|(_, node)| node_reads(node)),
                Node::List(items) => items.iter().any(node_reads),
            }
        }
        self.root.iter().any(|(_, node)| node_reads(node))
    }

    /// The formatted object.
    pub fn format(&self, info: &StreamInfo) -> Value {
        let mut scratch = String::new();
        Value::Object(self.format_object(&self.root, info, &mut scratch))
    }

    /// Appends the object as one line of JSON, with the newline Envoy adds.
    pub fn format_line_into(&self, info: &StreamInfo, out: &mut String) {
        let value = self.format(info);
        // Serializing a Value cannot fail: its keys are strings.
        out.push_str(&serde_json::to_string(&value).unwrap_or_default());
        out.push('\n');
    }

    fn format_object(
        &self,
        fields: &[(String, Node)],
        info: &StreamInfo,
        scratch: &mut String,
    ) -> Map<String, Value> {
        let mut object = Map::new();
        for (key, node) in fields {
            let value = self.format_node(node, info, scratch);
            if self.omit_empty_values && omittable(&value) {
                continue;
            }
            object.insert(key.clone(), value);
        }
        object
    }

    fn format_node(&self, node: &Node, info: &StreamInfo, scratch: &mut String) -> Value {
        match node {
            Node::Constant(value) => value.clone(),
            Node::Typed(operator) => {
                scratch.clear();
                match operator.render(info, scratch) {
                    Rendered::Text => Value::String(scratch.clone()),
                    Rendered::Number(value) => Value::Number(value.into()),
                    Rendered::Absent => Value::Null,
                }
            }
            Node::Template(format) => Value::String(format.format(info)),
            Node::Object(fields) => Value::Object(self.format_object(fields, info, scratch)),
            Node::List(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.format_node(item, info, scratch))
                    .collect(),
            ),
        }
    }
}

fn omittable(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    }
}

fn compile_object(
    format: &Struct,
    path: &str,
    omit_empty_values: bool,
    errors: &mut ConfigErrors,
) -> Vec<(String, Node)> {
    let mut keys: Vec<&String> = format.fields.keys().collect();
    keys.sort();
    keys.into_iter()
        .filter_map(|key| {
            let path = join_path(path, key);
            let node = compile_value(&format.fields[key], &path, omit_empty_values, errors)?;
            Some((key.clone(), node))
        })
        .collect()
}

fn compile_value(
    value: &ProtoValue,
    path: &str,
    omit_empty_values: bool,
    errors: &mut ConfigErrors,
) -> Option<Node> {
    Some(match &value.kind {
        None | Some(Kind::NullValue(_)) => Node::Constant(Value::Null),
        Some(Kind::BoolValue(b)) => Node::Constant(Value::Bool(*b)),
        Some(Kind::NumberValue(n)) => match json_number(*n) {
            Some(number) => Node::Constant(Value::Number(number)),
            None => {
                errors.push(ConfigError::new(path, format!("invalid number {n}")));
                return None;
            }
        },
        Some(Kind::StringValue(text)) => match FormatString::parse(text) {
            Ok(format) => {
                if let Some(operator) = format.single_operator() {
                    Node::Typed(operator.clone())
                } else if format.is_literal() {
                    Node::Constant(Value::String(format.format_literal()))
                } else {
                    Node::Template(format.with_omit_empty_values(omit_empty_values))
                }
            }
            Err(message) => {
                errors.push(ConfigError::new(path, message));
                return None;
            }
        },
        Some(Kind::StructValue(object)) => {
            Node::Object(compile_object(object, path, omit_empty_values, errors))
        }
        Some(Kind::ListValue(list)) => Node::List(
            list.values
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    compile_value(item, &format!("{path}[{i}]"), omit_empty_values, errors)
                })
                .collect(),
        ),
    })
}

/// Whole numbers print without a fraction (`5`, not `5.0`), as Envoy does.
fn json_number(n: f64) -> Option<Number> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.fract() == 0.0 && n.abs() <= EXACT {
        Some(Number::from(n as i64))
    } else {
        Number::from_f64(n)
    }
}

impl FormatString {
    /// The text of a string without operators.
    fn format_literal(&self) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                super::Part::Literal(text) => &**text,
                super::Part::Operator(_) => "",
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formatter::tests::{empty_info, filled_info};
    use envoy_types::pb::google::protobuf::ListValue;
    use serde_json::json;

    /// The `Struct` a YAML/JSON `json_format` would decode into.
    pub(crate) fn to_struct(value: Value) -> Struct {
        let Value::Object(fields) = value else {
            panic!("not an object")
        };
        Struct {
            fields: fields
                .into_iter()
                .map(|(key, value)| (key, to_proto(value)))
                .collect(),
        }
    }

    fn to_proto(value: Value) -> ProtoValue {
        let kind = match value {
            Value::Null => Kind::NullValue(0),
            Value::Bool(b) => Kind::BoolValue(b),
            Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
            Value::String(s) => Kind::StringValue(s),
            Value::Array(items) => Kind::ListValue(ListValue {
                values: items.into_iter().map(to_proto).collect(),
            }),
            object @ Value::Object(_) => Kind::StructValue(to_struct(object)),
        };
        ProtoValue { kind: Some(kind) }
    }

    fn sample_format() -> Struct {
        to_struct(json!({
            "code": "%RESPONSE_CODE%",
            "bytes": "%BYTES_SENT%",
            "rx": "%BYTES_RECEIVED%",
            "dur": "%DURATION%",
            "rdur": "%RESPONSE_DURATION%",
            "port": "%DOWNSTREAM_LOCAL_PORT%",
            "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
            "proto": "%PROTOCOL%",
            "missing": "%REQ(X-MISSING)%",
            "mixed": "a %REQ(X-MISSING)% b %RESPONSE_CODE%",
            "lit": "plain",
            "pct": "%%",
            "num": 5,
            "ratio": 0.5,
            "flag": true,
            "start": "%START_TIME%",
            "ua": "%REQ(USER-AGENT):3%",
            "nested": {"inner": "%UPSTREAM_HOST%", "flags": "%RESPONSE_FLAGS%"},
            "list": ["%RESPONSE_CODE%", "x", "%REQ(X-MISSING)%"]
        }))
    }

    #[test]
    fn single_operators_keep_their_type_like_envoy() {
        let format = JsonFormat::compile(&sample_format(), false).unwrap();
        assert_eq!(
            format.format(&filled_info()),
            json!({
                "attempts": 2, "bytes": 0, "code": 204, "dur": 226, "flag": true,
                "list": [204, "x", null], "lit": "plain", "missing": null,
                "mixed": "a - b 204", "nested": {"flags": "UT,UF", "inner": "10.0.2.1:80"},
                "num": 5, "pct": "%", "port": 8080, "proto": "HTTP/2", "ratio": 0.5, "rdur": 120,
                "rx": 154, "start": "2016-04-15T20:17:00.310Z", "ua": "nsq"
            })
        );
    }

    #[test]
    fn absent_values_are_null_and_templates_print_dashes() {
        let format = JsonFormat::compile(&sample_format(), false).unwrap();
        let value = format.format(&empty_info());
        assert_eq!(value["code"], json!(0));
        assert_eq!(value["dur"], Value::Null);
        assert_eq!(value["rdur"], Value::Null);
        assert_eq!(value["port"], Value::Null);
        assert_eq!(value["proto"], Value::Null);
        assert_eq!(value["nested"], json!({"flags": "-", "inner": null}));
        assert_eq!(value["mixed"], json!("a - b 0"));
    }

    #[test]
    fn omit_empty_values_drops_nulls_and_emptied_objects() {
        let format = to_struct(json!({
            "code": "%RESPONSE_CODE%",
            "missing": "%REQ(X-MISSING)%",
            "mixed": "a %REQ(X-MISSING)% b",
            "nested": {"inner": "%UPSTREAM_HOST%"},
            "list": ["%UPSTREAM_HOST%"]
        }));
        let format = JsonFormat::compile(&format, true).unwrap();
        assert_eq!(
            format.format(&empty_info()),
            json!({"code": 0, "mixed": "a  b", "list": [null]})
        );
    }

    #[test]
    fn line_output_is_compact_sorted_and_newline_terminated() {
        let format = to_struct(json!({"z": "%RESPONSE_CODE%", "a": "%PROTOCOL%"}));
        let format = JsonFormat::compile(&format, false).unwrap();
        let mut out = String::new();
        format.format_line_into(&filled_info(), &mut out);
        assert_eq!(out, "{\"a\":\"HTTP/2\",\"z\":204}\n");
    }

    #[test]
    fn bad_values_are_errors_at_their_path() {
        let format = to_struct(json!({
            "ok": "%PROTOCOL%",
            "outer": {"bad": "%NOPE%"},
            "list": ["%REQ%"]
        }));
        let errors = JsonFormat::compile(&format, false).unwrap_err();
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["list[0]", "outer.bad"]);
        assert!(errors.0[1]
            .message
            .contains("Not supported field in StreamInfo: NOPE"));
    }

    #[test]
    fn reads_request_headers_looks_into_nested_values() {
        let reads = |v: Value| {
            JsonFormat::compile(&to_struct(v), false)
                .unwrap()
                .reads_request_headers()
        };
        assert!(reads(json!({"a": {"b": ["%REQ(USER-AGENT)%"]}})));
        assert!(reads(json!({"a": "ua=%REQ(USER-AGENT)%"})));
        assert!(!reads(json!({"a": "%REQ(:PATH)%", "b": 1})));
    }
}
