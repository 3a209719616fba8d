//! Where a per-resource subscription (EDS in a cluster, RDS in a connection
//! manager) gets its resources: the ADS stream, a gRPC stream of its own
//! (`api_config_source`), or a watched file (`path_config_source`).
//! [`SourceId`] names one such source; identical `api_config_source`s are
//! the same source and share one stream, as Envoy shares one gRPC mux per
//! identical config source, and one file is watched once.

use std::path::PathBuf;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::api_config_source::ApiType as ProtoApiType;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::grpc_service::TargetSpecifier;
use envoy_types::pb::envoy::config::core::v3::{ApiConfigSource, ApiVersion, ConfigSource};
use prost::Message;

use crate::config::ConfigError;

/// Envoy's error for an `ads: {}` source without `dynamic_resources.ads_config`.
pub const ADS_NOT_CONFIGURED: &str =
    "ADS must be configured to support an ADS config source (dynamic_resources.ads_config is missing)";

/// One source of EDS or RDS resources.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceId {
    /// `ads: {}`: the ADS stream.
    Ads,
    /// `api_config_source`: a stream of its own; the encoded
    /// `ApiConfigSource` (equal bytes, equal source).
    Api(Arc<[u8]>),
    /// `path_config_source`: a file holding a `DiscoveryResponse`, polled.
    File(PathBuf),
}

impl SourceId {
    /// The `ApiConfigSource` of a separate stream (`None` for ADS).
    pub fn api_config_source(&self) -> Option<ApiConfigSource> {
        match self {
            SourceId::Api(bytes) => ApiConfigSource::decode(&bytes[..]).ok(),
            SourceId::Ads | SourceId::File(_) => None,
        }
    }

    /// A short description for logs: `ADS`, `GRPC via cluster 'xds'`, `file /p`.
    pub fn describe(&self) -> String {
        if let SourceId::File(path) = self {
            return format!("file {}", path.display());
        }
        match self.api_config_source() {
            None => "ADS".into(),
            Some(api) => format!(
                "{} via cluster '{}'",
                ProtoApiType::try_from(api.api_type)
                    .map(|t| t.as_str_name())
                    .unwrap_or("?"),
                envoy_cluster_name(&api).unwrap_or_default()
            ),
        }
    }
}

/// The `envoy_grpc.cluster_name` of the first gRPC service, if that is how
/// the source names its server.
pub fn envoy_cluster_name(api: &ApiConfigSource) -> Option<String> {
    match &api.grpc_services.first()?.target_specifier {
        Some(TargetSpecifier::EnvoyGrpc(grpc)) => Some(grpc.cluster_name.clone()),
        _ => None,
    }
}

/// Reads the config source of a per-resource subscription (RDS in a
/// connection manager, EDS in a cluster) at `path` (errors name it). ADS,
/// a separate gRPC stream (GRPC or DELTA_GRPC, V3, `envoy_grpc`) and a file
/// are supported; whether the named gRPC cluster exists is checked where the
/// bootstrap is known (load, or when the stream starts).
pub fn subscription_source(
    source: Option<&ConfigSource>,
    path: &str,
) -> Result<SourceId, ConfigError> {
    let Some(source) = source else {
        return Err(ConfigError::new(
            path,
            "a config source is required (ads: {} or api_config_source)",
        ));
    };
    #[allow(deprecated)]
    match &source.config_source_specifier {
        Some(ConfigSourceSpecifier::Ads(_)) => Ok(SourceId::Ads),
        Some(ConfigSourceSpecifier::ApiConfigSource(api)) => {
            check_api_source(api, &format!("{path}.api_config_source"))?;
            Ok(SourceId::Api(api.encode_to_vec().into()))
        }
        Some(ConfigSourceSpecifier::PathConfigSource(file)) => {
            file_source(&file.path, &format!("{path}.path_config_source.path"))
        }
        Some(ConfigSourceSpecifier::Path(file)) => file_source(file, &format!("{path}.path")),
        Some(ConfigSourceSpecifier::Self_(_)) => Err(ConfigError::new(
            format!("{path}.self"),
            "'self' config sources are not supported by Sluice",
        )),
        None => Err(ConfigError::new(
            path,
            "no config source given (ads: {}, api_config_source or path_config_source)",
        )),
    }
}

fn file_source(file: &str, path: &str) -> Result<SourceId, ConfigError> {
    if file.is_empty() {
        return Err(ConfigError::new(path, "must not be empty"));
    }
    Ok(SourceId::File(PathBuf::from(file)))
}

/// The shape of an `api_config_source` Sluice can run a stream for.
pub fn check_api_source(api: &ApiConfigSource, path: &str) -> Result<(), ConfigError> {
    match ProtoApiType::try_from(api.api_type) {
        Ok(ProtoApiType::Grpc | ProtoApiType::DeltaGrpc) => {}
        _ => {
            return Err(ConfigError::new(
                format!("{path}.api_type"),
                "GRPC or DELTA_GRPC is required",
            ))
        }
    }
    if api.transport_api_version != ApiVersion::V3 as i32 {
        return Err(ConfigError::new(
            format!("{path}.transport_api_version"),
            "only V3 is supported",
        ));
    }
    if api.grpc_services.is_empty() {
        return Err(ConfigError::new(
            format!("{path}.grpc_services"),
            "one gRPC service is required (envoy_grpc: {cluster_name: ...})",
        ));
    }
    if envoy_cluster_name(api).is_none() {
        return Err(ConfigError::new(
            format!("{path}.grpc_services[0]"),
            "only envoy_grpc (a static cluster) is supported by Sluice",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_message;

    fn source(yaml: &str) -> ConfigSource {
        parse_message::<ConfigSource>(yaml).unwrap()
    }

    #[test]
    fn ads_and_identical_api_sources_are_one_source_each() {
        assert_eq!(
            subscription_source(Some(&source("ads: {}")), "x").unwrap(),
            SourceId::Ads
        );
        let api = "api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}";
        let a = subscription_source(Some(&source(api)), "x").unwrap();
        let b = subscription_source(
            Some(&source(&format!("{api}\ninitial_fetch_timeout: 3s"))),
            "x",
        )
        .unwrap();
        assert_eq!(a, b, "the fetch timeout is not part of the stream");
        let delta =
            subscription_source(Some(&source(&api.replace("GRPC,", "DELTA_GRPC,"))), "x").unwrap();
        assert_ne!(a, delta);
        assert_eq!(a.describe(), "GRPC via cluster 'xds'");
        assert_eq!(SourceId::Ads.describe(), "ADS");
        let file = subscription_source(
            Some(&source("path_config_source: {path: /tmp/e.yaml}")),
            "x",
        )
        .unwrap();
        assert_eq!(file, SourceId::File("/tmp/e.yaml".into()));
        assert_eq!(file.describe(), "file /tmp/e.yaml");
    }

    #[test]
    fn unsupported_sources_are_rejected_by_path() {
        let cases = [
            (
                "api_config_source: {api_type: REST, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}",
                "rds.config_source.api_config_source.api_type: GRPC or DELTA_GRPC is required",
            ),
            (
                "api_config_source: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}",
                "rds.config_source.api_config_source.transport_api_version: only V3 is supported",
            ),
            (
                "api_config_source: {api_type: GRPC, transport_api_version: V3}",
                "rds.config_source.api_config_source.grpc_services: one gRPC service is required",
            ),
            (
                "api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{google_grpc: {target_uri: 'a:1', stat_prefix: s}}]}",
                "rds.config_source.api_config_source.grpc_services[0]: only envoy_grpc",
            ),
            (
                "path_config_source: {path: ''}",
                "rds.config_source.path_config_source.path: must not be empty",
            ),
            ("initial_fetch_timeout: 1s", "rds.config_source: no config source given"),
        ];
        for (yaml, expected) in cases {
            let error = subscription_source(Some(&source(yaml)), "rds.config_source")
                .unwrap_err()
                .to_string();
            assert!(error.starts_with(expected), "{yaml}: {error}");
        }
        let missing = subscription_source(None, "eds_cluster_config.eds_config").unwrap_err();
        assert!(
            missing.to_string().contains("a config source is required"),
            "{missing}"
        );
    }
}
