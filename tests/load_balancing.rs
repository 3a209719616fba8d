//! Load balancing over HTTP, black-box: the real `sluice` in front of several
//! in-process backends. Covers ROUND_ROBIN (even spread), endpoint weights,
//! RANDOM, LEAST_REQUEST (avoids a busy host), RING_HASH and MAGLEV with a
//! header hash policy, source-IP hashing, STRICT_DNS and LOGICAL_DNS clusters
//! on `localhost`, a cluster with a dead endpoint (503 `UF`, others keep
//! serving) and 50/50 weighted clusters.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use support::{get, h2_connect, h2_send, Backend, EchoReply, Sluice};
use tokio::net::{TcpListener, TcpSocket};

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
          stat_prefix: lb
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: "@ACCESS_LOG@"
              log_format: { text_format_source: { inline_string: "%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_CLUSTER% %REQ(:PATH)%\n" } }
          route_config:
            name: main
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - { match: { prefix: "/rr" }, route: { cluster: rr } }
              - { match: { prefix: "/weighted-endpoints" }, route: { cluster: weighted } }
              - { match: { prefix: "/random" }, route: { cluster: random } }
              - { match: { prefix: "/least" }, route: { cluster: least } }
              - match: { prefix: "/ring" }
                route: { cluster: ring, hash_policy: [{ header: { header_name: x-user } }] }
              - match: { prefix: "/maglev" }
                route: { cluster: maglev, hash_policy: [{ header: { header_name: x-user } }] }
              - match: { prefix: "/source-ip" }
                route: { cluster: ring, hash_policy: [{ connection_properties: { source_ip: true } }] }
              - { match: { prefix: "/strict-dns" }, route: { cluster: strict_dns } }
              - { match: { prefix: "/logical-dns" }, route: { cluster: logical_dns } }
              - { match: { prefix: "/dead" }, route: { cluster: dead } }
              - match: { prefix: "/split" }
                route:
                  weighted_clusters:
                    clusters:
                    - { name: only_a, weight: 50 }
                    - { name: only_b, weight: 50 }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: rr
    connect_timeout: 1s
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: rr
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${A} } } }
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${B} } } }
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${C} } } }
  - name: weighted
    connect_timeout: 1s
    load_assignment:
      cluster_name: weighted
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${A} } } }
          load_balancing_weight: 3
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${B} } } }
          load_balancing_weight: 1
  - name: random
    connect_timeout: 1s
    lb_policy: RANDOM
    load_assignment:
      cluster_name: random
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${A} } } }
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${B} } } }
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${C} } } }
  - name: least
    connect_timeout: 1s
    lb_policy: LEAST_REQUEST
    least_request_lb_config: { choice_count: 4 }
    load_assignment:
      cluster_name: least
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${SLOW} } } }
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${A} } } }
  - name: ring
    connect_timeout: 1s
    lb_policy: RING_HASH
    load_assignment:
      cluster_name: ring
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${A} } } }
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${B} } } }
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${C} } } }
  - name: maglev
    connect_timeout: 1s
    lb_policy: MAGLEV
    load_assignment:
      cluster_name: maglev
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${A} } } }
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${B} } } }
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${C} } } }
  - name: strict_dns
    type: STRICT_DNS
    dns_lookup_family: V4_ONLY
    connect_timeout: 1s
    load_assignment:
      cluster_name: strict_dns
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: localhost, port_value: ${A} } } } }] }]
  - name: logical_dns
    type: LOGICAL_DNS
    dns_lookup_family: V4_ONLY
    connect_timeout: 1s
    load_assignment:
      cluster_name: logical_dns
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: localhost, port_value: ${B} } } } }] }]
  - name: dead
    connect_timeout: 1s
    load_assignment:
      cluster_name: dead
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${DEAD} } } } }] }]
  - name: only_a
    connect_timeout: 1s
    load_assignment:
      cluster_name: only_a
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${A} } } } }] }]
  - name: only_b
    connect_timeout: 1s
    load_assignment:
      cluster_name: only_b
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${B} } } } }] }]
"#;

struct World {
    sluice: Sluice,
    /// A port nothing listens on (connections are refused).
    _dead: support::PortReservation,
    access_log: std::path::PathBuf,
    _a: Backend,
    _b: Backend,
    _c: Backend,
    slow: SlowBackend,
    _log_dir: tempfile::TempDir,
}

async fn world() -> World {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let slow = SlowBackend::start().await;
    let log_dir = tempfile::tempdir().unwrap();
    let access_log = log_dir.path().join("access.log");
    let config = CONFIG.replace("@ACCESS_LOG@", access_log.to_str().unwrap());
    let dead = support::reserve_port();
    let sluice = Sluice::start(
        &config,
        &[
            ("A", a.port()),
            ("B", b.port()),
            ("C", c.port()),
            ("SLOW", slow.address.port()),
            ("DEAD", dead.port()),
        ],
    )
    .await;
    World {
        sluice,
        _dead: dead,
        access_log,
        _a: a,
        _b: b,
        _c: c,
        slow,
        _log_dir: log_dir,
    }
}

/// An HTTP/1.1 backend that accepts requests and answers none of them
/// within a test's lifetime: each request it holds is one active request.
struct SlowBackend {
    address: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SlowBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SlowBackend {
    async fn start() -> SlowBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        async {
                            tokio::time::sleep(Duration::from_secs(12)).await;
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"slow"),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        SlowBackend {
            address,
            requests,
            task,
        }
    }
}

/// Sends `count` GETs on one h2c connection (so one worker serves them all)
/// and counts which backend answered each.
async fn spread_on_one_connection(
    address: SocketAddr,
    path: &str,
    count: usize,
) -> BTreeMap<String, usize> {
    let mut sender = h2_connect(address).await;
    let mut seen = BTreeMap::new();
    for _ in 0..count {
        let request = Request::get(format!("http://lb.test{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let reply = h2_send(&mut sender, request).await.expect("reply");
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let echo: EchoReply = serde_json::from_slice(&reply.body).expect("echo");
        *seen.entry(echo.backend).or_insert(0) += 1;
    }
    seen
}

/// The backend that answers a GET with `x-user: <user>` on a fresh connection.
async fn backend_for_user(address: SocketAddr, path: &str, user: &str) -> String {
    let request = Request::get(path)
        .header("host", "lb.test")
        .header("x-user", user)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = support::request(address, request, false).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.echo().backend
}

/// GET over a fresh HTTP/1.1 connection whose source address is `source`.
async fn get_from(source: Ipv4Addr, address: SocketAddr, path: &str) -> String {
    tokio::time::timeout(Duration::from_secs(10), async move {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
        let stream = socket.connect(address).await.expect("connect");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = Request::get(path)
            .header("host", "lb.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice::<EchoReply>(&body).unwrap().backend
    })
    .await
    .expect("answered in time")
}

#[tokio::test]
async fn round_robin_spreads_evenly() {
    let w = world().await;
    let seen = spread_on_one_connection(w.sluice.addr("HTTP"), "/rr", 30).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (backend, count) in &seen {
        assert!((9..=11).contains(count), "{backend} got {count}: {seen:?}");
    }
}

#[tokio::test]
async fn endpoint_weights_split_about_three_to_one() {
    let w = world().await;
    let seen = spread_on_one_connection(w.sluice.addr("HTTP"), "/weighted-endpoints", 80).await;
    let (a, b) = (seen.get("a").copied(), seen.get("b").copied());
    assert_eq!(a.unwrap_or(0) + b.unwrap_or(0), 80, "{seen:?}");
    let a = a.unwrap_or(0);
    assert!((50..=70).contains(&a), "weight 3:1 gave {seen:?}");
}

#[tokio::test]
async fn random_reaches_every_backend() {
    let w = world().await;
    let seen = spread_on_one_connection(w.sluice.addr("HTTP"), "/random", 60).await;
    assert_eq!(
        seen.keys().map(String::as_str).collect::<Vec<_>>(),
        ["a", "b", "c"],
        "{seen:?}"
    );
}

#[tokio::test]
async fn least_request_avoids_a_busy_backend() {
    let w = world().await;
    let address = w.sluice.addr("HTTP");
    let mut in_flight = Vec::new();
    let send = |in_flight: &mut Vec<tokio::task::JoinHandle<()>>| {
        in_flight.push(tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(15), get(address, "lb.test", "/least"))
                    .await;
        }));
    };
    // Make the slow backend busy: requests until it holds one (while both
    // hosts are idle, a pick is a coin toss).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = 0;
    while w.slow.requests.load(Ordering::SeqCst) < 1 && sent < 40 && Instant::now() < deadline {
        send(&mut in_flight);
        sent += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let slow_before = w.slow.requests.load(Ordering::SeqCst);
    assert!(slow_before >= 1, "the slow backend never got busy");
    // Now 20 more: with requests outstanding on the slow host and none on
    // the fast one, a pick of 4 random hosts lands only on the slow one
    // with probability 1/16, so nearly all go to the fast host (round robin
    // would send half of them to the slow one).
    let mut fast = 0;
    for _ in 0..20 {
        let reply = get(address, "lb.test", "/least/fast");
        match tokio::time::timeout(Duration::from_millis(1500), reply).await {
            Ok(reply) if reply.status == 200 => fast += 1,
            _ => {}
        }
    }
    let slow_after = w.slow.requests.load(Ordering::SeqCst);
    assert!(
        fast >= 14,
        "only {fast} of 20 went to the idle host; the busy host got {}",
        slow_after - slow_before
    );
    for task in in_flight {
        task.abort();
    }
}

async fn hash_is_sticky_and_spreads(path: &str) {
    let w = world().await;
    let address = w.sluice.addr("HTTP");
    let mut owners: HashMap<String, String> = HashMap::new();
    for i in 0..20 {
        let user = format!("user-{i}");
        owners.insert(user.clone(), backend_for_user(address, path, &user).await);
    }
    // Each user sticks to its backend, on new connections too.
    for i in (0..20).step_by(3) {
        let user = format!("user-{i}");
        for _ in 0..3 {
            assert_eq!(
                backend_for_user(address, path, &user).await,
                owners[&user],
                "{user} moved"
            );
        }
    }
    let distinct: std::collections::BTreeSet<_> = owners.values().collect();
    assert!(distinct.len() >= 2, "20 users all on {distinct:?}");
}

#[tokio::test]
async fn ring_hash_on_header_is_sticky_and_spreads() {
    hash_is_sticky_and_spreads("/ring").await;
}

#[tokio::test]
async fn maglev_on_header_is_sticky_and_spreads() {
    hash_is_sticky_and_spreads("/maglev").await;
}

#[tokio::test]
async fn source_ip_hash_is_sticky_per_client_address() {
    let w = world().await;
    let address = w.sluice.addr("HTTP");
    let mut owners = BTreeMap::new();
    for last in 1..=12u8 {
        let source = Ipv4Addr::new(127, 0, 0, last);
        let first = get_from(source, address, "/source-ip").await;
        for _ in 0..2 {
            assert_eq!(
                get_from(source, address, "/source-ip").await,
                first,
                "{source} moved"
            );
        }
        owners.insert(source, first);
    }
    let distinct: std::collections::BTreeSet<_> = owners.values().collect();
    assert!(distinct.len() >= 2, "12 source IPs all on {distinct:?}");
}

#[tokio::test]
async fn strict_and_logical_dns_clusters_resolve_localhost() {
    let w = world().await;
    let address = w.sluice.addr("HTTP");
    let reply = get(address, "lb.test", "/strict-dns").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.echo().backend, "a");
    let reply = get(address, "lb.test", "/logical-dns").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.echo().backend, "b");
}

#[tokio::test]
async fn dead_endpoint_is_503_uf_while_other_clusters_serve() {
    let w = world().await;
    let address = w.sluice.addr("HTTP");
    let reply = get(address, "lb.test", "/dead").await;
    assert_eq!(reply.status, 503);
    assert_eq!(get(address, "lb.test", "/rr").await.status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut log = String::new();
    while Instant::now() < deadline {
        log = std::fs::read_to_string(&w.access_log).unwrap_or_default();
        if log.lines().count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(log.lines().any(|l| l == "503 UF dead /dead"), "{log}");
    assert!(log.lines().any(|l| l == "200 - rr /rr"), "{log}");
    assert_eq!(
        w.sluice.stat("cluster.dead.upstream_cx_connect_fail").await,
        Some(1)
    );
}

#[tokio::test]
async fn weighted_clusters_half_and_half_reach_both() {
    let w = world().await;
    let seen = spread_on_one_connection(w.sluice.addr("HTTP"), "/split", 40).await;
    assert_eq!(
        seen.keys().map(String::as_str).collect::<Vec<_>>(),
        ["a", "b"],
        "{seen:?}"
    );
    assert!(
        seen.values().all(|n| *n >= 5),
        "40 requests 50/50 gave {seen:?}"
    );
}
