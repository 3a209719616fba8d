//! Envoy YAML fragments the black-box tests' configs share.

/// A listener on the `${<port>}` placeholder whose only filter is an HTTP
/// connection manager with `stat_prefix: <prefix>`, the HCM fields
/// `hcm_fields` (lines indented 10 spaces, or empty), one virtual host for
/// every domain with `routes` (`- match:` entries indented 14 spaces) and
/// the router filter.
pub fn hcm_listener(port: &str, prefix: &str, hcm_fields: &str, routes: &str) -> String {
    format!(
        r#"
  - name: {prefix}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: ${{{port}}} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {prefix}
{hcm_fields}
          route_config:
            name: {prefix}
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{routes}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
    )
}

/// The admin listener on `${ADMIN}` and the opening of
/// `static_resources.listeners`: listeners (e.g. [`hcm_listener`]) follow,
/// then `\n  clusters:` and [`static_cluster`]s.
pub const ADMIN_AND_LISTENERS: &str = "
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: ${ADMIN} } }
static_resources:
  listeners:";

/// A `clusters:` entry: STATIC cluster `name` with one endpoint on
/// 127.0.0.1:`${<port>}` and a 1 s connect timeout.
pub fn static_cluster(name: &str, port: &str) -> String {
    format!(
        r#"
  - name: {name}
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: ${{{port}}} }} }} }} }}] }}]"#
    )
}
