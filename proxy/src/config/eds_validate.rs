//! Validation of EDS `ClusterLoadAssignment`s without the reflective walk.
//!
//! An xDS push of 10,000 endpoints spent most of its time in the generic
//! validator ([`validate_message`]: the message re-encoded into a
//! `DynamicMessage`, then every field of every endpoint visited by
//! reflection for the PGV rules and the supported-field table). This module
//! answers the common question — "is this assignment free of problems?" —
//! on the typed prost message directly, and only when the answer is no does
//! it run the generic validator, which then writes the errors. So the error
//! messages (field paths, wording, order) are by construction the generic
//! validator's, the ones `--mode validate` and the NACK `error_detail` give.
//!
//! [`is_plainly_valid`] is true exactly when the generic validator finds
//! nothing: every field it accepts is one Sluice supports (the table in
//! [`super::supported`]) and every PGV rule those fields carry in Envoy's
//! protos holds. The rules it re-states are pinned against the descriptor
//! pool by a test, and a randomized differential test runs both validators
//! over valid and invalid assignments; a new field in the prost types is a
//! compile error here (the structs are destructured without `..`).

use envoy_types::pb::envoy::config::core::v3::{address, socket_address, Address, SocketAddress};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::{validate_message, ConfigErrors};

/// The PGV rules and the supported-field check on an EDS assignment, with
/// the same result as [`validate_message`], cheaply when it is valid.
pub fn validate_load_assignment(assignment: &ClusterLoadAssignment) -> Result<(), ConfigErrors> {
    if is_plainly_valid(assignment) {
        return Ok(());
    }
    validate_message(assignment)
}

/// Whether `validate_message(assignment)` finds no problem, decided on the
/// typed message.
pub fn is_plainly_valid(assignment: &ClusterLoadAssignment) -> bool {
    let ClusterLoadAssignment {
        cluster_name,
        endpoints,
        named_endpoints,
        policy,
    } = assignment;
    // `cluster_name`: string.min_len = 1. `named_endpoints`, `policy`: not supported.
    !cluster_name.is_empty()
        && named_endpoints.is_empty()
        && policy.is_none()
        && endpoints.iter().all(locality_is_plainly_valid)
}

fn locality_is_plainly_valid(locality: &LocalityLbEndpoints) -> bool {
    let LocalityLbEndpoints {
        locality: _, // Locality: region, zone, sub_zone, all supported, no rules.
        metadata,
        lb_endpoints,
        load_balancing_weight,
        priority,
        proximity,
        lb_config,
    } = locality;
    // `priority` (uint32.lte = 128) is not supported: any value but 0 is an error.
    metadata.is_none()
        && *priority == 0
        && proximity.is_none()
        && lb_config.is_none()
        && weight_is_valid(load_balancing_weight.as_ref())
        && lb_endpoints.iter().all(lb_endpoint_is_plainly_valid)
}

/// `load_balancing_weight`: uint32.gte = 1 (checked when set).
fn weight_is_valid(weight: Option<&UInt32Value>) -> bool {
    weight.is_none_or(|weight| weight.value >= 1)
}

fn lb_endpoint_is_plainly_valid(lb_endpoint: &LbEndpoint) -> bool {
    let LbEndpoint {
        health_status,
        metadata,
        load_balancing_weight,
        host_identifier,
    } = lb_endpoint;
    // The `host_identifier` oneof is not required; `endpoint_name` is not supported.
    let host_is_valid = match host_identifier {
        None => true,
        Some(lb_endpoint::HostIdentifier::Endpoint(endpoint)) => {
            endpoint_is_plainly_valid(endpoint)
        }
        Some(lb_endpoint::HostIdentifier::EndpointName(_)) => false,
    };
    *health_status == 0
        && metadata.is_none()
        && weight_is_valid(load_balancing_weight.as_ref())
        && host_is_valid
}

fn endpoint_is_plainly_valid(endpoint: &Endpoint) -> bool {
    let Endpoint {
        address,
        health_check_config,
        hostname: _, // supported, no rules
        additional_addresses,
        observability_name,
    } = endpoint;
    health_check_config.is_none()
        && additional_addresses.is_empty()
        && observability_name.is_empty()
        && address.as_ref().is_none_or(address_is_plainly_valid)
}

/// `Address`: the `address` oneof is required; only `socket_address` is supported.
fn address_is_plainly_valid(address: &Address) -> bool {
    match &address.address {
        Some(address::Address::SocketAddress(socket)) => socket_address_is_plainly_valid(socket),
        Some(address::Address::Pipe(_) | address::Address::EnvoyInternalAddress(_)) | None => false,
    }
}

fn socket_address_is_plainly_valid(socket: &SocketAddress) -> bool {
    let SocketAddress {
        protocol,
        address,
        resolver_name,
        ipv4_compat: _, // supported, no rules
        network_namespace_filepath,
        port_specifier,
    } = socket;
    // `protocol`: TCP (0) and UDP (1) are supported. `address`: string.min_len = 1.
    // `port_specifier` is required; `port_value`: uint32.lte = 65535;
    // `named_port`, `resolver_name`, `network_namespace_filepath`: not supported.
    let port_is_valid = matches!(
        port_specifier,
        Some(socket_address::PortSpecifier::PortValue(port)) if *port <= 65535
    );
    (*protocol == socket_address::Protocol::Tcp as i32
        || *protocol == socket_address::Protocol::Udp as i32)
        && !address.is_empty()
        && resolver_name.is_empty()
        && network_namespace_filepath.is_empty()
        && port_is_valid
}

#[cfg(test)]
#[path = "eds_validate_tests.rs"]
mod tests;
