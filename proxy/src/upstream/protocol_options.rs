//! The upstream HTTP protocol settings of a cluster: which protocol to
//! speak (`typed_extension_protocol_options` →
//! `envoy.extensions.upstreams.http.v3.HttpProtocolOptions`, or the
//! deprecated cluster-level `http2_protocol_options`), the connection idle
//! timeout (Envoy's default: 1 hour) and `max_requests_per_connection`.
//! Errors are relative to the `Cluster` message.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, Http2ProtocolOptions, HttpProtocolOptions as CommonHttpProtocolOptions,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    explicit_http_config::ProtocolConfig, UpstreamProtocolOptions,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;

use super::pool::UpstreamProtocol;
use crate::config::proto::{timeout_or, unpack};
use crate::config::{ConfigError, ConfigErrors};

pub(crate) const HTTP_PROTOCOL_OPTIONS_KEY: &str =
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProtocolSettings {
    pub protocol: UpstreamProtocol,
    pub idle_timeout: Option<Duration>,
    pub max_requests_per_connection: Option<u32>,
}

fn unsupported(path: &str) -> ConfigError {
    let field = path.rsplit('.').next().unwrap_or(path);
    ConfigError::new(path, format!("field '{field}' is not supported by Sluice"))
}

#[allow(deprecated)]
pub(crate) fn compile(cluster: &Cluster, errors: &mut ConfigErrors) -> ProtocolSettings {
    let mut settings = ProtocolSettings {
        protocol: UpstreamProtocol::Http1,
        idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
        max_requests_per_connection: cluster.max_requests_per_connection.map(|v| v.value),
    };
    if let Some(h1) = &cluster.http_protocol_options {
        check_http1(h1, "http_protocol_options", errors);
    }
    if let Some(h2) = &cluster.http2_protocol_options {
        check_http2(h2, "http2_protocol_options", errors);
        settings.protocol = UpstreamProtocol::Http2;
    }
    if let Some(common) = &cluster.common_http_protocol_options {
        apply_common(
            common,
            "common_http_protocol_options",
            &mut settings,
            errors,
        );
    }
    if cluster.upstream_http_protocol_options.is_some() {
        errors.push(unsupported("upstream_http_protocol_options"));
    }
    let mut keys: Vec<&String> = cluster.typed_extension_protocol_options.keys().collect();
    keys.sort();
    for key in keys {
        let path = format!("typed_extension_protocol_options[\"{key}\"]");
        if key != HTTP_PROTOCOL_OPTIONS_KEY {
            errors.push(ConfigError::new(
                path,
                format!("protocol options '{key}' are not supported by Sluice"),
            ));
            continue;
        }
        match unpack::<HttpProtocolOptions>(&cluster.typed_extension_protocol_options[key]) {
            Ok(options) => apply_extension(&options, &path, &mut settings, errors),
            Err(error) => errors.push(error.under(&path)),
        }
    }
    settings
}

fn apply_extension(
    options: &HttpProtocolOptions,
    path: &str,
    settings: &mut ProtocolSettings,
    errors: &mut ConfigErrors,
) {
    let at = |field: &str| format!("{path}.{field}");
    if let Some(common) = &options.common_http_protocol_options {
        apply_common(
            common,
            &at("common_http_protocol_options"),
            settings,
            errors,
        );
    }
    if options.upstream_http_protocol_options.is_some() {
        errors.push(unsupported(&at("upstream_http_protocol_options")));
    }
    let unsupported_fields = [
        ("http_filters", !options.http_filters.is_empty()),
        (
            "header_validation_config",
            options.header_validation_config.is_some(),
        ),
        ("outlier_detection", options.outlier_detection.is_some()),
        (
            "request_mirror_policies",
            !options.request_mirror_policies.is_empty(),
        ),
        ("hash_policy", !options.hash_policy.is_empty()),
        ("retry_policy", options.retry_policy.is_some()),
    ];
    for (field, set) in unsupported_fields {
        if set {
            errors.push(unsupported(&at(field)));
        }
    }
    match &options.upstream_protocol_options {
        None => {}
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(explicit)) => {
            let base = at("explicit_http_config");
            match &explicit.protocol_config {
                Some(ProtocolConfig::HttpProtocolOptions(h1)) => {
                    check_http1(h1, &format!("{base}.http_protocol_options"), errors);
                    settings.protocol = UpstreamProtocol::Http1;
                }
                Some(ProtocolConfig::Http2ProtocolOptions(h2)) => {
                    check_http2(h2, &format!("{base}.http2_protocol_options"), errors);
                    settings.protocol = UpstreamProtocol::Http2;
                }
                Some(ProtocolConfig::Http3ProtocolOptions(_)) => errors.push(ConfigError::new(
                    format!("{base}.http3_protocol_options"),
                    "upstream HTTP/3 is not supported by Sluice",
                )),
                None => errors.push(ConfigError::new(
                    base,
                    "explicit_http_config needs one of http_protocol_options, \
                     http2_protocol_options",
                )),
            }
        }
        Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(_)) => {
            errors.push(unsupported(&at("use_downstream_protocol_config")));
        }
        Some(UpstreamProtocolOptions::AutoConfig(_)) => {
            errors.push(unsupported(&at("auto_config")));
        }
    }
}

fn apply_common(
    common: &CommonHttpProtocolOptions,
    path: &str,
    settings: &mut ProtocolSettings,
    errors: &mut ConfigErrors,
) {
    settings.idle_timeout = timeout_or(&common.idle_timeout, Some(DEFAULT_IDLE_TIMEOUT));
    if let Some(max) = common.max_requests_per_connection {
        settings.max_requests_per_connection = Some(max.value);
    }
    let unsupported_fields = [
        (
            "max_connection_duration",
            common.max_connection_duration.is_some(),
        ),
        (
            "max_connection_duration_jitter",
            common.max_connection_duration_jitter.is_some(),
        ),
        ("max_headers_count", common.max_headers_count.is_some()),
        (
            "max_response_headers_kb",
            common.max_response_headers_kb.is_some(),
        ),
        ("max_stream_duration", common.max_stream_duration.is_some()),
        (
            "headers_with_underscores_action",
            common.headers_with_underscores_action != 0,
        ),
    ];
    for (field, set) in unsupported_fields {
        if set {
            errors.push(unsupported(&format!("{path}.{field}")));
        }
    }
}

fn check_http1(options: &Http1ProtocolOptions, path: &str, errors: &mut ConfigErrors) {
    if *options != Http1ProtocolOptions::default() {
        errors.push(ConfigError::new(
            path,
            "HTTP/1.1 protocol options other than the defaults are not supported by Sluice",
        ));
    }
}

fn check_http2(options: &Http2ProtocolOptions, path: &str, errors: &mut ConfigErrors) {
    if *options != Http2ProtocolOptions::default() {
        errors.push(ConfigError::new(
            path,
            "HTTP/2 protocol options other than the defaults are not supported by Sluice",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::ExplicitHttpConfig;
    use envoy_types::pb::google::protobuf::{Any, Duration as ProtoDuration, UInt32Value};
    use prost::{Message, Name};

    fn with_options(options: HttpProtocolOptions) -> Cluster {
        let mut cluster = Cluster::default();
        cluster.typed_extension_protocol_options.insert(
            HTTP_PROTOCOL_OPTIONS_KEY.to_string(),
            Any {
                type_url: HttpProtocolOptions::type_url(),
                value: options.encode_to_vec(),
            },
        );
        cluster
    }

    #[test]
    fn defaults_are_http1_with_one_hour_idle_timeout() {
        let mut errors = ConfigErrors::default();
        let settings = compile(&Cluster::default(), &mut errors);
        assert!(errors.is_empty());
        assert_eq!(settings.protocol, UpstreamProtocol::Http1);
        assert_eq!(settings.idle_timeout, Some(Duration::from_secs(3600)));
        assert_eq!(settings.max_requests_per_connection, None);
    }

    #[test]
    fn explicit_http2_and_common_options() {
        let options = HttpProtocolOptions {
            common_http_protocol_options: Some(CommonHttpProtocolOptions {
                idle_timeout: Some(ProtoDuration {
                    seconds: 0,
                    nanos: 0,
                }),
                max_requests_per_connection: Some(UInt32Value { value: 7 }),
                ..Default::default()
            }),
            upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(Default::default())),
                },
            )),
            ..Default::default()
        };
        let mut errors = ConfigErrors::default();
        let settings = compile(&with_options(options), &mut errors);
        assert!(errors.is_empty(), "{errors}");
        assert_eq!(settings.protocol, UpstreamProtocol::Http2);
        assert_eq!(
            settings.idle_timeout, None,
            "zero disables the idle timeout"
        );
        assert_eq!(settings.max_requests_per_connection, Some(7));
    }

    #[test]
    fn unsupported_options_are_named() {
        let options = HttpProtocolOptions {
            upstream_protocol_options: Some(
                UpstreamProtocolOptions::AutoConfig(Default::default()),
            ),
            ..Default::default()
        };
        let mut errors = ConfigErrors::default();
        compile(&with_options(options), &mut errors);
        assert_eq!(
            errors.to_string(),
            "typed_extension_protocol_options[\"envoy.extensions.upstreams.http.v3.\
             HttpProtocolOptions\"].auto_config: field 'auto_config' is not supported by Sluice"
        );
        let mut cluster = Cluster::default();
        cluster.typed_extension_protocol_options.insert(
            "envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions".into(),
            Any::default(),
        );
        let mut errors = ConfigErrors::default();
        compile(&cluster, &mut errors);
        assert!(errors.to_string().contains("are not supported by Sluice"));
    }
}
