//! xDS v3: the client side of Envoy's discovery protocol.
//!
//! Sluice receives Listener, RouteConfiguration, Cluster and
//! ClusterLoadAssignment resources from a control plane over ADS (one gRPC
//! stream, state-of-the-world or incremental/delta), over a type's own
//! stream (an `api_config_source` for LDS/CDS, or for EDS/RDS in a cluster
//! or connection manager), or from files
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
//! - [`services`]: which gRPC service a stream opens on (ADS or per type).
//! - [`config`]: `dynamic_resources` in the bootstrap → [`StreamConfig`]s.
//! - [`source`]: the config source of an EDS/RDS subscription (ADS or a
//!   stream of its own); [`source_streams`] runs one stream per distinct
//!   source that clusters and listeners name.
//! - [`rate_limit`]: `rate_limit_settings`, a token bucket on requests.
//! - [`file_source`]: `path_config_source` files, polled for changes.
//! - [`stats`]: Envoy's subscription stat names.
//!
//! Where updates are applied: [`ResourceSink::apply`] runs on the xDS task,
//! on the daemon's main runtime, and the ACK or NACK for a response is sent
//! only after it returns. That is deliberate and the same as Envoy (which
//! applies on its main thread before acknowledging): an ACK must mean the
//! resources were accepted and are in force, and the per-resource NACK can
//! only name failures the apply found. A slow apply (a 10,000-endpoint EDS
//! response, see BENCHMARKS.md) therefore delays the next ACK and the main
//! runtime's other tasks (admin, the kernel map sync), but never a request:
//! request workers run on their own runtimes and only read snapshots that
//! the apply swaps in atomically (`ArcSwap`), so they never wait on it.

pub mod ads;
pub mod backoff;
pub mod config;
pub mod decode;
pub mod delta;
pub mod file_source;
pub mod nack;
pub mod rate_limit;
pub mod resource;
pub mod services;
pub mod sotw;
pub mod source;
pub mod source_streams;
pub mod stats;

pub use ads::run_xds_stream;
pub use config::{ApiType, StreamConfig};
pub use resource::{type_urls, Resource, ResourceSink, Subscription};
pub use services::DiscoveryService;
pub use source::SourceId;

#[cfg(test)]
mod test_sink;
