//! `dynamic_resources` → ADS and file sources.

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;

use super::*;
use crate::config::parse_message;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;

const STATIC_XDS_CLUSTER: &str = r#"
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 2s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
    load_assignment:
      cluster_name: xds
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: { address: 127.0.0.1, port_value: 18000 }
"#;

/// Parsed only: the cases below include what validation would reject first.
fn bootstrap(dynamic: &str) -> Bootstrap {
    parse_message::<Bootstrap>(&format!("{STATIC_XDS_CLUSTER}{dynamic}")).unwrap()
}

/// Parsed and validated as `--mode validate` does (PGV + supported fields).
fn validated_bootstrap(dynamic: &str) -> Bootstrap {
    crate::config::load_bootstrap(None, Some(&format!("{STATIC_XDS_CLUSTER}{dynamic}")))
        .unwrap_or_else(|errors| panic!("{errors}"))
}

#[test]
fn ads_from_a_static_cluster() {
    let sources = dynamic_sources(&validated_bootstrap(
        r#"
dynamic_resources:
  ads_config:
    api_type: DELTA_GRPC
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services:
    - envoy_grpc: { cluster_name: xds }
  cds_config: { ads: {}, resource_api_version: V3 }
  lds_config: { ads: {}, resource_api_version: V3 }
"#,
    ))
    .unwrap();
    let ads = sources.ads.unwrap();
    assert_eq!(ads.api_type, ApiType::DeltaGrpc);
    assert_eq!(ads.uri, "http://127.0.0.1:18000");
    assert!(ads.set_node_on_first_message_only);
    assert_eq!(ads.connect_timeout, Duration::from_secs(2));
    assert_eq!(ads.types, type_urls::ALL);
    assert!(sources.files.is_empty());
}

#[test]
fn file_sources_and_cds_only_ads() {
    let sources = dynamic_sources(&validated_bootstrap(
        r#"
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services:
    - envoy_grpc: { cluster_name: xds }
  cds_config: { ads: {}, resource_api_version: V3 }
  lds_config:
    resource_api_version: V3
    path_config_source: { path: /etc/sluice/lds.yaml }
"#,
    ))
    .unwrap();
    let ads = sources.ads.unwrap();
    assert_eq!(ads.api_type, ApiType::Grpc);
    assert_eq!(
        ads.types,
        [type_urls::CLUSTER, type_urls::ENDPOINT, type_urls::ROUTE]
    );
    assert_eq!(
        sources.files,
        [FileSource {
            type_url: type_urls::LISTENER,
            path: "/etc/sluice/lds.yaml".into()
        }]
    );
}

#[test]
fn listeners_and_clusters_on_streams_of_their_own() {
    let sources = dynamic_sources(&validated_bootstrap(
        r#"
dynamic_resources:
  cds_config:
    resource_api_version: V3
    api_config_source:
      api_type: GRPC
      transport_api_version: V3
      grpc_services: [{envoy_grpc: {cluster_name: xds}}]
  lds_config:
    resource_api_version: V3
    api_config_source:
      api_type: DELTA_GRPC
      transport_api_version: V3
      set_node_on_first_message_only: true
      grpc_services: [{envoy_grpc: {cluster_name: xds}}]
"#,
    ))
    .unwrap();
    assert!(sources.ads.is_none() && sources.files.is_empty());
    let streams: Vec<_> = sources
        .streams
        .iter()
        .map(|s| (s.service, s.api_type, s.types.clone(), s.uri.as_str()))
        .collect();
    assert_eq!(
        streams,
        [
            (
                DiscoveryService::Clusters,
                ApiType::Grpc,
                vec![type_urls::CLUSTER],
                "http://127.0.0.1:18000"
            ),
            (
                DiscoveryService::Listeners,
                ApiType::DeltaGrpc,
                vec![type_urls::LISTENER],
                "http://127.0.0.1:18000"
            ),
        ]
    );
    assert!(sources.streams[1].set_node_on_first_message_only);
    assert!(sources.delivers(type_urls::CLUSTER) && sources.delivers(type_urls::LISTENER));
    assert!(!sources.delivers(type_urls::ENDPOINT));
}

#[test]
fn own_cds_stream_beside_ads_for_the_rest() {
    let sources = dynamic_sources(&validated_bootstrap(
        r#"
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds}}]
  cds_config:
    resource_api_version: V3
    api_config_source:
      api_type: GRPC
      transport_api_version: V3
      grpc_services: [{envoy_grpc: {cluster_name: xds}}]
  lds_config: { ads: {}, resource_api_version: V3 }
"#,
    ))
    .unwrap();
    let ads = sources.ads.as_ref().unwrap();
    assert_eq!(ads.service, DiscoveryService::Aggregated);
    assert_eq!(
        ads.types,
        [type_urls::ENDPOINT, type_urls::LISTENER, type_urls::ROUTE]
    );
    assert_eq!(sources.streams.len(), 1);
    assert_eq!(sources.grpc_streams().count(), 2);
}

#[test]
fn bad_dynamic_resources_name_the_field() {
    let cases = [
        (
            "dynamic_resources:\n  ads_config:\n    api_type: GRPC\n    transport_api_version: V3\n    grpc_services:\n    - envoy_grpc: { cluster_name: nope }\n",
            "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name: 'nope' is not a static cluster",
        ),
        (
            "dynamic_resources:\n  ads_config:\n    api_type: REST\n    transport_api_version: V3\n",
            "dynamic_resources.ads_config.api_type: ADS needs GRPC or DELTA_GRPC",
        ),
        (
            "dynamic_resources:\n  ads_config:\n    api_type: GRPC\n    grpc_services:\n    - envoy_grpc: { cluster_name: xds }\n",
            "dynamic_resources.ads_config.transport_api_version: only V3 is supported",
        ),
        (
            "dynamic_resources:\n  lds_config: { ads: {}, resource_api_version: V3 }\n",
            "dynamic_resources.lds_config.ads: ADS must be configured to support an ADS config source (dynamic_resources.ads_config is missing)",
        ),
        (
            "dynamic_resources:\n  cds_config:\n    resource_api_version: V3\n    api_config_source: { api_type: GRPC, transport_api_version: V3 }\n",
            "dynamic_resources.cds_config.api_config_source.grpc_services: CDS needs one gRPC service (envoy_grpc: {cluster_name: ...})",
        ),
        (
            "dynamic_resources:\n  lds_config:\n    resource_api_version: V3\n    api_config_source: { api_type: REST, transport_api_version: V3 }\n",
            "dynamic_resources.lds_config.api_config_source.api_type: LDS needs GRPC or DELTA_GRPC",
        ),
        (
            "dynamic_resources:\n  lds_config:\n    resource_api_version: V3\n    api_config_source: { api_type: DELTA_GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: nope}}] }\n",
            "dynamic_resources.lds_config.api_config_source.grpc_services[0].envoy_grpc.cluster_name: 'nope' is not a static cluster",
        ),
        (
            "dynamic_resources:\n  cds_config: { ads: {} }\n",
            "dynamic_resources.cds_config.resource_api_version: only V3 is supported",
        ),
    ];
    for (yaml, expected) in cases {
        let errors = dynamic_sources(&bootstrap(yaml)).unwrap_err();
        assert_eq!(errors.to_string(), expected, "for {yaml}");
    }
}

#[test]
fn no_dynamic_resources_means_nothing_to_run() {
    let sources = dynamic_sources(&bootstrap("")).unwrap();
    assert!(sources.is_empty());
}

#[test]
fn an_eds_cluster_with_its_own_stream_compiles_with_its_source() {
    let cluster = parse_message::<Cluster>(
        "name: web\ntype: EDS\neds_cluster_config: {eds_config: {resource_api_version: V3, api_config_source: {api_type: DELTA_GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}}}",
    )
    .unwrap();
    let manager =
        crate::upstream::ClusterManager::compile(&[], &crate::stats::Store::new()).unwrap();
    manager.add_or_update(&cluster).unwrap();
    let set = manager.snapshot();
    let web = set.iter().find(|c| c.name() == "web").unwrap();
    let source = web.eds_source().unwrap().clone();
    assert_eq!(source.describe(), "DELTA_GRPC via cluster 'xds'");
    let stream = api_stream_config(&bootstrap(""), &source, type_urls::ENDPOINT, "p")
        .unwrap()
        .unwrap();
    assert_eq!(stream.service, DiscoveryService::Endpoints);
    assert_eq!(stream.api_type, ApiType::DeltaGrpc);
    assert_eq!(stream.types, [type_urls::ENDPOINT]);
    assert_eq!(stream.uri, "http://127.0.0.1:18000");
    assert_eq!(stream.source, source);
    assert!(api_stream_config(&bootstrap(""), &SourceId::Ads, type_urls::ENDPOINT, "p").is_none());
}

#[test]
fn an_eds_cluster_with_a_rest_source_is_rejected() {
    let cluster = parse_message::<Cluster>(
        "name: web\ntype: EDS\neds_cluster_config: {eds_config: {api_config_source: {api_type: REST}}}",
    )
    .unwrap();
    let errors = crate::upstream::ClusterManager::compile(&[], &crate::stats::Store::new())
        .unwrap()
        .add_or_update(&cluster)
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("eds_cluster_config.eds_config.api_config_source.api_type: GRPC or DELTA_GRPC is required"),
        "{errors}"
    );
}

#[test]
fn rate_limit_settings_are_read_with_envoys_defaults() {
    let sources = dynamic_sources(&validated_bootstrap(
        "dynamic_resources:\n  ads_config: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds}}], rate_limit_settings: {}}\n  cds_config:\n    resource_api_version: V3\n    api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds}}], rate_limit_settings: {max_tokens: 5, fill_rate: 2.5}}\n",
    ))
    .unwrap();
    let limit = |max_tokens, fill_rate| {
        Some(RateLimit {
            max_tokens,
            fill_rate,
        })
    };
    assert_eq!(sources.ads.unwrap().rate_limit, limit(100, 10.0));
    assert_eq!(sources.streams[0].rate_limit, limit(5, 2.5));
    let errors = dynamic_sources(&bootstrap(
        "dynamic_resources:\n  ads_config: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds}}], rate_limit_settings: {fill_rate: 0}}\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        errors.starts_with(
            "dynamic_resources.ads_config.rate_limit_settings.fill_rate: must be a positive number"
        ),
        "{errors}"
    );
}

#[test]
fn ads_without_ads_config_is_rejected_naming_the_field() {
    let errors = dynamic_sources(&bootstrap(
        "dynamic_resources:\n  cds_config: {ads: {}, resource_api_version: V3}\n  lds_config: {ads: {}, resource_api_version: V3}\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(errors.contains("dynamic_resources.cds_config.ads: ADS must be configured to support an ADS config source"), "{errors}");
    assert!(
        errors.contains("dynamic_resources.lds_config.ads: ADS must be configured"),
        "{errors}"
    );
}
