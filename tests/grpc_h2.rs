//! HTTP/2 and gRPC, black-box: h2c listeners (`codec_type` HTTP2, HTTP1,
//! AUTO), many streams on one downstream connection, connection reuse to an
//! HTTP/2 upstream cluster, gRPC requests whose trailers come back through
//! Sluice, the `grpc: {}` route matcher, and gRPC-shaped local replies
//! (trailers-only `grpc-status` 12 for no route, 14 for a dead cluster);
//! streams of one connection progress independently (they share the
//! connection's task) and a stream whose client goes away before the
//! response is still finished and counted.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use support::{
    get, get_h2, grpc_frame, h2_connect, h2_send, hcm_listener, raw_exchange, Backend, EchoReply,
    FullReply, GrpcBackend, Sluice, ADMIN_AND_LISTENERS,
};

fn listener(port: &str, prefix: &str, codec: &str) -> String {
    let routes = r#"              - match: { prefix: "/svc.Echo/" }
                route: { cluster: grpc }
              - match: { prefix: "/svc.Dead/" }
                route: { cluster: dead }
              - match: { prefix: "/match", grpc: {} }
                route: { cluster: grpc }
              - match: { prefix: "/match" }
                route: { cluster: h1_echo }
              - match: { prefix: "/h2-upstream" }
                route: { cluster: h2_echo }
              - match: { prefix: "/echo" }
                route: { cluster: h1_echo }
              - match: { prefix: "/delay/" }
                route: { cluster: h1_echo }"#;
    hcm_listener(
        port,
        prefix,
        &format!("          codec_type: {codec}"),
        routes,
    )
}

const CLUSTERS: &str = r#"
  clusters:
  - name: grpc
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: grpc
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${GRPC} } } } }] }]
  - name: h2_echo
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: h2_echo
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${H2_ECHO} } } } }] }]
  - name: h1_echo
    connect_timeout: 1s
    load_assignment:
      cluster_name: h1_echo
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${H1_ECHO} } } } }] }]
  - name: dead
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: dead
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${DEAD} } } } }] }]
"#;

fn config() -> String {
    let mut yaml = String::from(ADMIN_AND_LISTENERS);
    yaml += &listener("H2", "h2only", "HTTP2");
    yaml += &listener("H1", "h1only", "HTTP1");
    yaml += &listener("AUTO", "auto", "AUTO");
    yaml += CLUSTERS;
    yaml
}

struct World {
    sluice: Sluice,
    /// A port nothing listens on (connections are refused).
    _dead: support::PortReservation,
    grpc: GrpcBackend,
    h2_echo: Backend,
    h1_echo: Backend,
}

async fn world() -> World {
    let grpc = GrpcBackend::start("grpc").await;
    let h2_echo = Backend::start("h2-echo").await;
    let h1_echo = Backend::start("h1-echo").await;
    let dead = support::reserve_port();
    let sluice = Sluice::start(
        &config(),
        &[
            ("GRPC", grpc.port()),
            ("H2_ECHO", h2_echo.port()),
            ("H1_ECHO", h1_echo.port()),
            ("DEAD", dead.port()),
        ],
    )
    .await;
    World {
        sluice,
        _dead: dead,
        grpc,
        h2_echo,
        h1_echo,
    }
}

fn grpc_request(path: &str, message: &[u8]) -> Request<Full<Bytes>> {
    Request::post(format!("http://grpc.test{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(grpc_frame(message)))
        .unwrap()
}

async fn send_grpc(address: std::net::SocketAddr, path: &str) -> FullReply {
    let mut sender = h2_connect(address).await;
    h2_send(&mut sender, grpc_request(path, b"hello"))
        .await
        .expect("grpc reply")
}

fn echo_of(reply: &FullReply) -> EchoReply {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not an echo ({e}): {:?}", reply.body))
}

#[tokio::test]
async fn http2_listener_serves_prior_knowledge_h2c() {
    let w = world().await;
    let reply = get_h2(w.sluice.addr("H2"), "h2.test", "/echo/one").await;
    assert_eq!(reply.status, 200);
    let echo = reply.echo();
    assert_eq!(echo.backend, "h1-echo");
    assert_eq!(echo.path, "/echo/one");
    assert_eq!(echo.headers["host"], "h2.test");
}

#[tokio::test]
async fn http2_listener_does_not_serve_http1() {
    let w = world().await;
    let got = raw_exchange(
        w.sluice.addr("H2"),
        b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(!got.starts_with("HTTP/1.1 200"), "HTTP/1.1 served: {got}");
    assert_eq!(w.h1_echo.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn many_concurrent_streams_on_one_connection_are_all_answered() {
    let w = world().await;
    let sender = h2_connect(w.sluice.addr("H2")).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let mut sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            let request = Request::get(format!("http://h2.test/echo/{i}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let reply = h2_send(&mut sender, request).await?;
            let echo: EchoReply = serde_json::from_slice(&reply.body).map_err(|e| e.to_string())?;
            if reply.status == 200 && echo.path == format!("/echo/{i}") {
                Ok(())
            } else {
                Err(format!("stream {i}: {} {:?}", reply.status, echo.path))
            }
        }));
    }
    let mut failures = Vec::new();
    for task in tasks {
        if let Err(e) = task.await.unwrap() {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        failures
    );
    assert_eq!(
        w.sluice.stat("http.h2only.downstream_cx_total").await,
        Some(1)
    );
    assert_eq!(
        w.sluice.stat("http.h2only.downstream_rq_total").await,
        Some(100)
    );
}

#[tokio::test]
async fn http2_upstream_multiplexes_requests_on_one_connection() {
    let w = world().await;
    let sender = h2_connect(w.sluice.addr("H2")).await;
    // One request first so the upstream connection exists, then 30 at once.
    let first = h2_send(
        &mut sender.clone(),
        Request::get("http://h2.test/h2-upstream/first")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(echo_of(&first).version, "HTTP/2.0");
    let mut tasks = Vec::new();
    for i in 0..30 {
        let mut sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            let request = Request::get(format!("http://h2.test/h2-upstream/{i}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            h2_send(&mut sender, request).await.map(|r| r.status)
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(200));
    }
    assert_eq!(w.h2_echo.requests.load(Ordering::SeqCst), 31);
    assert_eq!(
        w.h2_echo.connections.load(Ordering::SeqCst),
        1,
        "31 requests from one worker should share one HTTP/2 upstream connection"
    );
}

#[tokio::test]
async fn grpc_trailers_come_back_through_the_proxy() {
    let w = world().await;
    for listener in ["H2", "AUTO"] {
        let reply = send_grpc(w.sluice.addr(listener), "/svc.Echo/Say").await;
        assert_eq!(reply.status, 200, "{listener}");
        assert_eq!(reply.header("content-type"), Some("application/grpc"));
        assert_eq!(
            reply.header("x-seen-content-type"),
            Some("application/grpc")
        );
        assert_eq!(
            reply.header("x-seen-te"),
            Some("trailers"),
            "te: trailers forwarded"
        );
        assert_eq!(reply.body, grpc_frame(b"grpc"), "{listener}");
        assert_eq!(
            reply.trailer("grpc-status"),
            Some("0"),
            "{listener}: {reply:?}"
        );
        assert_eq!(reply.trailer("grpc-message"), Some("ok"));
        assert_eq!(reply.trailer("x-trailer-backend"), Some("grpc"));
    }
    assert_eq!(w.grpc.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn grpc_route_match_only_matches_grpc_requests() {
    let w = world().await;
    let address = w.sluice.addr("AUTO");
    let reply = send_grpc(address, "/match/Call").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.trailer("x-trailer-backend"), Some("grpc"));

    // Same path, not gRPC: falls through to the next route.
    let mut sender = h2_connect(address).await;
    let plain = Request::post("http://grpc.test/match/Call")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let reply = h2_send(&mut sender, plain).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(echo_of(&reply).backend, "h1-echo");
    assert_eq!(w.grpc.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn grpc_without_a_route_is_trailers_only_unimplemented() {
    let w = world().await;
    let reply = send_grpc(w.sluice.addr("H2"), "/no.Such/Method").await;
    assert_eq!(reply.status, 200, "gRPC local replies are HTTP 200");
    assert_eq!(reply.header("content-type"), Some("application/grpc"));
    assert_eq!(
        reply.header_or_trailer("grpc-status"),
        Some("12"),
        "{reply:?}"
    );
    // The same request without gRPC is a plain 404.
    let reply = get_h2(w.sluice.addr("H2"), "grpc.test", "/no.Such/Method").await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn grpc_to_a_dead_cluster_is_trailers_only_unavailable() {
    let w = world().await;
    let reply = send_grpc(w.sluice.addr("H2"), "/svc.Dead/Call").await;
    assert_eq!(reply.status, 200, "gRPC local replies are HTTP 200");
    assert_eq!(reply.header("content-type"), Some("application/grpc"));
    assert_eq!(
        reply.header_or_trailer("grpc-status"),
        Some("14"),
        "{reply:?}"
    );
    let message = reply.header_or_trailer("grpc-message").unwrap_or_default();
    assert!(
        message.starts_with("upstream connect error"),
        "grpc-message: {message}"
    );
}

#[tokio::test]
async fn http1_listener_rejects_an_h2c_preface() {
    let w = world().await;
    let got = raw_exchange(
        w.sluice.addr("H1"),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        got.is_empty() || got.starts_with("HTTP/1.1 4"),
        "an HTTP1 listener answered an h2 preface with: {got:?}"
    );
    // HTTP/1.1 still works there.
    let reply = get(w.sluice.addr("H1"), "h1.test", "/echo").await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn auto_listener_serves_http1_and_h2c() {
    let w = world().await;
    let address = w.sluice.addr("AUTO");
    let reply = get(address, "auto.test", "/echo/h1").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echo().path, "/echo/h1");
    let reply = get_h2(address, "auto.test", "/echo/h2").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echo().path, "/echo/h2");
    assert_eq!(
        w.sluice.stat("http.auto.downstream_cx_http1_total").await,
        Some(1)
    );
    assert_eq!(
        w.sluice.stat("http.auto.downstream_cx_http2_total").await,
        Some(1)
    );
}

fn get_request(path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://h2.test{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn a_slow_stream_does_not_hold_up_the_other_streams_of_its_connection() {
    let w = world().await;
    let sender = h2_connect(w.sluice.addr("H2")).await;
    let mut slow_sender = sender.clone();
    let slow =
        tokio::spawn(async move { h2_send(&mut slow_sender, get_request("/delay/1500")).await });
    // The slow stream is in flight (its upstream request arrived) …
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while w.h1_echo.requests.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slow request never reached the backend"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // … while ten more on the same connection are answered.
    let started = std::time::Instant::now();
    for i in 0..10 {
        let mut sender = sender.clone();
        let reply = h2_send(&mut sender, get_request(&format!("/echo/{i}")))
            .await
            .expect("fast stream answered");
        assert_eq!(reply.status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "fast streams waited for the slow one: {:?}",
        started.elapsed()
    );
    assert!(
        !slow.is_finished(),
        "the slow stream should still be waiting"
    );
    let reply = slow.await.unwrap().expect("slow stream answered");
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn a_stream_whose_connection_closes_is_still_finished_and_counted() {
    let w = world().await;
    let stream = tokio::net::TcpStream::connect(w.sluice.addr("H2"))
        .await
        .expect("connect");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let request =
        tokio::spawn(async move { h2_send(&mut sender, get_request("/delay/700")).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while w.h1_echo.requests.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "request never reached the backend"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The client goes away while the upstream is still answering.
    connection.abort();
    request.abort();
    // The stream is finished (as not completed) although it never got a
    // response: no request stays counted active, and the connection is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let active = w.sluice.stat("http.h2only.downstream_rq_active").await;
        let cx_active = w.sluice.stat("http.h2only.downstream_cx_active").await;
        if active == Some(0) && cx_active == Some(0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream never finished: rq_active {active:?}, cx_active {cx_active:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        w.sluice.stat("http.h2only.downstream_rq_total").await,
        Some(1)
    );
    // The proxy still serves.
    let reply = get_h2(w.sluice.addr("H2"), "h2.test", "/echo/after").await;
    assert_eq!(reply.status, 200);
}
