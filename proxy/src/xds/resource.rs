//! The interface between the xDS protocol and the proxy: [`ResourceSink`]
//! (implemented by the server), the decoded [`Resource`] it receives, the
//! [`Subscription`] it asks for, and the v3 type URLs Sluice speaks.

use std::collections::BTreeSet;

use envoy_types::pb::google::protobuf::Any;
use tokio::sync::watch;

use super::source::SourceId;

/// The resource type URLs of xDS v3, in the order Envoy subscribes to them
/// (clusters before listeners; endpoints and routes follow what those name).
pub mod type_urls {
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    /// The wrapper delta responses use (and SotW responses may use).
    pub const RESOURCE_WRAPPER: &str = "type.googleapis.com/envoy.service.discovery.v3.Resource";

    /// Every type Sluice subscribes to over ADS, in subscription order.
    pub const ALL: [&str; 4] = [CLUSTER, ENDPOINT, LISTENER, ROUTE];

    /// Types whose state-of-the-world responses carry the full set: a
    /// resource absent from a response is removed (LDS, CDS). For the others
    /// (EDS, RDS) absence means nothing; they are removed by name only.
    pub fn is_full_state(type_url: &str) -> bool {
        type_url == LISTENER || type_url == CLUSTER
    }

    /// A short name for logs: `Cluster`, `ClusterLoadAssignment`, ….
    pub fn short(type_url: &str) -> &str {
        type_url.rsplit(['.', '/']).next().unwrap_or(type_url)
    }
}

/// One resource as the control plane sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// The resource name (`Listener.name`, `ClusterLoadAssignment.cluster_name`, …).
    pub name: String,
    /// Its version: the per-resource version in delta, the response's
    /// `version_info` in state-of-the-world.
    pub version: String,
    /// The resource itself; `body.type_url` is the response's type URL.
    pub body: Any,
}

/// What the client subscribes to for one type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// Every resource of the type the server has for this node (LDS, CDS).
    Wildcard,
    /// Exactly these names (EDS: the EDS clusters; RDS: the route configs
    /// HCMs name). Empty means "nothing wanted".
    Names(BTreeSet<String>),
}

impl Subscription {
    /// `Names` from anything iterable of strings.
    pub fn names<I, S>(names: I) -> Subscription
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Subscription::Names(names.into_iter().map(Into::into).collect())
    }

    /// True when nothing is wanted (no request needs to be sent for the type).
    pub fn is_empty(&self) -> bool {
        matches!(self, Subscription::Names(names) if names.is_empty())
    }

    /// The named resources, empty for a wildcard.
    pub fn name_set(&self) -> BTreeSet<String> {
        match self {
            Subscription::Wildcard => BTreeSet::new(),
            Subscription::Names(names) => names.clone(),
        }
    }

    /// Whether a resource of this name is wanted.
    pub fn wants(&self, name: &str) -> bool {
        match self {
            Subscription::Wildcard => true,
            Subscription::Names(names) => names.contains(name),
        }
    }
}

/// Where xDS resources go: the proxy's dynamic configuration.
///
/// Called from the xDS task, never from the request path; `apply` should do
/// its validation and compilation and swap the result in atomically.
pub trait ResourceSink: Send + Sync + 'static {
    /// Applies a batch for one type. Returns per-resource errors
    /// `(name, message)`; an empty Vec means all were accepted. A rejected
    /// resource keeps its previous version (if any); the others apply.
    /// `state_of_the_world` says the batch came from a SotW response (for
    /// LDS/CDS `removed` then lists what the response left out).
    fn apply(
        &self,
        type_url: &str,
        updated: Vec<Resource>,
        removed: Vec<String>,
        state_of_the_world: bool,
    ) -> Vec<(String, String)>;

    /// The names the client must subscribe to for a type (EDS clusters, RDS
    /// route configs) over ADS, recomputed after each apply.
    fn subscriptions(&self, type_url: &str) -> Subscription;

    /// The names to subscribe to for a type on the stream (or file) of
    /// `source`: ADS, and LDS/CDS anywhere, as
    /// [`ResourceSink::subscriptions`]; a source of its own carries only
    /// the EDS/RDS names that name it.
    fn source_subscriptions(&self, type_url: &str, source: &SourceId) -> Subscription {
        if *source == SourceId::Ads || type_urls::is_full_state(type_url) {
            self.subscriptions(type_url)
        } else {
            Subscription::Names(BTreeSet::new())
        }
    }

    /// The EDS/RDS sources of their own (`api_config_source`,
    /// `path_config_source`) that clusters and listeners in force (or
    /// warming) use, with the type each carries: a stream or a file watch
    /// runs for each.
    fn api_sources(&self) -> BTreeSet<(&'static str, SourceId)> {
        BTreeSet::new()
    }

    /// Ticks whenever subscriptions may have changed because of something
    /// applied on another stream (a CDS update names new EDS clusters, an
    /// LDS update new route configs): streams then re-subscribe.
    fn subscription_changes(&self) -> Option<watch::Receiver<u64>> {
        None
    }

    /// The stat prefix for one resource's own subscription stats, when Envoy
    /// keeps them per resource: `cluster.<name>.` for EDS (the default) and
    /// `http.<hcm stat_prefix>.rds.<name>.` for RDS, which only the sink can
    /// know; `None` records no per-resource stats.
    fn resource_stats_prefix(&self, type_url: &str, name: &str) -> Option<String> {
        (type_url == type_urls::ENDPOINT).then(|| format!("cluster.{name}."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listeners_and_clusters_are_full_state() {
        assert!(type_urls::is_full_state(type_urls::LISTENER));
        assert!(type_urls::is_full_state(type_urls::CLUSTER));
        assert!(!type_urls::is_full_state(type_urls::ENDPOINT));
        assert!(!type_urls::is_full_state(type_urls::ROUTE));
        assert_eq!(
            type_urls::short(type_urls::ENDPOINT),
            "ClusterLoadAssignment"
        );
    }

    #[test]
    fn subscription_queries() {
        let named = Subscription::names(["a", "b"]);
        assert!(named.wants("a") && !named.wants("c"));
        assert!(Subscription::Wildcard.wants("anything"));
        assert!(Subscription::names(Vec::<String>::new()).is_empty());
        assert!(!Subscription::Wildcard.is_empty());
    }
}
