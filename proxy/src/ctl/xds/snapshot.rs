//! The resources `sluicectl xds serve` serves: every Envoy YAML/JSON file in
//! a folder, read into one immutable [`Snapshot`].
//!
//! A file holds either one resource (a mapping with `"@type"`) or a list
//! under `resources:` (the `DiscoveryResponse` shape of Envoy's file-based
//! xDS, so the same files work with `path_config_source`). Types come from
//! each `"@type"` and are parsed with Sluice's own loader (same types, same
//! error messages). Versions are content hashes: a resource's version
//! changes exactly when its bytes do, and a type's `version_info` is the
//! hash of all its resources, so restarts and other servers agree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use crate::config::parse_message;
use crate::xds::decode::resource_name;
use crate::xds::type_urls;

/// One served resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    pub body: Any,
    /// Content hash, hex.
    pub version: String,
    /// The file it came from, for logs.
    pub file: PathBuf,
}

/// Everything served: type URL → name → resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub types: BTreeMap<String, BTreeMap<String, Served>>,
}

impl Snapshot {
    /// The resources of a type (empty when none).
    pub fn of_type(&self, type_url: &str) -> impl Iterator<Item = (&String, &Served)> {
        self.types.get(type_url).into_iter().flat_map(|m| m.iter())
    }

    /// The `version_info` of a type: a hash over its names and versions.
    pub fn type_version(&self, type_url: &str) -> String {
        let mut text = String::new();
        for (name, served) in self.of_type(type_url) {
            text.push_str(name);
            text.push('\0');
            text.push_str(&served.version);
            text.push('\0');
        }
        hash_hex(text.as_bytes())
    }

    pub fn get(&self, type_url: &str, name: &str) -> Option<&Served> {
        self.types.get(type_url)?.get(name)
    }

    /// Number of resources of every type.
    pub fn len(&self) -> usize {
        self.types.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn hash_hex(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh64::xxh64(bytes, 0))
}

/// The folder's resource files (`*.yaml`, `*.yml`, `*.json`), sorted, with
/// their modification time and a hash of their content: a change in this
/// list means reload. (The content hash catches a rewrite within one
/// timestamp tick; resource files are small.)
pub fn fingerprint(dir: &Path) -> Result<Vec<(PathBuf, Option<SystemTime>, u64)>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_resource_file = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        );
        if !is_resource_file {
            continue;
        }
        if let Ok(meta) = entry.metadata() {
            if meta.is_file() {
                let content = std::fs::read(&path).unwrap_or_default();
                files.push((
                    path,
                    meta.modified().ok(),
                    xxhash_rust::xxh64::xxh64(&content, 0),
                ));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every resource file in `dir`. Any bad file fails the whole load
/// (the server then keeps serving what it had), with every problem listed.
pub fn load(dir: &Path) -> Result<Snapshot, Vec<String>> {
    let files = fingerprint(dir).map_err(|e| vec![e])?;
    let mut snapshot = Snapshot::default();
    let mut errors = Vec::new();
    for (path, _, _) in files {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) => {
                errors.push(format!("{shown}: {error}"));
                continue;
            }
        };
        let resources = match parse_file(&text) {
            Ok(resources) => resources,
            Err(error) => {
                errors.push(format!("{shown}: {error}"));
                continue;
            }
        };
        for (index, body) in resources.into_iter().enumerate() {
            if !type_urls::ALL.contains(&body.type_url.as_str()) {
                errors.push(format!(
                    "{shown}: resources[{index}]: \"@type\" {} is not an xDS resource type Sluice serves (Listener, RouteConfiguration, Cluster, ClusterLoadAssignment)",
                    body.type_url
                ));
                continue;
            }
            let name = match resource_name(&body) {
                Ok(name) => name,
                Err(error) => {
                    errors.push(format!("{shown}: resources[{index}]: {error}"));
                    continue;
                }
            };
            let by_name = snapshot.types.entry(body.type_url.clone()).or_default();
            if let Some(previous) = by_name.get(&name) {
                errors.push(format!(
                    "{shown}: {} '{name}' is also defined in {}",
                    type_urls::short(&body.type_url),
                    previous.file.display()
                ));
                continue;
            }
            let version = hash_hex(&body.encode_to_vec());
            by_name.insert(
                name,
                Served {
                    body,
                    version,
                    file: path.clone(),
                },
            );
        }
    }
    if errors.is_empty() {
        Ok(snapshot)
    } else {
        Err(errors)
    }
}

/// One file's resources: a `resources:` list, or a single `"@type"` mapping.
fn parse_file(text: &str) -> Result<Vec<Any>, String> {
    let has_list = text.lines().any(|line| {
        line.starts_with("resources:") || line.trim_start().starts_with("\"resources\"")
    });
    if has_list {
        let response = parse_message::<DiscoveryResponse>(text).map_err(|e| e.to_string())?;
        Ok(response.resources)
    } else {
        let any = parse_message::<Any>(text).map_err(|e| e.to_string())?;
        if any.type_url.is_empty() {
            return Err(
                "no \"@type\": a resource file needs \"@type\" or a resources: list".into(),
            );
        }
        Ok(vec![any])
    }
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
