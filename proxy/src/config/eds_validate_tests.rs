//! The typed EDS check against the generic validator: the rules it
//! re-states pinned to the descriptor pool, and both run over random
//! valid and invalid assignments.

use std::collections::{BTreeSet, HashMap};

use envoy_types::pb::envoy::config::core::v3::{Locality, Metadata, Pipe};
use envoy_types::pb::envoy::config::endpoint::v3::cluster_load_assignment::Policy;
use envoy_types::pb::envoy::config::endpoint::v3::endpoint::HealthCheckConfig;
use envoy_types::pb::envoy::config::endpoint::v3::locality_lb_endpoints::LbConfig;
use prost::Name;
use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::config::descriptors::{message_descriptor, pool};
use crate::config::supported::{supported_enum_values, supported_message_types};

fn socket(address: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: address.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

fn lb_endpoint(address: Address) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(address),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn assignment(lb_endpoints: Vec<LbEndpoint>) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: "web".into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn messages(result: Result<(), ConfigErrors>) -> Vec<String> {
    match result {
        Ok(()) => Vec::new(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_plain_assignment_takes_the_typed_path() {
    let cla = assignment(vec![
        lb_endpoint(socket("10.0.0.1", 80)),
        lb_endpoint(socket("10.0.0.2", 65535)),
    ]);
    assert!(is_plainly_valid(&cla));
    assert_eq!(validate_load_assignment(&cla), Ok(()));
    assert_eq!(validate_message(&cla), Ok(()));
}

#[test]
fn problems_are_reported_by_the_generic_validator() {
    let mut cla = assignment(vec![
        lb_endpoint(socket("10.0.0.1", 70000)),
        lb_endpoint(socket("", 80)),
    ]);
    cla.cluster_name.clear();
    cla.endpoints[0].priority = 3;
    cla.endpoints[0].lb_endpoints[0].load_balancing_weight = Some(UInt32Value { value: 0 });
    assert!(!is_plainly_valid(&cla));
    assert_eq!(
        messages(validate_load_assignment(&cla)),
        [
            "cluster_name: value length must be at least 1 characters",
            "endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: value must be less than or equal to 65535",
            "endpoints[0].lb_endpoints[0].load_balancing_weight: value must be greater than or equal to 1",
            "endpoints[0].lb_endpoints[1].endpoint.address.socket_address.address: value length must be at least 1 characters",
            "endpoints[0].priority: field 'priority' of envoy.config.endpoint.v3.LocalityLbEndpoints is not supported by Sluice",
        ]
    );
    assert_eq!(validate_load_assignment(&cla), validate_message(&cla));
}

/// The rules [`is_plainly_valid`] re-states, as the descriptor pool has
/// them: every supported field reachable from ClusterLoadAssignment with its
/// PGV rules, every required oneof. A change here (new Envoy protos, a newly
/// supported field) means the typed check must be reviewed.
#[test]
fn the_typed_check_covers_every_rule_in_the_descriptors() {
    let mut found = BTreeSet::new();
    let root = message_descriptor(&ClusterLoadAssignment::full_name()).unwrap();
    collect_rules(&root, &mut found, &mut BTreeSet::new());
    let expected: BTreeSet<String> = [
        "envoy.config.core.v3.Address.address: required oneof",
        "envoy.config.core.v3.Address.socket_address: message SocketAddress",
        "envoy.config.core.v3.Locality.region: string",
        "envoy.config.core.v3.Locality.sub_zone: string",
        "envoy.config.core.v3.Locality.zone: string",
        "envoy.config.core.v3.SocketAddress.address: string string.min_len=1",
        "envoy.config.core.v3.SocketAddress.ipv4_compat: bool",
        "envoy.config.core.v3.SocketAddress.port_specifier: required oneof",
        "envoy.config.core.v3.SocketAddress.port_value: uint32 uint32.lte=65535",
        "envoy.config.core.v3.SocketAddress.protocol: enum supported=TCP|UDP enum.defined_only=true",
        "envoy.config.endpoint.v3.ClusterLoadAssignment.cluster_name: string string.min_len=1",
        "envoy.config.endpoint.v3.ClusterLoadAssignment.endpoints: message LocalityLbEndpoints",
        "envoy.config.endpoint.v3.Endpoint.address: message Address",
        "envoy.config.endpoint.v3.Endpoint.hostname: string",
        "envoy.config.endpoint.v3.LbEndpoint.endpoint: message Endpoint",
        "envoy.config.endpoint.v3.LbEndpoint.load_balancing_weight: message UInt32Value uint32.gte=1",
        "envoy.config.endpoint.v3.LocalityLbEndpoints.lb_endpoints: message LbEndpoint",
        "envoy.config.endpoint.v3.LocalityLbEndpoints.load_balancing_weight: message UInt32Value uint32.gte=1",
        "envoy.config.endpoint.v3.LocalityLbEndpoints.locality: message Locality",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(found, expected);
}

fn collect_rules(
    message: &MessageDescriptor,
    found: &mut BTreeSet<String>,
    visited: &mut BTreeSet<String>,
) {
    if !visited.insert(message.full_name().to_string()) {
        return;
    }
    let supported: HashMap<&str, &[&str]> = supported_message_types().collect();
    let Some(fields) = supported.get(message.full_name()) else {
        return; // a leaf (UInt32Value): no rules inside
    };
    let required = pool().get_extension_by_name("validate.required").unwrap();
    let disabled = pool().get_extension_by_name("validate.disabled").unwrap();
    assert!(!message.options().has_extension(&disabled));
    for oneof in message.oneofs().filter(|o| !o.is_synthetic()) {
        if oneof.options().get_extension(&required).as_bool() == Some(true) {
            found.insert(format!(
                "{}.{}: required oneof",
                message.full_name(),
                oneof.name()
            ));
        }
    }
    let rules_extension = pool().get_extension_by_name("validate.rules").unwrap();
    for field in message.fields().filter(|f| fields.contains(&f.name())) {
        let mut line = format!("{}.{}: ", message.full_name(), field.name());
        match field.kind() {
            Kind::Message(nested) => line.push_str(&format!("message {}", nested.name())),
            Kind::Enum(_) => {
                line.push_str("enum");
                if let Some(values) = supported_enum_values(message.full_name(), field.name()) {
                    line.push_str(&format!(" supported={}", values.join("|")));
                }
            }
            other => line.push_str(&format!("{other:?}").to_lowercase()),
        }
        let options = field.options();
        if options.has_extension(&rules_extension) {
            let rules = options.get_extension(&rules_extension);
            let mut flat = Vec::new();
            flatten(rules.as_message().unwrap(), "", &mut flat);
            line.push(' ');
            line.push_str(&flat.join(" "));
        }
        found.insert(line);
        if let Kind::Message(nested) = field.kind() {
            collect_rules(&nested, found, visited);
        }
    }
}

fn flatten(rules: &DynamicMessage, prefix: &str, out: &mut Vec<String>) {
    for (field, value) in rules.fields() {
        let name = if prefix.is_empty() {
            field.name().to_string()
        } else {
            format!("{prefix}.{}", field.name())
        };
        match value {
            Value::Message(nested) => flatten(nested, &name, out),
            other => out.push(format!("{name}={}", scalar_text(other))),
        }
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::Bool(b) => b.to_string(),
        Value::U32(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::I32(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// One random assignment: mostly what a control plane sends, sometimes a
/// field out of range, empty, or one Sluice does not support.
fn random_assignment(rng: &mut StdRng) -> ClusterLoadAssignment {
    let odd = |rng: &mut StdRng| rng.random_bool(0.03);
    let mut cla = ClusterLoadAssignment {
        cluster_name: if odd(rng) {
            String::new()
        } else {
            "svc".into()
        },
        ..Default::default()
    };
    if odd(rng) {
        cla.named_endpoints.insert("n".into(), Endpoint::default());
    }
    if odd(rng) {
        cla.policy = Some(Policy::default());
    }
    for _ in 0..rng.random_range(0..3) {
        let mut locality = LocalityLbEndpoints::default();
        if rng.random_bool(0.3) {
            locality.locality = Some(Locality {
                zone: "z".into(),
                ..Default::default()
            });
        }
        if rng.random_bool(0.2) {
            locality.load_balancing_weight = Some(UInt32Value {
                value: rng.random_range(0..3),
            });
        }
        if odd(rng) {
            locality.priority = rng.random_range(1..200);
        }
        if odd(rng) {
            locality.metadata = Some(Metadata::default());
        }
        if odd(rng) {
            locality.proximity = Some(UInt32Value { value: 1 });
        }
        if odd(rng) {
            locality.lb_config = Some(LbConfig::LedsClusterLocalityConfig(Default::default()));
        }
        for _ in 0..rng.random_range(0..4) {
            locality.lb_endpoints.push(random_lb_endpoint(rng));
        }
        cla.endpoints.push(locality);
    }
    cla
}

fn random_lb_endpoint(rng: &mut StdRng) -> LbEndpoint {
    let odd = |rng: &mut StdRng| rng.random_bool(0.03);
    let mut lb_endpoint = LbEndpoint::default();
    if rng.random_bool(0.2) {
        lb_endpoint.load_balancing_weight = Some(UInt32Value {
            value: rng.random_range(0..3),
        });
    }
    if odd(rng) {
        lb_endpoint.health_status = rng.random_range(1..6);
    }
    if odd(rng) {
        lb_endpoint.metadata = Some(Metadata::default());
    }
    lb_endpoint.host_identifier = match rng.random_range(0..40) {
        0 => None,
        1 => Some(lb_endpoint::HostIdentifier::EndpointName("e".into())),
        _ => Some(lb_endpoint::HostIdentifier::Endpoint(random_endpoint(rng))),
    };
    lb_endpoint
}

fn random_endpoint(rng: &mut StdRng) -> Endpoint {
    let odd = |rng: &mut StdRng| rng.random_bool(0.03);
    let mut endpoint = Endpoint {
        hostname: if rng.random_bool(0.2) {
            "h".into()
        } else {
            String::new()
        },
        ..Default::default()
    };
    if odd(rng) {
        endpoint.health_check_config = Some(HealthCheckConfig::default());
    }
    if odd(rng) {
        endpoint.observability_name = "o".into();
    }
    endpoint.address = match rng.random_range(0..60) {
        0 => None,
        1 => Some(Address { address: None }),
        2 => Some(Address {
            address: Some(address::Address::Pipe(Pipe::default())),
        }),
        _ => Some(Address {
            address: Some(address::Address::SocketAddress(random_socket(rng))),
        }),
    };
    endpoint
}

fn random_socket(rng: &mut StdRng) -> SocketAddress {
    let odd = |rng: &mut StdRng| rng.random_bool(0.02);
    SocketAddress {
        protocol: if odd(rng) { rng.random_range(1..4) } else { 0 },
        address: if odd(rng) {
            String::new()
        } else {
            "10.1.2.3".into()
        },
        resolver_name: if odd(rng) { "r".into() } else { String::new() },
        ipv4_compat: rng.random_bool(0.1),
        network_namespace_filepath: if odd(rng) { "/n".into() } else { String::new() },
        port_specifier: match rng.random_range(0..50) {
            0 => None,
            1 => Some(socket_address::PortSpecifier::NamedPort("http".into())),
            2 => Some(socket_address::PortSpecifier::PortValue(65536)),
            3 => Some(socket_address::PortSpecifier::PortValue(0)),
            _ => Some(socket_address::PortSpecifier::PortValue(
                rng.random_range(1..=65535),
            )),
        },
    }
}

#[test]
fn typed_and_generic_validators_agree_on_random_assignments() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0ed5);
    let (mut valid, mut invalid) = (0, 0);
    for round in 0..3000 {
        let cla = random_assignment(&mut rng);
        let generic = validate_message(&cla);
        assert_eq!(
            is_plainly_valid(&cla),
            generic.is_ok(),
            "round {round}: {cla:?}\n{:?}",
            messages(generic.clone())
        );
        assert_eq!(validate_load_assignment(&cla), generic, "round {round}");
        if generic.is_ok() {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    assert!(
        valid > 500 && invalid > 500,
        "{valid} valid, {invalid} invalid"
    );
}
