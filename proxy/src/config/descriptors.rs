//! The Envoy v3 descriptor pool every reflective step (YAML parsing,
//! validation, the supported-field check, JSON output) works from.
//!
//! `envoy_descriptors.bin` is envoy-types' own descriptor set with comments
//! stripped (`cargo xtask gen-descriptors` regenerates it), so reflected
//! messages have exactly the field numbers of the prost types.
//!
//! The pool is built lazily from a working set, not from all 514 files:
//! the files defining the Bootstrap, every type Sluice implements (the
//! tables of [`super::supported`]) and the types a configuration text names,
//! with their imports (~90 files). Decoding all of them took ~10 MiB of heap
//! and most of the start-up time. A type outside the working set (an
//! extension Sluice does not implement, named in a binary bootstrap or an
//! xDS resource) switches to the complete pool once, so it is still found
//! and reported as unsupported rather than unknown.

use std::sync::{Arc, RwLock};

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use super::descriptor_index::{dotted_identifiers, DescriptorIndex};
use super::proto::type_name;
use super::supported::{supported_message_types, LEAF_MESSAGES, SUPPORTED_EXTENSIONS};

static DESCRIPTOR_SET: &[u8] = include_bytes!("envoy_descriptors.bin");

/// The index and the pool as built so far; both are dropped by
/// [`release_pool`] and rebuilt on the next use.
struct PoolState {
    index: Option<Arc<DescriptorIndex>>,
    pool: Option<DescriptorPool>,
    /// Type names a configuration text mentioned before the pool was built.
    extra_roots: Vec<String>,
    /// Whether the pool holds every file of the set.
    complete: bool,
}

static POOL: RwLock<PoolState> = RwLock::new(PoolState {
    index: None,
    pool: None,
    extra_roots: Vec::new(),
    complete: false,
});

fn state() -> std::sync::RwLockWriteGuard<'static, PoolState> {
    POOL.write().expect("descriptor pool lock")
}

impl PoolState {
    fn index(&mut self) -> Arc<DescriptorIndex> {
        self.index
            .get_or_insert_with(|| {
                Arc::new(DescriptorIndex::new(DESCRIPTOR_SET).expect(
                    "envoy_descriptors.bin is a valid descriptor set (cargo xtask gen-descriptors)",
                ))
            })
            .clone()
    }
}

/// The types every configuration may need: the Bootstrap and what Sluice
/// implements (xDS resources are messages of the Bootstrap's closure).
fn working_set_roots() -> Vec<&'static str> {
    let mut roots = vec!["envoy.config.bootstrap.v3.Bootstrap", "validate.rules"];
    roots.extend(supported_message_types().map(|(name, _)| name));
    roots.extend(SUPPORTED_EXTENSIONS);
    roots.extend(LEAF_MESSAGES);
    roots
}

fn decode_pool(set: &[u8]) -> DescriptorPool {
    DescriptorPool::decode(set)
        .expect("envoy_descriptors.bin is a valid descriptor set (cargo xtask gen-descriptors)")
}

/// The Envoy v3 pool: the working set (built on first use) or, once a type
/// outside it was asked for, every file. A clone is a cheap handle.
pub fn pool() -> DescriptorPool {
    if let Some(pool) = &POOL.read().expect("descriptor pool lock").pool {
        return pool.clone();
    }
    let mut state = state();
    if state.pool.is_none() {
        let index = state.index();
        let mut roots = working_set_roots();
        roots.extend(state.extra_roots.iter().map(String::as_str));
        let files = index.closure(roots);
        tracing::debug!(
            files = files.len(),
            of = index.file_count(),
            "descriptor pool: building the working set"
        );
        state.pool = Some(decode_pool(&index.encode_set(&files)));
    }
    state.pool.clone().expect("built above")
}

/// Whether the embedded set defines `full_name` (in or outside the pool).
fn set_defines(full_name: &str) -> bool {
    state().index().defines(full_name)
}

/// Switches to the pool of every file of the set (once). Returns whether
/// it switched now; `false` when the pool was already complete.
pub fn complete_pool(reason: &str) -> bool {
    let mut state = state();
    if state.complete {
        return false;
    }
    tracing::debug!(reason, "descriptor pool: loading every Envoy file");
    state.pool = Some(decode_pool(DESCRIPTOR_SET));
    state.complete = true;
    true
}

/// Drops the pool, the index and the PGV rules read from them, and returns
/// the freed heap to the kernel. For a server whose configuration cannot
/// change (no xDS) once it has been validated: the pool is ~4 MiB of the
/// ~5 MiB of heap such a server holds. Whatever needs it later (e.g.
/// `/config_dump`) rebuilds it.
pub fn release_pool() {
    {
        let mut state = state();
        state.pool = None;
        state.index = None;
        state.extra_roots.clear();
        state.complete = false;
    }
    super::pgv::clear_rule_caches();
    crate::memory::return_free_heap();
}

/// Makes every type `text` names (a YAML or JSON configuration) part of the
/// pool before it is parsed: an inlined `Any` resolves its `@type` in the
/// pool of the message being parsed. Returns whether the pool changed, in
/// which case descriptors obtained before are from the previous pool.
pub fn include_types_named_in(text: &str) -> bool {
    let mut state = state();
    if state.complete {
        return false;
    }
    let index = state.index();
    let missing: Vec<String> = dotted_identifiers(text)
        .filter(|name| index.defines(name))
        .filter(|name| {
            state.pool.as_ref().is_none_or(|pool| {
                pool.get_message_by_name(name).is_none()
                    && pool.get_enum_by_name(name).is_none()
                    && pool.get_extension_by_name(name).is_none()
            })
        })
        .map(str::to_string)
        .collect();
    if missing.is_empty() {
        return false;
    }
    if state.pool.is_none() {
        // Not built yet: the names join the working set.
        state.extra_roots.extend(missing);
        return false;
    }
    drop(state);
    complete_pool(&format!("the configuration names {}", missing[0]))
}

/// The descriptor of a message by full name (`envoy.config.cluster.v3.Cluster`).
/// A type of the set outside the working set completes the pool.
pub fn message_descriptor(full_name: &str) -> Option<MessageDescriptor> {
    pool().get_message_by_name(full_name).or_else(|| {
        if set_defines(full_name) && complete_pool(full_name) {
            pool().get_message_by_name(full_name)
        } else {
            None
        }
    })
}

/// The reflected form of a typed message, for walking it field by field.
/// `None` only if `T` is not an Envoy/protobuf type known to the pool.
pub fn to_dynamic<T: Message + prost::Name>(message: &T) -> Option<DynamicMessage> {
    let descriptor = message_descriptor(&T::full_name())?;
    DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice()).ok()
}

/// What an `Any` field holds, decoded as a message of its own type.
/// Err names why not: the type is unknown to the pool, or the bytes do not decode.
pub fn unpack_dynamic_any(any: &DynamicMessage) -> Result<DynamicMessage, String> {
    let (type_url, value) = any_parts(any);
    let name = type_name(&type_url);
    let descriptor =
        message_descriptor(name).ok_or_else(|| format!("unknown extension type '{name}'"))?;
    DynamicMessage::decode(descriptor, value.as_slice())
        .map_err(|error| format!("cannot decode {name}: {error}"))
}

/// The `type_url` and `value` of a reflected `google.protobuf.Any`.
pub fn any_parts(any: &DynamicMessage) -> (String, Vec<u8>) {
    let type_url = any
        .get_field_by_name("type_url")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let value = any
        .get_field_by_name("value")
        .and_then(|v| v.as_bytes().map(|b| b.to_vec()))
        .unwrap_or_default();
    (type_url, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::core::v3::{
        address, socket_address, Address, SocketAddress,
    };
    use envoy_types::pb::envoy::config::endpoint::v3::{
        lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
    };
    use envoy_types::pb::google::protobuf::{Any, Duration};
    use prost::Name;
    use prost_reflect::ReflectMessage;

    fn sample_bootstrap() -> Bootstrap {
        let endpoint = LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: "127.0.0.1".into(),
                        port_specifier: Some(socket_address::PortSpecifier::PortValue(8080)),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        let cluster = Cluster {
            name: "backend".into(),
            connect_timeout: Some(Duration {
                seconds: 5,
                nanos: 0,
            }),
            load_assignment: Some(ClusterLoadAssignment {
                cluster_name: "backend".into(),
                endpoints: vec![LocalityLbEndpoints {
                    lb_endpoints: vec![endpoint],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        Bootstrap {
            static_resources: Some(
                envoy_types::pb::envoy::config::bootstrap::v3::bootstrap::StaticResources {
                    clusters: vec![cluster],
                    ..Default::default()
                },
            ),
            ..Default::default()
        }
    }

    #[test]
    fn committed_descriptors_encode_bootstrap_exactly_like_envoy_types() {
        let bootstrap = sample_bootstrap();
        let dynamic = to_dynamic(&bootstrap).expect("Bootstrap is in the pool");
        assert_eq!(dynamic.encode_to_vec(), bootstrap.encode_to_vec());
        let back: Bootstrap = dynamic.transcode_to().unwrap();
        assert_eq!(back, bootstrap);
    }

    #[test]
    fn pool_has_validation_rules_and_well_known_types() {
        assert!(pool().get_extension_by_name("validate.rules").is_some());
        assert!(message_descriptor(&Duration::full_name()).is_some());
        assert!(message_descriptor(&Cluster::full_name()).is_some());
    }

    #[test]
    fn committed_descriptors_keep_custom_options() {
        // Re-encoding through prost-types would silently drop these and with
        // them every PGV rule; `cargo xtask gen-descriptors` keeps them.
        let rules = pool().get_extension_by_name("validate.rules").unwrap();
        let name = message_descriptor(&Cluster::full_name())
            .unwrap()
            .get_field_by_name("name")
            .unwrap();
        assert!(name.options().has_extension(&rules));
    }

    #[test]
    fn working_set_is_a_fraction_of_the_set_with_everything_sluice_implements() {
        let index = DescriptorIndex::new(DESCRIPTOR_SET).unwrap();
        for root in working_set_roots() {
            assert!(index.defines(root), "{root} is not in the descriptor set");
        }
        let files = index.closure(working_set_roots());
        assert!(
            files.len() * 4 < index.file_count(),
            "{} of {} files",
            files.len(),
            index.file_count()
        );
        let working_set = decode_pool(&index.encode_set(&files));
        assert!(working_set
            .get_message_by_name(&Bootstrap::full_name())
            .is_some());
        assert!(working_set
            .get_extension_by_name("validate.rules")
            .is_some());
        assert!(working_set.get_message_by_name(WASM).is_none());
    }

    const WASM: &str = "envoy.extensions.filters.http.wasm.v3.Wasm";

    #[test]
    fn types_outside_the_working_set_are_still_found() {
        assert_eq!(message_descriptor(WASM).unwrap().full_name(), WASM);
        assert!(message_descriptor("no.such.Type").is_none());
        let any = Any {
            type_url: format!("type.googleapis.com/{WASM}"),
            value: vec![],
        };
        let json = crate::config::json::any_to_json(&any);
        assert_eq!(json["@type"], any.type_url, "{json}");
        assert!(json.get("error").is_none(), "{json}");
    }

    #[test]
    fn a_released_pool_is_rebuilt_on_next_use() {
        release_pool();
        let cluster = message_descriptor(&Cluster::full_name()).expect("rebuilt");
        let rules = pool().get_extension_by_name("validate.rules").unwrap();
        assert!(cluster
            .get_field_by_name("name")
            .unwrap()
            .options()
            .has_extension(&rules));
        release_pool();
        let errors =
            crate::config::load_bootstrap(None, Some("static_resources: {clusters: [{name: ''}]}"))
                .unwrap_err();
        assert!(
            errors
                .to_string()
                .contains("static_resources.clusters[0].name"),
            "{errors}"
        );
    }

    #[test]
    fn unpacks_any_by_its_type_url() {
        let cluster = Cluster {
            name: "c".into(),
            ..Default::default()
        };
        let any = Any {
            type_url: Cluster::type_url(),
            value: cluster.encode_to_vec(),
        };
        let dynamic_any = to_dynamic(&any).unwrap();
        let inner = unpack_dynamic_any(&dynamic_any).unwrap();
        assert_eq!(
            inner.descriptor().full_name(),
            "envoy.config.cluster.v3.Cluster"
        );
        let unknown = to_dynamic(&Any {
            type_url: "type.googleapis.com/no.such.Type".into(),
            value: vec![],
        })
        .unwrap();
        assert_eq!(
            unpack_dynamic_any(&unknown).unwrap_err(),
            "unknown extension type 'no.such.Type'"
        );
    }
}
