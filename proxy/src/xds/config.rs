//! The bootstrap's `dynamic_resources`, read into what the xDS client runs:
//! [`StreamConfig`]s (the ADS stream, and a stream of its own for
//! `lds_config`/`cds_config` with an `api_config_source`: the server's
//! address, SotW or delta, which service and types) and the file-based
//! sources (`path_config_source` for LDS/CDS). EDS and RDS streams of their
//! own are named by clusters and listeners, not here: [`api_stream_config`]
//! turns such a source into a [`StreamConfig`] when it is first used
//! (see [`super::source_streams`]).
//!
//! A gRPC server is reached through a static cluster, as in Envoy:
//! `grpc_services[0].envoy_grpc.cluster_name` names it, and the client
//! connects (HTTP/2 cleartext) to the first endpoint of its
//! `load_assignment`. A hostname endpoint is resolved when connecting.

use std::path::PathBuf;
use std::time::Duration;

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::api_config_source::ApiType as ProtoApiType;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::grpc_service::TargetSpecifier;
use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address, ApiConfigSource, ApiVersion, ConfigSource,
};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;

use crate::config::{ConfigError, ConfigErrors};

use super::backoff::Backoff;
use super::rate_limit::RateLimit;
use super::resource::type_urls;
use super::services::DiscoveryService;
use super::source::{SourceId, ADS_NOT_CONFIGURED};

/// State-of-the-world or incremental.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiType {
    /// `GRPC`: `StreamAggregatedResources`.
    Grpc,
    /// `DELTA_GRPC`: `DeltaAggregatedResources`.
    DeltaGrpc,
}

/// How to run one xDS stream client (ADS, or one type on its own stream).
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// The gRPC service the stream opens on.
    pub service: DiscoveryService,
    pub api_type: ApiType,
    /// `http://host:port` of the xDS server.
    pub uri: String,
    /// The static cluster it came from, for logs.
    pub cluster_name: String,
    /// Envoy's `set_node_on_first_message_only` (SotW): otherwise `node` is
    /// on every request.
    pub set_node_on_first_message_only: bool,
    /// Type URLs multiplexed on the stream, in subscription order.
    pub types: Vec<&'static str>,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// Limit on establishing the connection.
    pub connect_timeout: Duration,
    /// `rate_limit_settings`: a token bucket on the requests sent.
    pub rate_limit: Option<RateLimit>,
    /// Which subscriptions the stream carries for EDS/RDS: the ADS ones,
    /// or those naming this `api_config_source`.
    pub source: SourceId,
}

/// A file-based source of one type (`path_config_source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource {
    pub type_url: &'static str,
    pub path: PathBuf,
}

/// Everything `dynamic_resources` asks the xDS layer to run.
#[derive(Debug, Clone, Default)]
pub struct DynamicSources {
    pub ads: Option<StreamConfig>,
    /// Types on a stream of their own (`api_config_source`), one each.
    pub streams: Vec<StreamConfig>,
    pub files: Vec<FileSource>,
}

impl DynamicSources {
    /// True when nothing dynamic is configured.
    pub fn is_empty(&self) -> bool {
        self.ads.is_none() && self.streams.is_empty() && self.files.is_empty()
    }

    /// Every gRPC stream to run: ADS first, then the per-type ones.
    pub fn grpc_streams(&self) -> impl Iterator<Item = &StreamConfig> {
        self.ads.iter().chain(&self.streams)
    }

    /// Whether some source (a stream or a file) delivers `type_url`.
    pub fn delivers(&self, type_url: &str) -> bool {
        self.grpc_streams().any(|s| s.types.contains(&type_url))
            || self.files.iter().any(|f| f.type_url == type_url)
    }
}

/// Reads `dynamic_resources` (absent: nothing dynamic). Errors carry paths
/// from the bootstrap root.
pub fn dynamic_sources(bootstrap: &Bootstrap) -> Result<DynamicSources, ConfigErrors> {
    let mut sources = DynamicSources::default();
    let Some(dynamic) = &bootstrap.dynamic_resources else {
        return Ok(sources);
    };
    let mut errors = ConfigErrors::default();
    let mut ads_types = Vec::new();
    let mut ads_fields = Vec::new();
    for (field, source, type_url, service) in [
        (
            "cds_config",
            &dynamic.cds_config,
            type_urls::CLUSTER,
            DiscoveryService::Clusters,
        ),
        (
            "lds_config",
            &dynamic.lds_config,
            type_urls::LISTENER,
            DiscoveryService::Listeners,
        ),
    ] {
        let path = format!("dynamic_resources.{field}");
        let Some(source) = source else { continue };
        match config_source_kind(source, &path) {
            Ok(SourceKind::Ads) => {
                ads_types.push(type_url);
                ads_fields.push(field);
            }
            Ok(SourceKind::File(file)) => sources.files.push(FileSource {
                type_url,
                path: file,
            }),
            Ok(SourceKind::Api(api)) => {
                match grpc_stream_config(
                    bootstrap,
                    api,
                    &format!("{path}.api_config_source"),
                    service,
                ) {
                    Ok(mut config) => {
                        config.types = vec![type_url];
                        sources.streams.push(config);
                    }
                    Err(error) => errors.push(error),
                }
            }
            Err(error) => errors.push(error),
        }
    }
    if let Some(ads) = &dynamic.ads_config {
        match grpc_stream_config(
            bootstrap,
            ads,
            "dynamic_resources.ads_config",
            DiscoveryService::Aggregated,
        ) {
            Ok(mut config) => {
                // Endpoints and routes follow what clusters and listeners name.
                config.types = type_urls::ALL
                    .into_iter()
                    .filter(|t| {
                        ads_types.contains(t) || *t == type_urls::ENDPOINT || *t == type_urls::ROUTE
                    })
                    .collect();
                sources.ads = Some(config);
            }
            Err(error) => errors.push(error),
        }
    } else {
        for field in ads_fields {
            errors.push(ConfigError::new(
                format!("dynamic_resources.{field}.ads"),
                ADS_NOT_CONFIGURED,
            ));
        }
    }
    errors.into_result(sources)
}

enum SourceKind<'a> {
    Ads,
    File(PathBuf),
    /// A stream of its own.
    Api(&'a ApiConfigSource),
}

fn config_source_kind<'a>(
    source: &'a ConfigSource,
    path: &str,
) -> Result<SourceKind<'a>, ConfigError> {
    if source.resource_api_version != ApiVersion::V3 as i32 {
        return Err(ConfigError::new(
            format!("{path}.resource_api_version"),
            "only V3 is supported",
        ));
    }
    #[allow(deprecated)]
    match &source.config_source_specifier {
        Some(ConfigSourceSpecifier::Ads(_)) => Ok(SourceKind::Ads),
        Some(ConfigSourceSpecifier::PathConfigSource(file)) => {
            Ok(SourceKind::File(PathBuf::from(&file.path)))
        }
        Some(ConfigSourceSpecifier::Path(file)) => Ok(SourceKind::File(PathBuf::from(file))),
        Some(ConfigSourceSpecifier::ApiConfigSource(api)) => Ok(SourceKind::Api(api)),
        Some(ConfigSourceSpecifier::Self_(_)) => Err(ConfigError::new(
            format!("{path}.self"),
            "'self' config sources are not supported by Sluice",
        )),
        None => Err(ConfigError::new(
            path,
            "no config source given (ads, api_config_source, path_config_source)",
        )),
    }
}

/// Reads an `ApiConfigSource` (`ads_config`, or the `api_config_source` of
/// a type with its own stream) at `path` into a stream for `service`; its
/// `types` are left for the caller to fill in (and `source` is ADS).
pub fn grpc_stream_config(
    bootstrap: &Bootstrap,
    api: &ApiConfigSource,
    path: &str,
    service: DiscoveryService,
) -> Result<StreamConfig, ConfigError> {
    let label = service.short_name();
    let api_type = match ProtoApiType::try_from(api.api_type) {
        Ok(ProtoApiType::Grpc) => ApiType::Grpc,
        Ok(ProtoApiType::DeltaGrpc) => ApiType::DeltaGrpc,
        _ => {
            return Err(ConfigError::new(
                format!("{path}.api_type"),
                format!("{label} needs GRPC or DELTA_GRPC"),
            ))
        }
    };
    if api.transport_api_version != ApiVersion::V3 as i32 {
        return Err(ConfigError::new(
            format!("{path}.transport_api_version"),
            "only V3 is supported",
        ));
    }
    let grpc_service = api.grpc_services.first().ok_or_else(|| {
        ConfigError::new(
            format!("{path}.grpc_services"),
            format!("{label} needs one gRPC service (envoy_grpc: {{cluster_name: ...}})"),
        )
    })?;
    let cluster_name = match &grpc_service.target_specifier {
        Some(TargetSpecifier::EnvoyGrpc(grpc)) => grpc.cluster_name.clone(),
        _ => {
            return Err(ConfigError::new(
                format!("{path}.grpc_services[0]"),
                "only envoy_grpc (a static cluster) is supported by Sluice",
            ))
        }
    };
    let cluster = bootstrap
        .static_resources
        .as_ref()
        .and_then(|s| s.clusters.iter().find(|c| c.name == cluster_name))
        .ok_or_else(|| {
            ConfigError::new(
                format!("{path}.grpc_services[0].envoy_grpc.cluster_name"),
                format!("'{cluster_name}' is not a static cluster"),
            )
        })?;
    let uri = first_endpoint_uri(cluster).ok_or_else(|| {
        ConfigError::new(
            format!("{path}.grpc_services[0].envoy_grpc.cluster_name"),
            format!("static cluster '{cluster_name}' has no endpoint with a socket address"),
        )
    })?;
    Ok(StreamConfig {
        service,
        api_type,
        uri,
        cluster_name,
        set_node_on_first_message_only: api.set_node_on_first_message_only,
        rate_limit: api
            .rate_limit_settings
            .as_ref()
            .map(|settings| RateLimit::from_proto(settings, &format!("{path}.rate_limit_settings")))
            .transpose()?,
        source: SourceId::Ads,
        types: Vec::new(),
        backoff: Backoff::envoy_default(),
        connect_timeout: cluster
            .connect_timeout
            .as_ref()
            .map(crate::config::proto::duration)
            .unwrap_or(Duration::from_secs(5)),
    })
}

/// The stream for an EDS or RDS `source` of its own (`type_url` is
/// ENDPOINT or ROUTE); `path` names it in errors. `None` for ADS.
pub fn api_stream_config(
    bootstrap: &Bootstrap,
    source: &SourceId,
    type_url: &'static str,
    path: &str,
) -> Option<Result<StreamConfig, ConfigError>> {
    let api = source.api_config_source()?;
    let service = DiscoveryService::for_type(type_url)?;
    Some(
        grpc_stream_config(bootstrap, &api, path, service).map(|mut config| {
            config.types = vec![type_url];
            config.source = source.clone();
            config
        }),
    )
}

/// `http://address:port` of the first endpoint of a cluster's load assignment.
fn first_endpoint_uri(cluster: &Cluster) -> Option<String> {
    let endpoint = cluster
        .load_assignment
        .as_ref()?
        .endpoints
        .iter()
        .flat_map(|locality| &locality.lb_endpoints)
        .find_map(|lb| match &lb.host_identifier {
            Some(HostIdentifier::Endpoint(endpoint)) => endpoint.address.clone(),
            _ => None,
        })?;
    let Some(address::Address::SocketAddress(socket)) = endpoint.address else {
        return None;
    };
    let Some(socket_address::PortSpecifier::PortValue(port)) = socket.port_specifier else {
        return None;
    };
    let host = if socket.address.contains(':') {
        format!("[{}]", socket.address)
    } else {
        socket.address
    };
    Some(format!("http://{host}:{port}"))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
