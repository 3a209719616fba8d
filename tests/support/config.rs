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
