//! Applies a cluster's `lb_config` oneof (`ring_hash_lb_config`,
//! `maglev_lb_config`, `least_request_lb_config`, …) to its policy, with
//! Envoy's bounds. Paths are relative to the `Cluster` message.

use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ring_hash_lb_config::HashFunction, LbConfig,
};

use super::maglev::{is_prime, MAX_TABLE_SIZE};
use super::ring_hash::DEFAULT_MAXIMUM_RING_SIZE;
use super::LbPolicy;
use crate::config::{ConfigError, ConfigErrors};

fn mismatch(field: &str, policy: &str, errors: &mut ConfigErrors) {
    errors.push(ConfigError::new(
        field,
        format!("{field} requires lb_policy {policy}"),
    ));
}

pub(crate) fn apply(policy: LbPolicy, config: &LbConfig, errors: &mut ConfigErrors) -> LbPolicy {
    match (policy, config) {
        (
            LbPolicy::RingHash {
                mut minimum_ring_size,
                mut maximum_ring_size,
            },
            LbConfig::RingHashLbConfig(ring),
        ) => {
            let path = "ring_hash_lb_config";
            if ring.hash_function != HashFunction::XxHash as i32 {
                errors.push(ConfigError::new(
                    format!("{path}.hash_function"),
                    "only XX_HASH is supported",
                ));
            }
            if let Some(min) = ring.minimum_ring_size {
                minimum_ring_size = min.value;
            }
            if let Some(max) = ring.maximum_ring_size {
                maximum_ring_size = max.value;
            }
            for (field, value) in [
                ("minimum_ring_size", minimum_ring_size),
                ("maximum_ring_size", maximum_ring_size),
            ] {
                if value > DEFAULT_MAXIMUM_RING_SIZE {
                    errors.push(ConfigError::new(
                        format!("{path}.{field}"),
                        format!("{field} must be at most {DEFAULT_MAXIMUM_RING_SIZE}"),
                    ));
                }
            }
            if minimum_ring_size > maximum_ring_size {
                errors.push(ConfigError::new(
                    format!("{path}.minimum_ring_size"),
                    format!(
                        "ring hash: minimum_ring_size ({minimum_ring_size}) > \
                         maximum_ring_size ({maximum_ring_size})"
                    ),
                ));
            }
            LbPolicy::RingHash {
                minimum_ring_size,
                maximum_ring_size,
            }
        }
        (LbPolicy::Maglev { mut table_size }, LbConfig::MaglevLbConfig(maglev)) => {
            if let Some(size) = maglev.table_size {
                table_size = size.value;
                let path = "maglev_lb_config.table_size";
                if table_size > MAX_TABLE_SIZE {
                    errors.push(ConfigError::new(
                        path,
                        format!("table_size must be at most {MAX_TABLE_SIZE}"),
                    ));
                } else if !is_prime(table_size) {
                    errors.push(ConfigError::new(
                        path,
                        format!("The table size of maglev must be prime number, got {table_size}"),
                    ));
                }
            }
            LbPolicy::Maglev { table_size }
        }
        (
            LbPolicy::LeastRequest {
                mut choice_count,
                mut active_request_bias,
            },
            LbConfig::LeastRequestLbConfig(least),
        ) => {
            let path = "least_request_lb_config";
            if let Some(count) = least.choice_count {
                choice_count = count.value;
                if choice_count < 2 {
                    errors.push(ConfigError::new(
                        format!("{path}.choice_count"),
                        "choice_count must be at least 2",
                    ));
                }
            }
            if let Some(bias) = &least.active_request_bias {
                active_request_bias = bias.default_value;
                if !bias.runtime_key.is_empty() {
                    errors.push(ConfigError::new(
                        format!("{path}.active_request_bias.runtime_key"),
                        "runtime overrides are not supported by Sluice",
                    ));
                }
                if !active_request_bias.is_finite() || active_request_bias < 0.0 {
                    errors.push(ConfigError::new(
                        format!("{path}.active_request_bias"),
                        format!("Invalid active_request_bias value {active_request_bias}"),
                    ));
                }
            }
            if least.slow_start_config.is_some() {
                errors.push(ConfigError::new(
                    format!("{path}.slow_start_config"),
                    "field 'slow_start_config' is not supported by Sluice",
                ));
            }
            LbPolicy::LeastRequest {
                choice_count,
                active_request_bias,
            }
        }
        (LbPolicy::RoundRobin, LbConfig::RoundRobinLbConfig(rr)) => {
            if rr.slow_start_config.is_some() {
                errors.push(ConfigError::new(
                    "round_robin_lb_config.slow_start_config",
                    "field 'slow_start_config' is not supported by Sluice",
                ));
            }
            LbPolicy::RoundRobin
        }
        (policy, LbConfig::RingHashLbConfig(_)) => {
            mismatch("ring_hash_lb_config", "RING_HASH", errors);
            policy
        }
        (policy, LbConfig::MaglevLbConfig(_)) => {
            mismatch("maglev_lb_config", "MAGLEV", errors);
            policy
        }
        (policy, LbConfig::LeastRequestLbConfig(_)) => {
            mismatch("least_request_lb_config", "LEAST_REQUEST", errors);
            policy
        }
        (policy, LbConfig::RoundRobinLbConfig(_)) => {
            mismatch("round_robin_lb_config", "ROUND_ROBIN", errors);
            policy
        }
        (policy, LbConfig::OriginalDstLbConfig(_)) => {
            errors.push(ConfigError::new(
                "original_dst_lb_config",
                "field 'original_dst_lb_config' is not supported by Sluice",
            ));
            policy
        }
    }
}
