//! HTTP proxying, black-box: the real `sluice` between real clients and
//! real backends on loopback, over HTTP/1.1 and h2c.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use support::{get, get_h2, raw_exchange, Backend, Sluice};

const CONFIG: &str = r#"
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: ${ADMIN} } }
static_resources:
  listeners:
  - name: http
    address: { socket_address: { address: 127.0.0.1, port_value: ${HTTP} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          use_remote_address: true
          max_request_headers_kb: 8
          route_config:
            name: main
            response_headers_to_add:
            - header: { key: x-config-level, value: "yes" }
            virtual_hosts:
            - name: api
              domains: ["api.test", "api.test:*"]
              routes:
              - match: { prefix: "/green" }
                route: { cluster: green, prefix_rewrite: "/rewritten" }
              - match: { prefix: "/" }
                route: { cluster: blue }
            - name: all
              domains: ["*"]
              response_headers_to_add:
              - header: { key: x-vhost, value: all }
              routes:
              - match: { path: "/direct" }
                direct_response: { status: 418, body: { inline_string: "short and stout" } }
              - match: { prefix: "/moved" }
                redirect: { host_redirect: "new.test", response_code: FOUND }
              - match: { prefix: "/dead" }
                route: { cluster: dead }
              - match: { prefix: "/slow" }
                route: { cluster: blue, timeout: 0.3s, prefix_rewrite: "/delay/3000" }
              - match: { prefix: "/only-get", headers: [{ name: ":method", string_match: { exact: "GET" } }] }
                route: { cluster: green }
              - match: { prefix: "/blue" }
                route: { cluster: blue }
                request_headers_to_add:
                - header: { key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS%" }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: blue
    connect_timeout: 1s
    load_assignment:
      cluster_name: blue
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${BLUE} } } } }] }]
  - name: green
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: green
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${GREEN} } } } }] }]
  - name: dead
    connect_timeout: 1s
    load_assignment:
      cluster_name: dead
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${DEAD} } } } }] }]
"#;

struct World {
    sluice: Sluice,
    blue: Backend,
    green: Backend,
}

async fn world() -> World {
    let blue = Backend::start("blue").await;
    let green = Backend::start("green").await;
    let dead = support::free_port();
    let sluice = Sluice::start(
        CONFIG,
        &[
            ("BLUE", blue.port()),
            ("GREEN", green.port()),
            ("DEAD", dead),
        ],
    )
    .await;
    World {
        sluice,
        blue,
        green,
    }
}

#[tokio::test]
async fn routes_by_host_and_path_over_http1() {
    let w = world().await;
    let http = w.sluice.addr("HTTP");
    let reply = get(http, "api.test", "/anything").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echo().backend, "blue");
    assert_eq!(reply.header("x-config-level"), Some("yes"));

    let reply = get(http, "api.test:8080", "/green/x?q=1").await;
    let echo = reply.echo();
    assert_eq!(echo.backend, "green");
    assert_eq!(echo.path, "/rewritten/x?q=1");
    assert_eq!(echo.version, "HTTP/2.0", "green is an HTTP/2 cluster");
    assert_eq!(echo.headers["x-envoy-original-path"], "/green/x?q=1");
}

#[tokio::test]
async fn h2c_downstream_is_routed_the_same() {
    let w = world().await;
    let reply = get_h2(w.sluice.addr("HTTP"), "api.test", "/h2").await;
    assert_eq!(reply.status, 200);
    let echo = reply.echo();
    assert_eq!(echo.backend, "blue");
    assert_eq!(echo.version, "HTTP/1.1", "blue is an HTTP/1.1 cluster");
    assert_eq!(echo.headers["host"], "api.test");
}

#[tokio::test]
async fn proxy_adds_envoy_headers() {
    let w = world().await;
    let reply = get(w.sluice.addr("HTTP"), "other.test", "/blue").await;
    assert_eq!(reply.status, 200);
    let echo = reply.echo();
    // For a loopback peer Envoy appends the node's own address (its first
    // non-loopback interface address); tests/differential.rs compares it.
    let xff: std::net::IpAddr = echo.headers["x-forwarded-for"].parse().unwrap();
    assert!(xff.is_ipv4());
    assert_eq!(echo.headers["x-forwarded-proto"], "http");
    assert_eq!(echo.headers["x-request-id"].len(), 36);
    assert!(echo.headers["x-client"].starts_with("127.0.0.1:"));
    assert_eq!(echo.headers["x-envoy-expected-rq-timeout-ms"], "15000");
    assert!(reply.header("x-envoy-upstream-service-time").is_some());
    assert_eq!(reply.header("server"), Some("envoy"));
    assert_eq!(reply.header("x-vhost"), Some("all"));
}

#[tokio::test]
async fn direct_response_and_redirect() {
    let w = world().await;
    let http = w.sluice.addr("HTTP");
    let reply = get(http, "x", "/direct").await;
    assert_eq!(reply.status, 418);
    assert_eq!(reply.text(), "short and stout");
    let reply = get(http, "x", "/moved/here?a=b").await;
    assert_eq!(reply.status, 302);
    assert_eq!(
        reply.header("location"),
        Some("http://new.test/moved/here?a=b")
    );
}

#[tokio::test]
async fn no_route_is_404() {
    let w = world().await;
    let request = hyper::Request::post("/only-get")
        .header("host", "x")
        .body(Full::new(Bytes::from_static(b"body")))
        .unwrap();
    let reply = support::request(w.sluice.addr("HTTP"), request, false).await;
    assert_eq!(reply.status, 404);
    assert_eq!(w.sluice.stat("http.ingress.no_route").await, Some(1));
}

#[tokio::test]
async fn dead_backend_is_503_uf() {
    let w = world().await;
    let reply = get(w.sluice.addr("HTTP"), "x", "/dead").await;
    assert_eq!(reply.status, 503);
    assert!(
        reply
            .text()
            .starts_with("upstream connect error or disconnect/reset before headers"),
        "{}",
        reply.text()
    );
    assert_eq!(
        w.sluice.stat("cluster.dead.upstream_cx_connect_fail").await,
        Some(1)
    );
    // The proxy keeps serving.
    assert_eq!(get(w.sluice.addr("HTTP"), "x", "/blue").await.status, 200);
}

#[tokio::test]
async fn slow_backend_is_504_ut() {
    let w = world().await;
    let started = std::time::Instant::now();
    let reply = get(w.sluice.addr("HTTP"), "x", "/slow").await;
    assert_eq!(reply.status, 504);
    assert_eq!(reply.text(), "upstream request timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        w.sluice.stat("cluster.blue.upstream_rq_timeout").await,
        Some(1)
    );
}

#[tokio::test]
async fn malformed_request_is_400_and_proxy_keeps_serving() {
    let w = world().await;
    let http = w.sluice.addr("HTTP");
    let answer = raw_exchange(
        http,
        b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert_eq!(get(http, "x", "/blue").await.status, 200);
}

#[tokio::test]
async fn oversized_headers_are_431() {
    let w = world().await;
    let http = w.sluice.addr("HTTP");
    let big = "a".repeat(16 * 1024);
    let request = format!("GET /blue HTTP/1.1\r\nHost: x\r\nx-big: {big}\r\n\r\n");
    let answer = raw_exchange(http, request.as_bytes(), Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert_eq!(get(http, "x", "/blue").await.status, 200);
}

#[tokio::test]
async fn keep_alive_reuses_upstream_connections() {
    let w = world().await;
    let http = w.sluice.addr("HTTP");
    for _ in 0..5 {
        assert_eq!(get(http, "x", "/blue").await.status, 200);
    }
    assert_eq!(w.blue.requests.load(std::sync::atomic::Ordering::SeqCst), 5);
    assert!(
        w.blue.connections.load(std::sync::atomic::Ordering::SeqCst) <= 2,
        "sequential requests should reuse pooled upstream connections"
    );
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let w = world().await;
    let requests = "GET /blue HTTP/1.1\r\nHost: x\r\n\r\nGET /direct HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(
        w.sluice.addr("HTTP"),
        requests.as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    let first = answer.find("HTTP/1.1 200").expect("first response");
    let second = answer.find("HTTP/1.1 418").expect("second response");
    assert!(first < second);
    let _ = &w.green;
}
