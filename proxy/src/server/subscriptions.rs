//! Which EDS and RDS names the xDS streams subscribe to, per config source:
//! the EDS clusters in force and the route configurations connection
//! managers use, each on the stream of the source it names (ADS, or an
//! `api_config_source` of its own, or a `path_config_source` file); and
//! which sources need a stream or a file watch.
//! Also the checks that an `ads: {}` source has an ADS stream to come from,
//! and how long a listener warms for its routes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::ConfigSource;
use envoy_types::pb::envoy::config::listener::v3::Listener;

use crate::config::context::CompileContext;
use crate::config::{ConfigError, ConfigErrors};
use crate::upstream::Discovery;
use crate::xds::source::ADS_NOT_CONFIGURED;
use crate::xds::{type_urls, SourceId, Subscription};

/// The names to subscribe to for `type_url` on the stream of `source`
/// (LDS/CDS: everything).
pub fn subscriptions(context: &CompileContext, type_url: &str, source: &SourceId) -> Subscription {
    match type_url {
        type_urls::ENDPOINT => Subscription::names(
            context
                .clusters
                .snapshot()
                .iter()
                .filter(|c| c.discovery() == Discovery::Eds && c.eds_source() == Some(source))
                .filter_map(|c| c.eds_service_name().map(str::to_string)),
        ),
        type_urls::ROUTE => Subscription::names(context.routes.names_from(source)),
        _ => Subscription::Wildcard,
    }
}

/// The EDS/RDS sources of their own (streams and files) in use, with the
/// type each carries.
pub fn api_sources(context: &CompileContext) -> BTreeSet<(&'static str, SourceId)> {
    let clusters = context.clusters.snapshot();
    let eds = clusters
        .iter()
        .filter_map(|c| c.eds_source().cloned())
        .map(|source| (type_urls::ENDPOINT, source));
    let rds = context
        .routes
        .sources()
        .into_iter()
        .map(|source| (type_urls::ROUTE, source));
    eds.chain(rds)
        .filter(|(_, source)| *source != SourceId::Ads)
        .collect()
}

/// Every EDS/RDS name wanted, with its type and source: when this changes,
/// streams re-subscribe (and streams of their own start or stop).
pub fn wanted(context: &CompileContext) -> BTreeSet<(&'static str, SourceId, String)> {
    let clusters = context.clusters.snapshot();
    let eds = clusters.iter().filter_map(|c| {
        Some((
            type_urls::ENDPOINT,
            c.eds_source()?.clone(),
            c.eds_service_name()?.to_string(),
        ))
    });
    let rds = context
        .routes
        .live_names()
        .into_iter()
        .map(|(name, source)| (type_urls::ROUTE, source, name));
    eds.chain(rds).collect()
}

/// Whether any EDS cluster or RDS route configuration in force uses a
/// source of its own (then the daemon runs the dynamic side even without
/// `dynamic_resources`).
pub fn uses_api_sources(context: &CompileContext) -> bool {
    !api_sources(context).is_empty()
}

fn is_ads(source: Option<&ConfigSource>) -> bool {
    matches!(
        source.and_then(|s| s.config_source_specifier.as_ref()),
        Some(ConfigSourceSpecifier::Ads(_))
    )
}

/// How long a listener waits for its RDS routes before it starts anyway,
/// when the `rds.config_source` does not say (Envoy's default
/// `initial_fetch_timeout`).
pub const WARMING_TIMEOUT: Duration = Duration::from_secs(15);

/// The warming limit of each RDS route configuration a listener's
/// connection managers name: `rds.config_source.initial_fetch_timeout`
/// (15 s when unset, as Envoy; `None` for `0s`, which waits without limit).
/// Negative durations never get here: validation rejects them.
pub fn rds_fetch_timeouts(listener: &Listener) -> BTreeMap<String, Option<Duration>> {
    let mut limits = BTreeMap::new();
    for (name, source) in connection_manager_rds(listener) {
        let limit = source.as_ref().map_or(Some(WARMING_TIMEOUT), |source| {
            crate::config::proto::timeout_or(&source.initial_fetch_timeout, Some(WARMING_TIMEOUT))
        });
        limits.entry(name).or_insert(limit);
    }
    limits
}

/// Whether the bootstrap runs an ADS stream.
pub fn ads_configured(bootstrap: &Bootstrap) -> bool {
    bootstrap
        .dynamic_resources
        .as_ref()
        .is_some_and(|d| d.ads_config.is_some())
}

/// A cluster from CDS whose EDS source cannot deliver: `ads: {}` without
/// an ADS stream, or an `api_config_source` naming no usable static
/// cluster. The error to NACK it with (as Envoy rejects such a cluster).
pub fn cluster_source_error(bootstrap: &Bootstrap, cluster: &Cluster) -> Option<String> {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{
        ClusterDiscoveryType, DiscoveryType,
    };
    let eds = ClusterDiscoveryType::Type(DiscoveryType::Eds as i32);
    if cluster.cluster_discovery_type != Some(eds) {
        return None;
    }
    let source = cluster
        .eds_cluster_config
        .as_ref()
        .and_then(|eds| eds.eds_config.as_ref());
    let mut errors = ConfigErrors::default();
    let path = "eds_cluster_config.eds_config";
    check_source(bootstrap, source, path, type_urls::ENDPOINT, &mut errors);
    (!errors.0.is_empty()).then(|| errors.to_string())
}

/// Likewise a listener from LDS whose connection managers' RDS sources
/// cannot deliver.
pub fn listener_source_error(bootstrap: &Bootstrap, listener: &Listener) -> Option<String> {
    let mut errors = ConfigErrors::default();
    for (name, source) in connection_manager_rds(listener) {
        let path = format!("rds.config_source (routes '{name}')");
        check_source(
            bootstrap,
            source.as_ref(),
            &path,
            type_urls::ROUTE,
            &mut errors,
        );
    }
    (!errors.0.is_empty()).then(|| errors.to_string())
}

/// `(route_config_name, config_source)` of every connection manager using RDS.
fn connection_manager_rds(listener: &Listener) -> Vec<(String, Option<ConfigSource>)> {
    rds_users(listener)
        .into_iter()
        .map(|(name, source, _)| (name, source))
        .collect()
}

/// The per-route stats prefix (`http.<stat_prefix>.rds.<name>.`) of the
/// first connection manager in `listener` that routes with `name`.
pub fn rds_stats_prefix(listener: &Listener, name: &str) -> Option<String> {
    rds_users(listener)
        .into_iter()
        .find(|(routes, _, _)| routes == name)
        .map(|(_, _, stat_prefix)| format!("http.{stat_prefix}.rds.{name}."))
}

/// `(route_config_name, config_source, stat_prefix)` of every connection
/// manager using RDS.
fn rds_users(listener: &Listener) -> Vec<(String, Option<ConfigSource>, String)> {
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        http_connection_manager::RouteSpecifier, HttpConnectionManager,
    };
    let chains = listener
        .filter_chains
        .iter()
        .chain(listener.default_filter_chain.as_ref());
    let mut found = Vec::new();
    for filter in chains.flat_map(|chain| &chain.filters) {
        let Some(ConfigType::TypedConfig(any)) = &filter.config_type else {
            continue;
        };
        let Ok(hcm) = crate::config::proto::unpack::<HttpConnectionManager>(any) else {
            continue;
        };
        if let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier {
            found.push((rds.route_config_name, rds.config_source, hcm.stat_prefix));
        }
    }
    found
}

/// Bootstrap checks: without `dynamic_resources.ads_config`, no static
/// cluster or listener may use `ads: {}` for EDS/RDS (Envoy: "ADS must be
/// configured to support an ADS config source"); and every source of its
/// own must name a static cluster with an endpoint.
pub fn check_bootstrap(bootstrap: &Bootstrap) -> ConfigErrors {
    let mut errors = ConfigErrors::default();
    let Some(resources) = &bootstrap.static_resources else {
        return errors;
    };
    for (i, cluster) in resources.clusters.iter().enumerate() {
        let path = format!("static_resources.clusters[{i}].eds_cluster_config.eds_config");
        let source = cluster
            .eds_cluster_config
            .as_ref()
            .and_then(|eds| eds.eds_config.as_ref());
        check_source(bootstrap, source, &path, type_urls::ENDPOINT, &mut errors);
    }
    for (i, listener) in resources.listeners.iter().enumerate() {
        for (name, source) in connection_manager_rds(listener) {
            let path = format!(
                "static_resources.listeners[{i}] (listener '{}', routes '{name}') rds.config_source",
                listener.name
            );
            check_source(
                bootstrap,
                source.as_ref(),
                &path,
                type_urls::ROUTE,
                &mut errors,
            );
        }
    }
    errors
}

fn check_source(
    bootstrap: &Bootstrap,
    source: Option<&ConfigSource>,
    path: &str,
    type_url: &'static str,
    errors: &mut ConfigErrors,
) {
    if is_ads(source) && !ads_configured(bootstrap) {
        errors.push(ConfigError::new(format!("{path}.ads"), ADS_NOT_CONFIGURED));
        return;
    }
    // Shape errors are reported where the cluster or listener compiles;
    // here only whether the named gRPC cluster can be reached.
    let Ok(source) = crate::xds::source::subscription_source(source, path) else {
        return;
    };
    let api_path = format!("{path}.api_config_source");
    if let Some(Err(error)) =
        crate::xds::config::api_stream_config(bootstrap, &source, type_url, &api_path)
    {
        errors.push(error);
    }
}

#[cfg(test)]
#[path = "subscriptions_tests.rs"]
mod tests;
