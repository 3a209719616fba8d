//! Envoy's layered runtime: an ordered list of key→string layers where a
//! later layer overrides an earlier one, with at most one admin layer that
//! `POST /runtime_modify` writes into. `/runtime` shows it in Envoy's JSON
//! shape (`layers`, and per key `final_value` plus one value per layer).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;

use serde_json::{json, Value};

/// One layer as configured (`layered_runtime.layers[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeLayer {
    pub name: String,
    pub kind: RuntimeLayerKind,
}

/// What a layer holds.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeLayerKind {
    /// Fixed values (`static_layer`), already flattened to dotted keys.
    Static(BTreeMap<String, String>),
    /// Values set through `/runtime_modify`, initially empty.
    Admin,
}

impl RuntimeLayer {
    /// A static layer from a JSON object, flattened the way Envoy flattens
    /// `static_layer` (`{"a":{"b":1}}` → `a.b = "1"`).
    pub fn static_from_json(name: &str, value: &Value) -> Result<Self, String> {
        let mut values = BTreeMap::new();
        flatten(String::new(), value, &mut values)?;
        Ok(RuntimeLayer {
            name: name.to_string(),
            kind: RuntimeLayerKind::Static(values),
        })
    }

    /// An admin layer.
    pub fn admin(name: &str) -> Self {
        RuntimeLayer {
            name: name.to_string(),
            kind: RuntimeLayerKind::Admin,
        }
    }
}

fn flatten(
    prefix: String,
    value: &Value,
    out: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                flatten(join(key), child, out)?;
            }
        }
        Value::String(s) => {
            out.insert(prefix, s.clone());
        }
        Value::Bool(b) => {
            out.insert(prefix, b.to_string());
        }
        Value::Number(n) => {
            let text = match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => (f as i64).to_string(),
                _ => n.to_string(),
            };
            out.insert(prefix, text);
        }
        Value::Null | Value::Array(_) => {
            return Err(format!(
                "runtime key '{prefix}': lists and nulls are not valid runtime values"
            ))
        }
    }
    Ok(())
}

struct Layer {
    name: String,
    is_admin: bool,
    values: BTreeMap<String, String>,
}

/// The live runtime. Reads take a shared lock; keep them off hot paths or
/// cache what you read.
pub struct Runtime {
    layers: RwLock<Vec<Layer>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("json", &self.to_json())
            .finish()
    }
}

impl Default for Runtime {
    /// Envoy's runtime when the bootstrap configures none: an empty static
    /// layer `base` and an admin layer `admin`.
    fn default() -> Self {
        Runtime::new(vec![
            RuntimeLayer {
                name: "base".to_string(),
                kind: RuntimeLayerKind::Static(BTreeMap::new()),
            },
            RuntimeLayer::admin("admin"),
        ])
    }
}

impl Runtime {
    /// A runtime with these layers, lowest precedence first.
    pub fn new(layers: Vec<RuntimeLayer>) -> Self {
        let layers = layers
            .into_iter()
            .map(|layer| match layer.kind {
                RuntimeLayerKind::Static(values) => Layer {
                    name: layer.name,
                    is_admin: false,
                    values,
                },
                RuntimeLayerKind::Admin => Layer {
                    name: layer.name,
                    is_admin: true,
                    values: BTreeMap::new(),
                },
            })
            .collect();
        Runtime {
            layers: RwLock::new(layers),
        }
    }

    /// The value of `key` from the highest layer that sets it.
    pub fn get(&self, key: &str) -> Option<String> {
        let layers = self.layers.read().unwrap();
        layers
            .iter()
            .rev()
            .find_map(|layer| layer.values.get(key).cloned())
    }

    /// `key` as an integer, if set and numeric.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.trim().parse().ok()
    }

    /// `key` as a boolean (`true`/`false`), if set and boolean.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.trim().parse().ok()
    }

    /// Applies `/runtime_modify` overrides to the admin layer; an empty value
    /// removes that key's override.
    pub fn merge_admin_values(&self, overrides: &[(String, String)]) -> Result<(), String> {
        let mut layers = self.layers.write().unwrap();
        let admin = layers
            .iter_mut()
            .find(|layer| layer.is_admin)
            .ok_or_else(|| "No admin layer specified".to_string())?;
        for (key, value) in overrides {
            if value.is_empty() {
                admin.values.remove(key);
            } else {
                admin.values.insert(key.clone(), value.clone());
            }
        }
        Ok(())
    }

    /// `/runtime` as Envoy renders it.
    pub fn to_json(&self) -> Value {
        let layers = self.layers.read().unwrap();
        let keys: BTreeSet<&String> = layers.iter().flat_map(|l| l.values.keys()).collect();
        let mut entries = serde_json::Map::new();
        for key in keys {
            let layer_values: Vec<&str> = layers
                .iter()
                .map(|l| l.values.get(key).map(String::as_str).unwrap_or(""))
                .collect();
            let final_value = layer_values
                .iter()
                .rev()
                .find(|v| !v.is_empty())
                .copied()
                .unwrap_or("");
            entries.insert(
                key.clone(),
                json!({"final_value": final_value, "layer_values": layer_values}),
            );
        }
        let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
        json!({"layers": names, "entries": entries})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> Runtime {
        let base = RuntimeLayer::static_from_json(
            "static",
            &json!({"health_check": {"min_interval": 10}, "feature": {"on": true}, "name": "x"}),
        )
        .unwrap();
        Runtime::new(vec![base, RuntimeLayer::admin("admin")])
    }

    #[test]
    fn static_layer_is_flattened() {
        let rt = runtime();
        assert_eq!(rt.get("health_check.min_interval").as_deref(), Some("10"));
        assert_eq!(rt.get_u64("health_check.min_interval"), Some(10));
        assert_eq!(rt.get_bool("feature.on"), Some(true));
        assert_eq!(rt.get("name").as_deref(), Some("x"));
        assert_eq!(rt.get("missing"), None);
        assert!(RuntimeLayer::static_from_json("s", &json!({"a": [1]})).is_err());
    }

    #[test]
    fn admin_layer_overrides_and_removes() {
        let rt = runtime();
        rt.merge_admin_values(&[("name".into(), "y".into()), ("new".into(), "1".into())])
            .unwrap();
        assert_eq!(rt.get("name").as_deref(), Some("y"));
        let dump = rt.to_json();
        assert_eq!(dump["layers"], json!(["static", "admin"]));
        assert_eq!(
            dump["entries"]["name"],
            json!({"final_value": "y", "layer_values": ["x", "y"]})
        );
        assert_eq!(
            dump["entries"]["new"],
            json!({"final_value": "1", "layer_values": ["", "1"]})
        );
        rt.merge_admin_values(&[("name".into(), String::new())])
            .unwrap();
        assert_eq!(
            rt.get("name").as_deref(),
            Some("x"),
            "static value shows again"
        );
    }

    #[test]
    fn runtime_without_admin_layer_refuses_changes() {
        let rt = Runtime::new(vec![]);
        assert_eq!(
            rt.merge_admin_values(&[("a".into(), "b".into())]),
            Err("No admin layer specified".to_string())
        );
        assert_eq!(
            Runtime::default().to_json()["layers"],
            json!(["base", "admin"])
        );
    }
}
