//! End-to-end tests of a compiled [`RouteTable`]: virtual host selection,
//! route order, cluster choice, rewrites, header precedence across levels,
//! hashing, and configuration errors with their exact paths.

pub(super) use super::*;
pub(super) use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValue, HeaderValueOption,
};
pub(super) use envoy_types::pb::envoy::config::route::v3::{
    route::Action,
    route_action::{
        hash_policy::{Header as HashHeader, PolicySpecifier},
        ClusterSpecifier as Spec, HashPolicy as HashPolicyConfig, HostRewriteSpecifier,
    },
    route_match::PathSpecifier,
    weighted_cluster::{ClusterWeight, RandomValueSpecifier},
    Route as RouteConfig, RouteAction as RouteActionConfig, RouteConfiguration,
    RouteMatch as RouteMatchConfig, VirtualHost as VirtualHostConfig, WeightedCluster,
};
pub(super) use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatchAndSubstitute, RegexMatcher,
};
pub(super) use envoy_types::pb::google::protobuf::{
    BoolValue, Duration as ProtoDuration, UInt32Value,
};
pub(super) use http::request::Parts;
pub(super) use http::HeaderMap;
pub(super) use std::time::Duration;

pub(super) use crate::stream_info::StreamInfo;

pub(super) fn req(uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut builder = http::Request::builder().uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

pub(super) fn at(host: &str, uri: &str) -> Parts {
    req(uri, &[("host", host)])
}

pub(super) fn forward(cluster: &str) -> RouteActionConfig {
    RouteActionConfig {
        cluster_specifier: Some(Spec::Cluster(cluster.into())),
        ..Default::default()
    }
}

pub(super) fn route(prefix: &str, action: RouteActionConfig) -> RouteConfig {
    RouteConfig {
        name: format!("route{prefix}"),
        r#match: Some(RouteMatchConfig {
            path_specifier: Some(PathSpecifier::Prefix(prefix.into())),
            ..Default::default()
        }),
        action: Some(Action::Route(action)),
        ..Default::default()
    }
}

pub(super) fn vhost(name: &str, domains: &[&str], routes: Vec<RouteConfig>) -> VirtualHostConfig {
    VirtualHostConfig {
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes,
        ..Default::default()
    }
}

pub(super) fn table(virtual_hosts: Vec<VirtualHostConfig>) -> RouteTable {
    RouteTable::compile(&RouteConfiguration {
        name: "rc".into(),
        virtual_hosts,
        ..Default::default()
    })
    .unwrap()
}

pub(super) fn forward_of<'a>(m: &RouteMatch<'a>) -> &'a ForwardAction {
    match &m.route.action {
        RouteAction::Forward(forward) => forward,
        other => panic!("not a forward action: {other:?}"),
    }
}

pub(super) fn cluster_at(t: &RouteTable, r: &Parts) -> Option<String> {
    let m = t.find(r)?;
    forward_of(&m).cluster_for(r, 0).name.map(str::to_string)
}

pub(super) fn weighted(clusters: &[(&str, u32)], total: Option<u32>) -> RouteActionConfig {
    #[allow(deprecated)]
    let w = WeightedCluster {
        clusters: clusters
            .iter()
            .map(|(name, weight)| ClusterWeight {
                name: name.to_string(),
                weight: Some(UInt32Value { value: *weight }),
                ..Default::default()
            })
            .collect(),
        total_weight: total.map(|value| UInt32Value { value }),
        ..Default::default()
    };
    RouteActionConfig {
        cluster_specifier: Some(Spec::WeightedClusters(w)),
        ..Default::default()
    }
}

mod actions;
mod headers_and_errors;
mod route_index;
mod selection;
