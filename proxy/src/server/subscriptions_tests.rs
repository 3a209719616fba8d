//! Unit tests of the per-source EDS/RDS subscriptions and the bootstrap
//! checks of `ads: {}` sources.

use super::*;
use crate::config::parse_message;
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;

const API: &str = "{api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}, resource_api_version: V3}";

fn hcm_listener(name: &str, routes: &str, source: &str) -> String {
    format!(
        r#"
  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 1}}}}
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          rds: {{route_config_name: {routes}, config_source: {source}}}
          http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
"#
    )
}

fn bootstrap(yaml: &str) -> Bootstrap {
    parse_message::<Bootstrap>(yaml).unwrap()
}

const XDS_CLUSTER: &str = "  - name: xds\n    type: STATIC\n    load_assignment: {cluster_name: xds, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18000}}}}]}]}\n";

#[test]
fn ads_sources_without_ads_config_are_rejected_naming_the_field() {
    let yaml = format!(
        "static_resources:\n  clusters:\n  - name: e\n    type: EDS\n    eds_cluster_config: {{eds_config: {{ads: {{}}, resource_api_version: V3}}}}\n  listeners:{}",
        hcm_listener("l", "r", "{ads: {}, resource_api_version: V3}")
    );
    let errors = check_bootstrap(&bootstrap(&yaml)).to_string();
    assert!(
        errors.contains("static_resources.clusters[0].eds_cluster_config.eds_config.ads: ADS must be configured"),
        "{errors}"
    );
    assert!(
        errors.contains("static_resources.listeners[0] (listener 'l', routes 'r') rds.config_source.ads: ADS must be configured"),
        "{errors}"
    );
    let with_ads = format!("dynamic_resources: {{ads_config: {{api_type: GRPC, transport_api_version: V3, grpc_services: [{{envoy_grpc: {{cluster_name: xds}}}}]}}}}\n{yaml}");
    assert!(check_bootstrap(&bootstrap(&with_ads)).0.is_empty());
}

#[test]
fn api_sources_must_name_a_static_cluster() {
    let yaml = format!(
        "static_resources:\n  clusters:\n  - name: e\n    type: EDS\n    eds_cluster_config: {{eds_config: {API}}}\n  listeners:{}",
        hcm_listener("l", "r", &API.replace("xds", "nope"))
    );
    let errors = check_bootstrap(&bootstrap(&yaml)).to_string();
    assert!(
        errors.contains("static_resources.clusters[0].eds_cluster_config.eds_config.api_config_source.grpc_services[0].envoy_grpc.cluster_name: 'xds' is not a static cluster"),
        "{errors}"
    );
    assert!(errors.contains("routes 'r') rds.config_source.api_config_source.grpc_services[0].envoy_grpc.cluster_name: 'nope' is not a static cluster"), "{errors}");
    let good = yaml
        .replace("clusters:\n", &format!("clusters:\n{XDS_CLUSTER}"))
        .replace("nope", "xds");
    assert!(
        check_bootstrap(&bootstrap(&good)).0.is_empty(),
        "{}",
        check_bootstrap(&bootstrap(&good))
    );
}

#[test]
fn dynamic_resources_whose_sources_cannot_deliver_are_named() {
    let no_ads = bootstrap(&format!("static_resources:\n  clusters:\n{XDS_CLUSTER}"));
    let cluster = |source: &str| {
        parse_message::<Cluster>(&format!(
            "name: e\ntype: EDS\neds_cluster_config: {{eds_config: {source}}}"
        ))
        .unwrap()
    };
    let ads = cluster("{ads: {}, resource_api_version: V3}");
    assert!(cluster_source_error(&no_ads, &ads)
        .unwrap()
        .starts_with("eds_cluster_config.eds_config.ads: ADS must be configured"));
    assert_eq!(cluster_source_error(&no_ads, &cluster(API)), None);
    assert!(cluster_source_error(&no_ads, &cluster(&API.replace("xds", "nope")))
        .unwrap()
        .contains("eds_cluster_config.eds_config.api_config_source.grpc_services[0].envoy_grpc.cluster_name: 'nope' is not a static cluster"));
    let yaml = format!(
        "listeners:{}",
        hcm_listener("l", "r", "{ads: {}, resource_api_version: V3}")
    );
    let listener = bootstrap(&format!("static_resources:\n  {}", yaml.trim_start()))
        .static_resources
        .unwrap()
        .listeners
        .remove(0);
    assert!(listener_source_error(&no_ads, &listener)
        .unwrap()
        .starts_with("rds.config_source (routes 'r').ads: ADS must be configured"));
}

#[test]
fn subscriptions_follow_each_source() {
    let context = CompileContext::with_backend_cluster();
    let api = crate::xds::source::subscription_source(
        Some(&parse_message::<ConfigSource>(API).unwrap()),
        "x",
    )
    .unwrap();
    for (name, source) in [
        ("by-ads", "{ads: {}, resource_api_version: V3}"),
        ("own", API),
    ] {
        let cluster = parse_message::<Cluster>(&format!(
            "name: {name}\ntype: EDS\neds_cluster_config: {{eds_config: {source}}}"
        ))
        .unwrap();
        context.clusters.add_or_update(&cluster).unwrap();
    }
    let _ads_routes = context.routes.provider("r-ads");
    let _own_routes = context.routes.provider_from("r-own", api.clone());
    assert_eq!(
        subscriptions(&context, type_urls::ENDPOINT, &SourceId::Ads),
        Subscription::names(["by-ads"])
    );
    assert_eq!(
        subscriptions(&context, type_urls::ENDPOINT, &api),
        Subscription::names(["own"])
    );
    assert_eq!(
        subscriptions(&context, type_urls::ROUTE, &api),
        Subscription::names(["r-own"])
    );
    assert_eq!(
        api_sources(&context),
        BTreeSet::from([
            (type_urls::ENDPOINT, api.clone()),
            (type_urls::ROUTE, api.clone())
        ])
    );
    drop(_own_routes);
    context.clusters.remove("own");
    assert!(
        api_sources(&context).is_empty(),
        "unused sources need no stream"
    );
}
