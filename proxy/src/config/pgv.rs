//! The protoc-gen-validate rules Envoy's protos carry (`validate.rules`
//! field options, `validate.required` oneofs), checked on reflected
//! messages with precise paths, reporting every violation.
//!
//! prost-reflect-validate was tried first: against this descriptor pool it
//! found no rule at all (a Cluster with an empty name and port 70000 passed),
//! stops at the first violation, and names descriptors rather than paths. So
//! the rules are read here from the pool's own `validate` extensions and
//! interpreted for the kinds Envoy uses: numbers, strings (incl. HTTP header
//! well-known regexes), bytes, enums, durations, timestamps, `Any`, repeated
//! and map fields, required messages and oneofs. `Any` payloads are unpacked
//! by type and validated in turn.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use prost_reflect::{
    DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    OneofDescriptor, ReflectMessage, Value,
};

use super::descriptors::{pool, unpack_dynamic_any};
use super::pgv_rules::{check_scalar, format_list};
use super::{join_path, ConfigError, ConfigErrors};

struct Extensions {
    field_rules: ExtensionDescriptor,
    oneof_required: ExtensionDescriptor,
    message_disabled: ExtensionDescriptor,
    message_ignored: ExtensionDescriptor,
}

/// The PGV extensions of the current pool, read on first use; cleared with
/// the rule caches when the pool is released.
static EXTENSIONS: RwLock<Option<Arc<Extensions>>> = RwLock::new(None);

fn extensions() -> Arc<Extensions> {
    if let Some(extensions) = &*EXTENSIONS.read().expect("rules cache poisoned") {
        return extensions.clone();
    }
    let pool = pool();
    let get = |name: &str| {
        pool.get_extension_by_name(name)
            .unwrap_or_else(|| panic!("descriptor pool lacks the PGV extension {name}"))
    };
    let extensions = Arc::new(Extensions {
        field_rules: get("validate.rules"),
        oneof_required: get("validate.required"),
        message_disabled: get("validate.disabled"),
        message_ignored: get("validate.ignored"),
    });
    *EXTENSIONS.write().expect("rules cache poisoned") = Some(extensions.clone());
    extensions
}

/// Forgets every rule read so far (they hold descriptors, which keep their
/// pool alive); the next check reads them again from the current pool.
pub(super) fn clear_rule_caches() {
    *EXTENSIONS.write().expect("rules cache poisoned") = None;
    FIELD_RULES.write().expect("rules cache poisoned").clear();
    MESSAGE_RULES.write().expect("rules cache poisoned").clear();
}

/// Decoding a field's options is not free; the rules of each field are read once.
static FIELD_RULES: LazyLock<RwLock<HashMap<String, Option<Arc<DynamicMessage>>>>> =
    LazyLock::new(Default::default);

fn field_rules(field: &FieldDescriptor) -> Option<Arc<DynamicMessage>> {
    if let Some(cached) = FIELD_RULES
        .read()
        .expect("rules cache poisoned")
        .get(field.full_name())
    {
        return cached.clone();
    }
    let options = field.options();
    let extensions = extensions();
    let rules = options
        .has_extension(&extensions.field_rules)
        .then(|| options.get_extension(&extensions.field_rules))
        .and_then(|value| value.as_message().cloned())
        .map(Arc::new);
    FIELD_RULES
        .write()
        .expect("rules cache poisoned")
        .insert(field.full_name().to_string(), rules.clone());
    rules
}

/// Message-level rules, read once per type: `None` when validation is
/// disabled for the type, else its oneofs marked `validate.required`.
type MessageRules = Option<Arc<Vec<OneofDescriptor>>>;

static MESSAGE_RULES: LazyLock<RwLock<HashMap<String, MessageRules>>> =
    LazyLock::new(Default::default);

fn message_rules(descriptor: &MessageDescriptor) -> MessageRules {
    if let Some(cached) = MESSAGE_RULES
        .read()
        .expect("rules cache poisoned")
        .get(descriptor.full_name())
    {
        return cached.clone();
    }
    let options = descriptor.options();
    let extensions = extensions();
    let disabled = bool_option(&options, &extensions.message_disabled)
        || bool_option(&options, &extensions.message_ignored);
    let rules = (!disabled).then(|| {
        Arc::new(
            descriptor
                .oneofs()
                .filter(|o| !o.is_synthetic())
                .filter(|o| bool_option(&o.options(), &extensions.oneof_required))
                .collect(),
        )
    });
    MESSAGE_RULES
        .write()
        .expect("rules cache poisoned")
        .insert(descriptor.full_name().to_string(), rules.clone());
    rules
}

fn bool_option(options: &DynamicMessage, extension: &ExtensionDescriptor) -> bool {
    options.has_extension(extension) && options.get_extension(extension).as_bool() == Some(true)
}

/// Checks `message` and everything below it, `Any` payloads included.
/// Paths are relative to `message`.
pub fn check_message(message: &DynamicMessage) -> ConfigErrors {
    let mut errors = ConfigErrors::default();
    walk_message(message, "", &mut errors);
    errors
}

fn walk_message(message: &DynamicMessage, path: &str, errors: &mut ConfigErrors) {
    let descriptor = message.descriptor();
    if descriptor.full_name() == "google.protobuf.Any" {
        // Unknown types are the supported-field check's to report.
        if let Ok(inner) = unpack_dynamic_any(message) {
            walk_message(&inner, path, errors);
        }
        return;
    }
    if descriptor.full_name() == "google.protobuf.Duration" {
        // Envoy rejects a negative duration anywhere in the config
        // (`MessageUtil::validateDurationFields`), PGV rule or not.
        let negative = ["seconds", "nanos"].iter().any(|name| {
            message
                .get_field_by_name(name)
                .and_then(|v| v.as_i64().or(v.as_i32().map(i64::from)))
                .is_some_and(|v| v < 0)
        });
        if negative {
            errors.push(ConfigError::new(
                path,
                "invalid duration: expected a positive duration",
            ));
        }
        return;
    }
    let Some(required_oneofs) = message_rules(&descriptor) else {
        return;
    };
    for oneof in required_oneofs.iter() {
        if !oneof.fields().any(|f| message.has_field(&f)) {
            let names: Vec<String> = oneof.fields().map(|f| format!("'{}'", f.name())).collect();
            errors.push(ConfigError::new(
                join_path(path, oneof.name()),
                format!("exactly one of {} must be set", names.join(", ")),
            ));
        }
    }
    for field in descriptor.fields() {
        let field_path = join_path(path, field.name());
        let rules = field_rules(&field);
        if field.is_list() {
            walk_list(message, &field, rules.as_deref(), &field_path, errors);
        } else if field.is_map() {
            walk_map(message, &field, rules.as_deref(), &field_path, errors);
        } else {
            walk_singular(message, &field, rules.as_deref(), &field_path, errors);
        }
    }
}

fn walk_singular(
    message: &DynamicMessage,
    field: &FieldDescriptor,
    rules: Option<&DynamicMessage>,
    path: &str,
    errors: &mut ConfigErrors,
) {
    let is_set = message.has_field(field);
    if !is_set && field.containing_oneof().is_some() {
        // An unset oneof member is not checked; the oneof's own `required` is.
        return;
    }
    if !is_set && field.kind().as_message().is_some() {
        if rules.is_some_and(requires_presence) {
            errors.push(ConfigError::new(path, "value is required"));
        }
        return;
    }
    let value = message.get_field(field);
    let reported = errors.0.len();
    if let Some(rules) = rules {
        check_value(&value, field, rules, path, errors);
    }
    // A duration its own rule already rejected is not reported twice.
    let rejected_duration = errors.0.len() > reported
        && field
            .kind()
            .as_message()
            .is_some_and(|m| m.full_name() == "google.protobuf.Duration");
    if is_set && !rejected_duration && !rules.is_some_and(skips_nested) {
        if let Value::Message(nested) = value.as_ref() {
            walk_message(nested, path, errors);
        }
    }
}

fn walk_list(
    message: &DynamicMessage,
    field: &FieldDescriptor,
    rules: Option<&DynamicMessage>,
    path: &str,
    errors: &mut ConfigErrors,
) {
    let value = message.get_field(field);
    let items = value.as_list().unwrap_or_default();
    let repeated = rules.and_then(|r| sub_rules(r, "repeated"));
    let item_rules = repeated.as_ref().and_then(|r| sub_rules(r, "items"));
    if let Some(repeated) = &repeated {
        if !(items.is_empty() && flag(repeated, "ignore_empty")) {
            check_count(
                items.len(),
                repeated,
                "min_items",
                "max_items",
                "item",
                path,
                errors,
            );
            if flag(repeated, "unique") && has_duplicates(items) {
                errors.push(ConfigError::new(
                    path,
                    "repeated value must contain unique items",
                ));
            }
        }
    }
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        if let Some(item_rules) = &item_rules {
            check_value(item, field, item_rules, &item_path, errors);
        }
        if let Value::Message(nested) = item {
            if !item_rules.as_ref().is_some_and(skips_nested) {
                walk_message(nested, &item_path, errors);
            }
        }
    }
}

fn walk_map(
    message: &DynamicMessage,
    field: &FieldDescriptor,
    rules: Option<&DynamicMessage>,
    path: &str,
    errors: &mut ConfigErrors,
) {
    let value = message.get_field(field);
    let Some(entries) = value.as_map() else {
        return;
    };
    let map_rules = rules.and_then(|r| sub_rules(r, "map"));
    if let Some(map_rules) = &map_rules {
        if !(entries.is_empty() && flag(map_rules, "ignore_empty")) {
            check_count(
                entries.len(),
                map_rules,
                "min_pairs",
                "max_pairs",
                "pair",
                path,
                errors,
            );
        }
    }
    let key_rules = map_rules.as_ref().and_then(|r| sub_rules(r, "keys"));
    let value_rules = map_rules.as_ref().and_then(|r| sub_rules(r, "values"));
    let entry = field.kind().as_message().cloned();
    let key_field = entry.as_ref().map(|e| e.map_entry_key_field());
    let value_field = entry.as_ref().map(|e| e.map_entry_value_field());
    let mut sorted: Vec<(&MapKey, &Value)> = entries.iter().collect();
    sorted.sort_by_key(|(key, _)| map_key_text(key));
    for (key, entry_value) in sorted {
        let entry_path = format!("{path}[{}]", map_key_text(key));
        if let (Some(key_rules), Some(key_field)) = (&key_rules, &key_field) {
            let key_value: Value = key.clone().into();
            check_value(&key_value, key_field, key_rules, &entry_path, errors);
        }
        if let (Some(value_rules), Some(value_field)) = (&value_rules, &value_field) {
            check_value(entry_value, value_field, value_rules, &entry_path, errors);
        }
        if let Value::Message(nested) = entry_value {
            walk_message(nested, &entry_path, errors);
        }
    }
}

/// A map key as it appears in a path: strings quoted, numbers bare.
pub fn map_key_text(key: &MapKey) -> String {
    match key {
        MapKey::String(text) => format!("{text:?}"),
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
    }
}

/// Applies the type-specific part of `rules` (everything but `message`) to one value.
fn check_value(
    value: &Value,
    field: &FieldDescriptor,
    rules: &DynamicMessage,
    path: &str,
    errors: &mut ConfigErrors,
) {
    for (rule_field, rule_value) in rules.fields() {
        let Some(kind_rules) = rule_value.as_message() else {
            continue;
        };
        match rule_field.name() {
            "message" | "repeated" | "map" => {}
            "any" => check_any(value, kind_rules, path, errors),
            kind => {
                let field_kind = field.kind();
                let enum_descriptor = match &field_kind {
                    Kind::Enum(e) => Some(e.clone()),
                    _ => None,
                };
                for message in check_scalar(kind, value, kind_rules, enum_descriptor.as_ref()) {
                    errors.push(ConfigError::new(path, message));
                }
            }
        }
    }
}

fn check_any(value: &Value, rules: &DynamicMessage, path: &str, errors: &mut ConfigErrors) {
    let Some(any) = value.as_message() else {
        return;
    };
    let type_url = any
        .get_field_by_name("type_url")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let listed = |name: &str| -> Vec<String> {
        rules
            .get_field_by_name(name)
            .and_then(|v| {
                v.as_list().map(|l| {
                    l.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
            })
            .unwrap_or_default()
    };
    let allowed = listed("in");
    if !allowed.is_empty() && !allowed.contains(&type_url) {
        errors.push(ConfigError::new(
            path,
            format!("type URL must be in list {}", format_list(&allowed)),
        ));
    }
    if listed("not_in").contains(&type_url) {
        errors.push(ConfigError::new(
            path,
            format!("type URL '{type_url}' is not allowed here"),
        ));
    }
}

fn check_count(
    count: usize,
    rules: &DynamicMessage,
    min_name: &str,
    max_name: &str,
    noun: &str,
    path: &str,
    errors: &mut ConfigErrors,
) {
    let bound = |name: &str| {
        rules
            .has_field_by_name(name)
            .then(|| rules.get_field_by_name(name).and_then(|v| v.as_u64()))
            .flatten()
    };
    if let Some(min) = bound(min_name) {
        if (count as u64) < min {
            errors.push(ConfigError::new(
                path,
                format!("value must contain at least {min} {noun}(s)"),
            ));
        }
    }
    if let Some(max) = bound(max_name) {
        if (count as u64) > max {
            errors.push(ConfigError::new(
                path,
                format!("value must contain no more than {max} {noun}(s)"),
            ));
        }
    }
}

fn has_duplicates(items: &[Value]) -> bool {
    items
        .iter()
        .enumerate()
        .any(|(i, a)| items[..i].contains(a))
}

fn sub_rules(rules: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    if !rules.has_field_by_name(name) {
        return None;
    }
    rules.get_field_by_name(name)?.as_message().cloned()
}

fn flag(rules: &DynamicMessage, name: &str) -> bool {
    rules.get_field_by_name(name).and_then(|v| v.as_bool()) == Some(true)
}

/// `message.required`, `duration.required`, `timestamp.required`, `any.required`.
fn requires_presence(rules: &DynamicMessage) -> bool {
    ["message", "duration", "timestamp", "any"]
        .iter()
        .any(|kind| sub_rules(rules, kind).is_some_and(|r| flag(&r, "required")))
}

fn skips_nested(rules: &DynamicMessage) -> bool {
    sub_rules(rules, "message").is_some_and(|r| flag(&r, "skip"))
}

#[cfg(test)]
#[path = "pgv_tests.rs"]
mod tests;
