//! Envoy's HTTP routing: a `RouteConfiguration` compiled into an immutable
//! [`RouteTable`] that picks a virtual host by Host, then the first matching
//! route, and carries that route's action (forward to a cluster, redirect,
//! or answer directly) and header mutations.
//!
//! The connection manager calls [`RouteTable::find`] per request, then, for a
//! [`RouteAction::Forward`], [`ForwardAction::cluster_for`],
//! [`RouteTable::apply_request_headers`], the host rewrite
//! ([`ForwardAction::rewritten_host`]) and path rewrite
//! ([`ForwardAction::rewrite_path`]) — Envoy's order — and hands
//! [`ForwardAction::compute_hash`] to the load balancer.
//!
//! As in Envoy, the Host's port takes part in virtual host matching unless
//! the route configuration sets `ignore_port_in_host_matching`; the
//! connection manager's `strip_any_host_port` / `strip_matching_host_port`
//! (see [`strip_port`]) remove it from the request before routing. The
//! connection manager also sets `x-forwarded-proto` before routing, which
//! `require_tls` and redirects read.

mod domains;
mod forward;
mod hash_cookie;
mod hash_policy;
mod header_mutation;
mod redirect;
mod request;
mod rewrite;
mod route_index;
mod route_match;
mod string_match;
mod table;

pub use forward::{
    ClusterChoice, ClusterSpecifier, ClusterTarget, ForwardAction, HostRewrite,
    WeightedClusterEntry, WeightedClusters, DEFAULT_ROUTE_TIMEOUT,
};
pub use hash_policy::HashPolicy;
pub use header_mutation::{AppendAction, HeaderMutations};
pub use redirect::{DirectResponse, RedirectAction, DEFAULT_MAX_DIRECT_RESPONSE_BODY_BYTES};
pub use request::strip_port;
pub use string_match::RegexSubstitution;
pub use table::{Route, RouteAction, RouteMatch, RouteTable, VirtualHost};

#[cfg(test)]
mod tests;
