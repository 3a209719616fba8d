//! Compiling an `HttpConnectionManager` message into the settings one
//! listener's HTTP connections run with.

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::{CodecType, RouteSpecifier, ServerHeaderTransformation},
    http_filter::ConfigType,
    HttpConnectionManager as HcmProto,
};
use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;

use super::local_streams::StreamExecutor;
use super::stats::HttpStats;
use crate::access_log::AccessLogs;
use crate::config::context::CompileContext;
use crate::config::proto::{opt_duration, timeout_or, type_name, unpack};
use crate::config::{ConfigError, ConfigErrors};
use crate::http::rds::RouteConfigProvider;
use crate::http::router::RouteTable;
use crate::upstream::ClusterManager;

/// Envoy's defaults.
const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
const DEFAULT_MAX_REQUEST_HEADERS_KB: u32 = 60;
const DEFAULT_MAX_HEADERS_COUNT: u32 = 100;
/// hyper's HTTP/1 header count limit when none is set.
const HYPER_DEFAULT_MAX_HEADERS: u32 = 100;
const DEFAULT_SERVER_NAME: &str = "envoy";

/// What the `server` response header becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerHeader {
    Overwrite,
    AppendIfAbsent,
    PassThrough,
}

/// Where a connection manager's routes come from.
pub(super) enum Routes {
    /// An inline `route_config`, and the message it was compiled from.
    Static(Arc<RouteTable>, Box<RouteConfiguration>),
    /// `rds`: whatever RDS last delivered for the name.
    Rds(Arc<RouteConfigProvider>),
}

/// A compiled connection manager: everything a downstream HTTP connection
/// on this listener needs, immutable once built.
pub struct HttpConnectionManager {
    pub(super) stat_prefix: String,
    pub(super) routes: Routes,
    pub(super) clusters: Arc<ClusterManager>,
    pub(super) access_logs: AccessLogs,
    pub(super) stats: HttpStats,
    pub(super) server_name: http::HeaderValue,
    pub(super) server_header: ServerHeader,
    pub(super) use_remote_address: bool,
    pub(super) xff_num_trusted_hops: u32,
    pub(super) generate_request_id: bool,
    pub(super) preserve_external_request_id: bool,
    pub(super) always_set_request_id_in_response: bool,
    pub(super) suppress_envoy_headers: bool,
    pub(super) request_timeout: Option<Duration>,
    pub(super) stream_idle_timeout: Option<Duration>,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) max_connection_duration: Option<Duration>,
    pub(super) max_stream_duration: Option<Duration>,
    pub(super) builder: auto::Builder<StreamExecutor>,
}

impl std::fmt::Debug for HttpConnectionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConnectionManager")
            .field("stat_prefix", &self.stat_prefix)
            .finish_non_exhaustive()
    }
}

impl HttpConnectionManager {
    /// Compiles the filter; error paths are relative to the message.
    pub fn compile(
        config: &HcmProto,
        context: &CompileContext,
    ) -> Result<HttpConnectionManager, ConfigErrors> {
        let clusters = context.clusters.clone();
        let store = &context.store;
        let mut errors = ConfigErrors::default();
        if config.stat_prefix.is_empty() {
            errors.push(ConfigError::new("stat_prefix", "must not be empty"));
        }
        let routes = match &config.route_specifier {
            Some(RouteSpecifier::RouteConfig(route_config)) => {
                match RouteTable::compile(route_config) {
                    Ok(table) => {
                        check_route_clusters(
                            route_config.validate_clusters.as_ref(),
                            &table,
                            &clusters,
                            &mut errors,
                        );
                        Some(Routes::Static(
                            Arc::new(table),
                            Box::new(route_config.clone()),
                        ))
                    }
                    Err(e) => {
                        errors.extend_under("route_config", e);
                        None
                    }
                }
            }
            Some(RouteSpecifier::Rds(rds)) => {
                if rds.route_config_name.is_empty() {
                    errors.push(ConfigError::new(
                        "rds.route_config_name",
                        "must not be empty",
                    ));
                    None
                } else {
                    match crate::xds::source::subscription_source(
                        rds.config_source.as_ref(),
                        "rds.config_source",
                    ) {
                        Ok(source) => Some(Routes::Rds(
                            context.routes.provider_from(&rds.route_config_name, source),
                        )),
                        Err(error) => {
                            errors.push(error);
                            None
                        }
                    }
                }
            }
            _ => {
                errors.push(ConfigError::new(
                    "route_config",
                    "a route_config or rds is required",
                ));
                None
            }
        };
        let suppress_envoy_headers = compile_http_filters(config, &mut errors);
        let access_logs = match AccessLogs::compile(&config.access_log, &context.log_writers) {
            Ok(logs) => Some(logs),
            Err(e) => {
                errors.extend_under("access_log", e);
                None
            }
        };
        let codec = CodecType::try_from(config.codec_type).unwrap_or(CodecType::Auto);
        if codec == CodecType::Http3 {
            errors.push(ConfigError::new(
                "codec_type",
                "HTTP3 is not supported by Sluice",
            ));
        }
        let server_header =
            match ServerHeaderTransformation::try_from(config.server_header_transformation) {
                Ok(ServerHeaderTransformation::AppendIfAbsent) => ServerHeader::AppendIfAbsent,
                Ok(ServerHeaderTransformation::PassThrough) => ServerHeader::PassThrough,
                _ => ServerHeader::Overwrite,
            };
        let server_name = if config.server_name.is_empty() {
            DEFAULT_SERVER_NAME
        } else {
            &config.server_name
        };
        let server_name = match http::HeaderValue::from_str(server_name) {
            Ok(value) => value,
            Err(_) => {
                errors.push(ConfigError::new("server_name", "not a valid header value"));
                http::HeaderValue::from_static(DEFAULT_SERVER_NAME)
            }
        };
        let common = config.common_http_protocol_options.unwrap_or_default();
        let max_headers_kb = config
            .max_request_headers_kb
            .as_ref()
            .map(|v| v.value)
            .unwrap_or(DEFAULT_MAX_REQUEST_HEADERS_KB);
        if !(1..=8192).contains(&max_headers_kb) {
            errors.push(ConfigError::new(
                "max_request_headers_kb",
                format!("must be between 1 and 8192, got {max_headers_kb}"),
            ));
        }
        let max_headers_count = common
            .max_headers_count
            .as_ref()
            .map(|v| v.value)
            .unwrap_or(DEFAULT_MAX_HEADERS_COUNT);
        if max_headers_count == 0 {
            errors.push(ConfigError::new(
                "common_http_protocol_options.max_headers_count",
                "must be at least 1",
            ));
        }

        // HTTP/2 streams run in their connection's task (local_streams.rs).
        let mut builder = auto::Builder::new(StreamExecutor);
        {
            let mut h1 = builder.http1();
            h1.timer(TokioTimer::new())
                .keep_alive(true)
                .max_buf_size((max_headers_kb as usize * 1024).max(8192))
                .header_read_timeout(
                    opt_duration(&config.request_headers_timeout).filter(|d| !d.is_zero()),
                );
            // hyper's own limit is Envoy's default (100); setting it, even to
            // 100, makes hyper initialise a header array per request.
            if max_headers_count != HYPER_DEFAULT_MAX_HEADERS {
                h1.max_headers(max_headers_count as usize);
            }
        }
        {
            let h2_options = config.http2_protocol_options.clone().unwrap_or_default();
            let mut h2 = builder.http2();
            h2.timer(TokioTimer::new())
                .max_header_list_size(max_headers_kb * 1024)
                .max_concurrent_streams(h2_options.max_concurrent_streams.map(|v| v.value))
                .initial_stream_window_size(h2_options.initial_stream_window_size.map(|v| v.value))
                .initial_connection_window_size(
                    h2_options.initial_connection_window_size.map(|v| v.value),
                );
        }
        let builder = match codec {
            CodecType::Http1 => builder.http1_only(),
            CodecType::Http2 => builder.http2_only(),
            _ => builder,
        };

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(HttpConnectionManager {
            stat_prefix: config.stat_prefix.clone(),
            routes: routes.expect("checked above"),
            clusters,
            access_logs: access_logs.expect("checked above"),
            stats: HttpStats::new(store, &config.stat_prefix),
            server_name,
            server_header,
            use_remote_address: config.use_remote_address.as_ref().is_some_and(|v| v.value),
            xff_num_trusted_hops: config.xff_num_trusted_hops,
            generate_request_id: config.generate_request_id.as_ref().is_none_or(|v| v.value),
            preserve_external_request_id: config.preserve_external_request_id,
            always_set_request_id_in_response: config.always_set_request_id_in_response,
            suppress_envoy_headers,
            request_timeout: timeout_or(&config.request_timeout, None),
            stream_idle_timeout: timeout_or(
                &config.stream_idle_timeout,
                Some(DEFAULT_STREAM_IDLE_TIMEOUT),
            ),
            idle_timeout: timeout_or(&common.idle_timeout, Some(DEFAULT_CONNECTION_IDLE_TIMEOUT)),
            max_connection_duration: timeout_or(&common.max_connection_duration, None),
            max_stream_duration: timeout_or(&common.max_stream_duration, None),
            builder,
        })
    }

    pub fn stat_prefix(&self) -> &str {
        &self.stat_prefix
    }

    /// The table to route the next request with; `None` while RDS has not
    /// delivered this manager's route configuration.
    pub fn route_table(&self) -> Option<Arc<RouteTable>> {
        match &self.routes {
            Routes::Static(table, _) => Some(table.clone()),
            Routes::Rds(provider) => provider.table(),
        }
    }

    /// The inline route configuration, for `/config_dump`.
    pub fn inline_route_config(&self) -> Option<&RouteConfiguration> {
        match &self.routes {
            Routes::Static(_, config) => Some(config),
            Routes::Rds(_) => None,
        }
    }

    /// The RDS provider this manager routes with, if it uses RDS.
    pub fn route_provider(&self) -> Option<&Arc<RouteConfigProvider>> {
        match &self.routes {
            Routes::Static(..) => None,
            Routes::Rds(provider) => Some(provider),
        }
    }
}

/// Checks the HTTP filter list: the router must be present and last. Returns
/// the router's `suppress_envoy_headers`.
fn compile_http_filters(config: &HcmProto, errors: &mut ConfigErrors) -> bool {
    const ROUTER: &str = "envoy.extensions.filters.http.router.v3.Router";
    if config.http_filters.is_empty() {
        errors.push(ConfigError::new(
            "http_filters",
            "the router filter (envoy.filters.http.router) is required as the last filter",
        ));
        return false;
    }
    let mut suppress = false;
    let last = config.http_filters.len() - 1;
    for (i, filter) in config.http_filters.iter().enumerate() {
        let path = format!("http_filters[{i}]");
        let any = match &filter.config_type {
            Some(ConfigType::TypedConfig(any)) => any,
            Some(ConfigType::ConfigDiscovery(_)) => {
                errors.push(ConfigError::new(
                    format!("{path}.config_discovery"),
                    "extension config discovery is not supported by Sluice",
                ));
                continue;
            }
            None => {
                errors.push(ConfigError::new(
                    format!("{path}.typed_config"),
                    format!("filter '{}' needs a typed_config", filter.name),
                ));
                continue;
            }
        };
        if type_name(&any.type_url) != ROUTER {
            errors.push(ConfigError::new(
                format!("{path}.typed_config"),
                format!(
                    "HTTP filter type '{}' is not supported by Sluice",
                    type_name(&any.type_url)
                ),
            ));
            continue;
        }
        if i != last {
            errors.push(ConfigError::new(
                path.clone(),
                "the router filter must be the last HTTP filter",
            ));
        }
        match unpack::<Router>(any) {
            Ok(router) => suppress = router.suppress_envoy_headers,
            Err(e) => errors.push(e.under(&format!("{path}.typed_config"))),
        }
    }
    suppress
}

/// Envoy checks that statically named route clusters exist when
/// `validate_clusters` is true (the default for inline route configs).
fn check_route_clusters(
    validate: Option<&envoy_types::pb::google::protobuf::BoolValue>,
    table: &RouteTable,
    clusters: &ClusterManager,
    errors: &mut ConfigErrors,
) {
    if validate.is_some_and(|v| !v.value) {
        return;
    }
    for name in table.cluster_names() {
        if clusters.get(name).is_none() {
            errors.push(ConfigError::new(
                "route_config",
                format!("route references unknown cluster '{name}'"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> CompileContext {
        CompileContext::with_backend_cluster()
    }

    fn compile(yaml: &str) -> Result<HttpConnectionManager, ConfigErrors> {
        let proto: HcmProto = crate::config::parse_message(yaml).expect("test YAML parses");
        HttpConnectionManager::compile(&proto, &context())
    }

    const ROUTES: &str = "route_config: {virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {prefix: /}, route: {cluster: backend}}]}]}";
    const ROUTER: &str = "{name: router, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}";

    fn messages(result: Result<HttpConnectionManager, ConfigErrors>) -> String {
        result.expect_err("should fail").to_string()
    }

    #[test]
    fn a_complete_manager_compiles_with_envoy_defaults() {
        let hcm = compile(&format!(
            "stat_prefix: in\n{ROUTES}\nhttp_filters: [{ROUTER}]"
        ))
        .unwrap();
        assert_eq!(hcm.stat_prefix(), "in");
        assert_eq!(hcm.stream_idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(hcm.idle_timeout, Some(Duration::from_secs(3600)));
        assert_eq!(hcm.request_timeout, None);
        assert!(hcm.generate_request_id);
        assert_eq!(hcm.server_name, "envoy");
    }

    #[test]
    fn the_router_is_required_and_last() {
        let missing = messages(compile(&format!("stat_prefix: in\n{ROUTES}")));
        assert!(
            missing.contains("http_filters: the router filter"),
            "{missing}"
        );
        let cors = "{name: cors, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}}";
        let text = messages(compile(&format!(
            "stat_prefix: in\n{ROUTES}\nhttp_filters: [{ROUTER}, {cors}]"
        )));
        assert!(
            text.contains("http_filters[0]: the router filter must be the last"),
            "{text}"
        );
        assert!(text.contains("http_filters[1].typed_config: HTTP filter type 'envoy.extensions.filters.http.cors.v3.Cors' is not supported"), "{text}");
    }

    #[test]
    fn unknown_clusters_and_rds_are_rejected() {
        let text = messages(compile(&format!(
            "stat_prefix: in\nroute_config: {{virtual_hosts: [{{name: v, domains: ['*'], routes: [{{match: {{prefix: /}}, route: {{cluster: nowhere}}}}]}}]}}\nhttp_filters: [{ROUTER}]"
        )));
        assert!(text.contains("unknown cluster 'nowhere'"), "{text}");
    }

    #[test]
    fn rds_routes_come_from_the_registry() {
        let context = context();
        let proto: HcmProto = crate::config::parse_message(&format!(
            "stat_prefix: in\nrds: {{route_config_name: r, config_source: {{ads: {{}}}}}}\nhttp_filters: [{ROUTER}]"
        ))
        .unwrap();
        let hcm = HttpConnectionManager::compile(&proto, &context).unwrap();
        assert!(
            hcm.route_table().is_none(),
            "no routes before RDS delivers them"
        );
        assert_eq!(hcm.route_provider().unwrap().name(), "r");
        context
            .routes
            .update(
                &crate::config::parse_message(
                    "name: r\nvirtual_hosts: [{name: v, domains: ['*'], routes: [{match: {prefix: /}, route: {cluster: backend}}]}]",
                )
                .unwrap(),
            )
            .unwrap();
        assert!(hcm.route_table().is_some());
    }

    #[test]
    fn limits_are_checked() {
        let text = messages(compile(&format!(
            "stat_prefix: in\nmax_request_headers_kb: 9000\n{ROUTES}\nhttp_filters: [{ROUTER}]"
        )));
        assert!(
            text.contains("max_request_headers_kb: must be between 1 and 8192"),
            "{text}"
        );
        let http3 = messages(compile(&format!(
            "stat_prefix: in\ncodec_type: HTTP3\n{ROUTES}\nhttp_filters: [{ROUTER}]"
        )));
        assert!(
            http3.contains("codec_type: HTTP3 is not supported"),
            "{http3}"
        );
    }

    #[test]
    fn zero_timeouts_disable() {
        let hcm = compile(&format!(
            "stat_prefix: in\nstream_idle_timeout: 0s\ncommon_http_protocol_options: {{idle_timeout: 0s, max_connection_duration: 2s}}\n{ROUTES}\nhttp_filters: [{ROUTER}]"
        ))
        .unwrap();
        assert_eq!(hcm.stream_idle_timeout, None);
        assert_eq!(hcm.idle_timeout, None);
        assert_eq!(hcm.max_connection_duration, Some(Duration::from_secs(2)));
    }
}
