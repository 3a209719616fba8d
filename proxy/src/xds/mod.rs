//! xDS v3: the client side of Envoy's discovery protocol.
//!
//! Sluice receives Listener, RouteConfiguration, Cluster and
//! ClusterLoadAssignment resources from a control plane over ADS (one gRPC
//! stream, state-of-the-world or incremental/delta) or from files
//! (`path_config_source`). This module owns the protocol: subscriptions,
//! version/nonce bookkeeping, ACK/NACK with `error_detail`, reconnecting with
//! backoff and resuming. What a resource *means* is not its business: it hands
//! decoded resources to a [`ResourceSink`] (implemented by the server, which
//! validates and compiles them with the same code as the bootstrap) and
//! reports the per-resource errors the sink returns back to the control plane.
//!
//! - [`resource`]: the sink trait, resource and subscription types, type URLs.
//! - [`sotw`] / [`delta`]: the per-type protocol state machines (no I/O).
//! - [`ads`]: the gRPC transport: connect, stream, reconnect, resume.
//! - [`config`]: `dynamic_resources` in the bootstrap → [`AdsConfig`].
//! - [`file_source`]: `path_config_source` files, polled for changes.
//! - [`stats`]: Envoy's subscription stat names.

pub mod ads;
pub mod backoff;
pub mod config;
pub mod decode;
pub mod delta;
pub mod file_source;
pub mod nack;
pub mod resource;
pub mod sotw;
pub mod stats;

pub use ads::run_ads;
pub use config::{AdsConfig, ApiType};
pub use resource::{type_urls, Resource, ResourceSink, Subscription};

#[cfg(test)]
mod test_sink;
