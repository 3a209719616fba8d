//! The Envoy v3 descriptor pool every reflective step (YAML parsing,
//! validation, the supported-field check, JSON output) works from.
//!
//! `envoy_descriptors.bin` is envoy-types' own descriptor set with comments
//! stripped (`cargo xtask gen-descriptors` regenerates it), so reflected
//! messages have exactly the field numbers of the prost types.

use std::sync::LazyLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use super::proto::type_name;

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(include_bytes!("envoy_descriptors.bin").as_slice())
        .expect("envoy_descriptors.bin is a valid descriptor set (cargo xtask gen-descriptors)")
});

/// Every Envoy v3 message, extension and validation rule, decoded once.
pub fn pool() -> &'static DescriptorPool {
    &POOL
}

/// The descriptor of a message by full name (`envoy.config.cluster.v3.Cluster`).
pub fn message_descriptor(full_name: &str) -> Option<MessageDescriptor> {
    pool().get_message_by_name(full_name)
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
