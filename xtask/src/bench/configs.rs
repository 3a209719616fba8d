//! Config files for every peer: the templates in `xtask/bench/` (shown in the
//! repository, equivalent across peers) filled with ports and paths, and the
//! generated Envoy v3 configs for `routes-1k` and `clusters-10k`.

use std::fmt::Write as _;

use super::ports::{port, Slot};

pub const BACKEND_NGINX: &str = include_str!("../../bench/backend-nginx.conf");
pub const PROXY_HTTP_YAML: &str = include_str!("../../bench/proxy-http.yaml");
pub const PROXY_TCP_YAML: &str = include_str!("../../bench/proxy-tcp.yaml");
pub const NGINX_PROXY: &str = include_str!("../../bench/nginx-proxy.conf");
pub const NGINX_TCP: &str = include_str!("../../bench/nginx-tcp.conf");
pub const HAPROXY_HTTP: &str = include_str!("../../bench/haproxy-http.cfg");
pub const HAPROXY_TCP: &str = include_str!("../../bench/haproxy-tcp.cfg");
pub const PROXY_GRPC_YAML: &str = include_str!("../../bench/proxy-grpc.yaml");
pub const NGINX_GRPC: &str = include_str!("../../bench/nginx-grpc.conf");
pub const HAPROXY_GRPC: &str = include_str!("../../bench/haproxy-grpc.cfg");

/// The gRPC method the `grpc` load calls, and the request and reply
/// messages (length-prefixed gRPC frames of a small protobuf message).
pub const GRPC_PATH: &str = "/bench.Echo/Say";
pub const GRPC_REQUEST_FILE: &str = "grpc-request";
pub const GRPC_REPLY_FILE: &str = "grpc-reply";

/// A gRPC frame (uncompressed) holding a protobuf message whose field 1 is
/// the string `text`.
pub fn grpc_frame(text: &str) -> Vec<u8> {
    assert!(text.len() < 128, "one-byte protobuf length");
    let mut message = vec![0x0a, text.len() as u8];
    message.extend_from_slice(text.as_bytes());
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    frame
}

/// Writes the request and reply messages of the `grpc` scenario into `dir`.
pub fn write_grpc_messages(dir: &std::path::Path) -> Result<(), String> {
    for (file, text) in [
        (GRPC_REQUEST_FILE, "hello"),
        (GRPC_REPLY_FILE, "hello world"),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, grpc_frame(text)).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Number of routes in `routes-1k` and the index of the one that matches.
pub const ROUTE_COUNT: usize = 1000;
pub const MATCHING_ROUTE: usize = ROUTE_COUNT - 3;
/// Number of clusters in `clusters-10k`; the route targets the last one.
pub const CLUSTER_COUNT: usize = 10_000;

/// Replaces every `{KEY}` in `template`; a placeholder left unfilled is a bug
/// in the harness and panics.
pub fn render(template: &str, values: &[(&str, String)]) -> String {
    let mut text = template.to_string();
    for (key, value) in values {
        text = text.replace(&format!("{{{key}}}"), value);
    }
    if let Some(start) = text.find("{DIR}").or_else(|| text.find("_PORT}")) {
        panic!("unfilled placeholder near byte {start} in a bench template");
    }
    text
}

/// The standard values every template uses.
pub fn standard_values(
    dir: &str,
    workers: usize,
    backend_port: u16,
) -> Vec<(&'static str, String)> {
    vec![
        ("DIR", dir.to_string()),
        ("WORKERS", workers.to_string()),
        ("BACKEND_PORT", backend_port.to_string()),
        ("BACKEND_H2_PORT", port(Slot::BackendH2).to_string()),
        ("BACKEND_GRPC_PORT", port(Slot::BackendGrpc).to_string()),
        ("PROXY_PORT", port(Slot::Proxy).to_string()),
        ("ADMIN_PORT", port(Slot::Admin).to_string()),
    ]
}

/// Path and header the `routes-1k` load sends: they match route
/// [`MATCHING_ROUTE`] only.
pub fn routes_1k_request() -> (String, (String, String)) {
    (
        format!("/api/v1/service{MATCHING_ROUTE}/items/42"),
        ("x-tenant".to_string(), format!("tenant-{MATCHING_ROUTE}")),
    )
}

/// The http config with [`ROUTE_COUNT`] routes, each a regex path match plus
/// an exact header match, then a catch-all; only [`MATCHING_ROUTE`] matches
/// the benchmark's request before the catch-all would.
pub fn routes_1k_yaml() -> String {
    let mut routes = String::new();
    for i in 0..ROUTE_COUNT - 1 {
        let _ = write!(
            routes,
            "              - match:\n                  safe_regex: {{ regex: \"^/api/v1/service{i}/[a-z]+/[0-9]+$\" }}\n                  headers:\n                  - name: x-tenant\n                    string_match: {{ exact: \"tenant-{i}\" }}\n                route: {{ cluster: backend }}\n"
        );
    }
    routes.push_str("              - match: { prefix: \"/\" }\n                direct_response: { status: 404 }\n");
    PROXY_HTTP_YAML.replace(
        "              - match: { prefix: \"/\" }\n                route: { cluster: backend }\n",
        &routes,
    )
}

/// The http config with [`CLUSTER_COUNT`] STATIC clusters (all pointing at
/// the backend); the single route targets the last one.
pub fn clusters_10k_yaml() -> String {
    let last = format!("backend_{}", CLUSTER_COUNT - 1);
    let head = PROXY_HTTP_YAML
        .split("  clusters:\n")
        .next()
        .expect("template has a clusters section")
        .replace(
            "route: { cluster: backend }",
            &format!("route: {{ cluster: {last} }}"),
        );
    let mut yaml = head;
    yaml.push_str("  clusters:\n");
    for i in 0..CLUSTER_COUNT {
        let _ = write!(
            yaml,
            "  - name: backend_{i}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: backend_{i}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {{BACKEND_PORT}} }}\n"
        );
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_without_leftover_placeholders() {
        super::super::ports::reserve().unwrap();
        let values = standard_values("/tmp/x", 1, port(Slot::Backend));
        for template in [
            BACKEND_NGINX,
            PROXY_HTTP_YAML,
            PROXY_TCP_YAML,
            NGINX_TCP,
            PROXY_GRPC_YAML,
            NGINX_GRPC,
            HAPROXY_GRPC,
        ] {
            let text = render(template, &values);
            assert!(!text.contains("{DIR}") && !text.contains("_PORT}"));
        }
        let mut with_flags = values.clone();
        with_flags.push(("LISTEN_FLAGS", String::new()));
        with_flags.push(("BIND_FLAGS", " proto h2".into()));
        let proxy = port(Slot::Proxy);
        assert!(render(NGINX_PROXY, &with_flags).contains(&format!("listen 127.0.0.1:{proxy};")));
        assert!(
            render(HAPROXY_HTTP, &with_flags).contains(&format!("bind 127.0.0.1:{proxy} proto h2"))
        );
    }

    #[test]
    fn grpc_frames_are_length_prefixed_protobuf_strings() {
        assert_eq!(
            grpc_frame("hi"),
            [0, 0, 0, 0, 4, 0x0a, 2, b'h', b'i'],
            "flag 0, big-endian length 4, field 1 (wire type 2) of length 2"
        );
    }

    #[test]
    #[should_panic(expected = "unfilled placeholder")]
    fn unfilled_placeholder_panics() {
        render(PROXY_HTTP_YAML, &[]);
    }

    #[test]
    fn routes_1k_has_every_route_and_a_catch_all() {
        let yaml = routes_1k_yaml();
        assert_eq!(yaml.matches("safe_regex:").count(), ROUTE_COUNT - 1);
        assert!(yaml.contains(&format!("tenant-{MATCHING_ROUTE}\"")));
        assert!(yaml.contains("direct_response: { status: 404 }"));
        assert!(!yaml.contains("route: { cluster: backend }\n          http_filters"));
    }

    #[test]
    fn clusters_10k_routes_to_the_last_cluster() {
        let yaml = clusters_10k_yaml();
        assert_eq!(yaml.matches("type: STATIC").count(), CLUSTER_COUNT);
        assert!(yaml.contains("route: { cluster: backend_9999 }"));
    }
}
