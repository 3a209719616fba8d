//! End-to-end tests of clusters against real loopback servers (127.0.0.1
//! only): pooling, HTTP/2 multiplexing, connect failures, stats, DNS
//! clusters, config errors and `/clusters` output.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, LbConfig, LbPolicy as ProtoLbPolicy,
    MaglevLbConfig,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address, Address, Http2ProtocolOptions, SocketAddress, TransportSocket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::google::protobuf::{Duration as ProtoDuration, UInt32Value, UInt64Value};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::http::body;
use crate::stats::Store;

fn endpoint(address: &str, port: u32, weight: Option<u32>) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: address.to_string(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })),
        load_balancing_weight: weight.map(|value| UInt32Value { value }),
        ..Default::default()
    }
}

fn cluster(name: &str, kind: DiscoveryType, endpoints: Vec<LbEndpoint>) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(kind as i32)),
        connect_timeout: Some(ProtoDuration {
            seconds: 1,
            nanos: 0,
        }),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: endpoints,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn static_cluster(name: &str, addresses: &[SocketAddr]) -> Cluster {
    let endpoints = addresses
        .iter()
        .map(|a| endpoint(&a.ip().to_string(), a.port() as u32, None))
        .collect();
    cluster(name, DiscoveryType::Static, endpoints)
}

fn compile_one(cluster: Cluster, store: &Store) -> (ClusterManager, Arc<UpstreamCluster>) {
    let name = cluster.name.clone();
    let manager = ClusterManager::compile(&[cluster], store).expect("valid cluster");
    let upstream = manager.get(&name).unwrap().clone();
    (manager, upstream)
}

fn compile_errors(clusters: &[Cluster]) -> String {
    ClusterManager::compile(clusters, &Store::new())
        .expect_err("invalid config")
        .to_string()
}

/// An HTTP server on 127.0.0.1 answering "hello" after `delay`, counting
/// accepted connections.
async fn http_server(http2: bool, delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let authority = request
                    .uri()
                    .authority()
                    .map(|a| a.to_string())
                    .or_else(|| {
                        request
                            .headers()
                            .get("host")
                            .map(|h| h.to_str().unwrap().to_string())
                    })
                    .unwrap_or_default();
                async move {
                    tokio::time::sleep(delay).await;
                    let response = http::Response::builder()
                        .header("x-seen-authority", authority)
                        .body(Full::new(Bytes::from_static(b"hello")))
                        .unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            let io = TokioIo::new(stream);
            tokio::spawn(async move {
                if http2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    (address, accepted)
}

fn get(path: &str) -> http::Request<body::Body> {
    http::Request::builder()
        .uri(path)
        .header("host", "backend.test")
        .body(body::empty())
        .unwrap()
}

async fn read_body(response: http::Response<UpstreamBody>) -> Bytes {
    response.into_body().collect().await.unwrap().to_bytes()
}

/// Waits (bounded) until `condition` holds.
async fn eventually(mut condition: impl FnMut() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached within 1s");
}

#[tokio::test]
async fn http1_pool_reuses_one_connection_for_sequential_requests() {
    let (address, accepted) = http_server(false, Duration::ZERO).await;
    let store = Store::new();
    let (_manager, backend) = compile_one(static_cluster("backend", &[address]), &store);
    for _ in 0..3 {
        let host = backend.choose_host(None).expect("a host");
        let response = backend.send(&host, get("/x")).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-seen-authority"], "backend.test");
        assert_eq!(read_body(response).await, "hello");
        eventually(|| host.pool().idle_count() == 1).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let counter = |name: &str| store.counter(&format!("cluster.backend.{name}")).value();
    assert_eq!(counter("upstream_cx_total"), 1);
    assert_eq!(counter("upstream_cx_http1_total"), 1);
    assert_eq!(counter("upstream_rq_total"), 3);
    assert_eq!(counter("upstream_rq_2xx"), 3);
    assert_eq!(counter("upstream_rq_200"), 3);
    assert_eq!(counter("upstream_rq_completed"), 3);
    assert_eq!(store.gauge("cluster.backend.upstream_rq_active").value(), 0);
    assert_eq!(store.gauge("cluster.backend.upstream_cx_active").value(), 1);
    assert_eq!(
        store.histogram("cluster.backend.upstream_rq_time").count(),
        3
    );
    let host = backend.choose_host(None).unwrap();
    assert_eq!(HostStats::get(&host.stats().rq_success), 3);
    assert_eq!(HostStats::get(&host.stats().rq_total), 3);
}

#[tokio::test]
async fn http1_max_requests_per_connection_opens_new_connections() {
    let (address, accepted) = http_server(false, Duration::ZERO).await;
    let mut config = static_cluster("backend", &[address]);
    #[allow(deprecated)]
    {
        config.max_requests_per_connection = Some(UInt32Value { value: 2 });
    }
    let store = Store::new();
    let (_manager, backend) = compile_one(config, &store);
    let host = backend.choose_host(None).unwrap();
    for _ in 0..3 {
        let response = backend.send(&host, get("/")).await.unwrap();
        read_body(response).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(
        store
            .counter("cluster.backend.upstream_cx_max_requests")
            .value(),
        1
    );
}

#[tokio::test]
async fn request_on_a_connection_the_server_closed_goes_to_a_fresh_one() {
    // Answers one request per connection, then closes without saying so.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    });
    let (_manager, backend) = compile_one(static_cluster("backend", &[address]), &Store::new());
    let host = backend.choose_host(None).unwrap();
    for _ in 0..2 {
        let response = backend.send(&host, get("/")).await.expect("served");
        assert_eq!(read_body(response).await, "ok");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn http2_multiplexes_concurrent_requests_on_one_connection() {
    let (address, accepted) = http_server(true, Duration::from_millis(100)).await;
    let mut config = static_cluster("h2", &[address]);
    #[allow(deprecated)]
    {
        config.http2_protocol_options = Some(Http2ProtocolOptions::default());
    }
    let store = Store::new();
    let (_manager, backend) = compile_one(config, &store);
    assert_eq!(backend.protocol(), UpstreamProtocol::Http2);
    let mut requests = Vec::new();
    for _ in 0..5 {
        let backend = backend.clone();
        requests.push(tokio::spawn(async move {
            let host = backend.choose_host(None).unwrap();
            let response = backend.send(&host, get("/")).await.unwrap();
            assert_eq!(response.version(), http::Version::HTTP_2);
            assert_eq!(response.headers()["x-seen-authority"], "backend.test");
            read_body(response).await
        }));
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), "hello");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(
        store.counter("cluster.h2.upstream_cx_http2_total").value(),
        1
    );
    assert_eq!(store.counter("cluster.h2.upstream_rq_200").value(), 5);
}

#[tokio::test]
async fn refused_connection_is_a_connect_failure() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = unused.local_addr().unwrap();
    drop(unused);
    let store = Store::new();
    let (_manager, backend) = compile_one(static_cluster("backend", &[address]), &store);
    let host = backend.choose_host(None).unwrap();
    let error = backend.send(&host, get("/")).await.unwrap_err();
    assert!(
        matches!(error, UpstreamError::ConnectFailed(_)),
        "{error:?}"
    );
    assert_eq!(error.response_flag().short_code(), "UF");
    assert_eq!(
        error.transport_failure_reason(),
        "delayed connect error: 111"
    );
    assert_eq!(
        store
            .counter("cluster.backend.upstream_cx_connect_fail")
            .value(),
        1
    );
    assert_eq!(HostStats::get(&host.stats().cx_connect_fail), 1);
    assert_eq!(HostStats::get(&host.stats().rq_error), 1);
    assert_eq!(store.gauge("cluster.backend.upstream_rq_active").value(), 0);
    let tcp = backend.connect_tcp(&host).await.unwrap_err();
    assert!(matches!(tcp, UpstreamError::ConnectFailed(_)));
}

#[tokio::test]
async fn connect_timeout_against_a_full_backlog() {
    // A loopback listener with backlog 0 that never accepts: once its queue
    // is full the kernel drops further SYNs and connects hang.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let address = socket.local_addr().unwrap().as_socket().unwrap();
    let mut held = Vec::new();
    let mut full = false;
    for _ in 0..8 {
        let attempt = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(address),
        );
        match attempt.await {
            Ok(Ok(stream)) => held.push(stream),
            _ => {
                full = true;
                break;
            }
        }
    }
    assert!(full, "the backlog never filled up");
    let mut config = static_cluster("slow", &[address]);
    config.connect_timeout = Some(ProtoDuration {
        seconds: 0,
        nanos: 100_000_000,
    });
    let store = Store::new();
    let (_manager, backend) = compile_one(config, &store);
    let host = backend.choose_host(None).unwrap();
    let error = backend.send(&host, get("/")).await.unwrap_err();
    assert!(matches!(error, UpstreamError::ConnectTimeout), "{error:?}");
    assert_eq!(error.response_flag().short_code(), "UF");
    assert_eq!(
        store
            .counter("cluster.slow.upstream_cx_connect_timeout")
            .value(),
        1
    );
    assert_eq!(
        store
            .counter("cluster.slow.upstream_cx_connect_fail")
            .value(),
        1
    );
}

#[tokio::test]
async fn tcp_connections_count_while_open() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buffer = [0u8; 4];
        stream.read_exact(&mut buffer).await.unwrap();
        stream.write_all(&buffer).await.unwrap();
    });
    let store = Store::new();
    let (_manager, backend) = compile_one(static_cluster("tcp", &[address]), &store);
    let host = backend.choose_host(None).unwrap();
    let mut stream = backend.connect_tcp(&host).await.unwrap();
    assert_eq!(store.gauge("cluster.tcp.upstream_cx_active").value(), 1);
    stream.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
    drop(stream);
    assert_eq!(store.gauge("cluster.tcp.upstream_cx_active").value(), 0);
    assert_eq!(store.counter("cluster.tcp.upstream_cx_destroy").value(), 1);
    assert_eq!(HostStats::get(&host.stats().cx_total), 1);
}

#[tokio::test]
async fn strict_dns_cluster_resolves_localhost_and_serves() {
    let (address, _) = http_server(false, Duration::ZERO).await;
    let mut config = cluster(
        "dns",
        DiscoveryType::StrictDns,
        vec![endpoint("localhost", address.port() as u32, None)],
    );
    #[allow(deprecated)]
    {
        config.dns_lookup_family = DnsLookupFamily::V4Only as i32;
    }
    let store = Store::new();
    let (manager, backend) = compile_one(config, &store);
    assert!(!backend.is_initialized());
    assert!(
        backend.choose_host(None).is_none(),
        "no hosts before resolution"
    );
    let versions = backend.subscribe();
    manager.start();
    assert!(manager.wait_initialized(Duration::from_secs(5)).await);
    assert!(versions.has_changed().unwrap());
    let membership = backend.membership();
    let hosts: Vec<SocketAddr> = membership.hosts().iter().map(|h| h.address()).collect();
    assert_eq!(hosts, vec![address]);
    assert_eq!(membership.hosts()[0].hostname(), "localhost");
    assert_eq!(backend.healthy_endpoints(), vec![(address, 1)]);
    let host = backend.choose_host(None).unwrap();
    let response = backend.send(&host, get("/")).await.unwrap();
    assert_eq!(read_body(response).await, "hello");
    assert_eq!(store.counter("cluster.dns.update_success").value(), 1);
    assert_eq!(store.gauge("cluster.dns.membership_total").value(), 1);
}

#[tokio::test]
async fn logical_dns_uses_one_address() {
    let mut config = cluster(
        "logical",
        DiscoveryType::LogicalDns,
        vec![endpoint("localhost", 9, None)],
    );
    #[allow(deprecated)]
    {
        config.dns_lookup_family = DnsLookupFamily::All as i32;
    }
    let (manager, backend) = compile_one(config, &Store::new());
    manager.start();
    assert!(manager.wait_initialized(Duration::from_secs(5)).await);
    let membership = backend.membership();
    assert_eq!(membership.hosts().len(), 1);
    assert!(membership.hosts()[0].address().ip().is_loopback());
}

#[test]
fn updating_hosts_keeps_surviving_hosts_and_notifies() {
    let a: SocketAddr = "127.0.0.1:1001".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:1002".parse().unwrap();
    let store = Store::new();
    let (_manager, backend) = compile_one(static_cluster("c", &[a]), &store);
    let before = backend.membership().hosts()[0].clone();
    let versions = backend.subscribe();
    let seen = *versions.borrow();
    let endpoint = |address| ResolvedEndpoint {
        address,
        hostname: String::new(),
        weight: 1,
        locality: Locality::default(),
        healthy: true,
    };
    backend.update_hosts(vec![endpoint(a)]);
    assert_eq!(*versions.borrow(), seen, "no change, no new version");
    backend.update_hosts(vec![endpoint(a), endpoint(b)]);
    assert_eq!(*versions.borrow(), seen + 1);
    assert!(Arc::ptr_eq(&backend.membership().hosts()[0], &before));
    assert_eq!(store.counter("cluster.c.membership_change").value(), 2);
    assert_eq!(store.gauge("cluster.c.membership_total").value(), 2);
}

#[test]
fn no_hosts_means_no_healthy_upstream() {
    let store = Store::new();
    let (_manager, backend) = compile_one(static_cluster("empty", &[]), &store);
    assert!(backend.choose_host(None).is_none());
    assert_eq!(
        store
            .counter("cluster.empty.upstream_cx_none_healthy")
            .value(),
        1
    );
}

#[test]
fn unhealthy_hosts_are_skipped_until_panic() {
    let addresses: Vec<SocketAddr> = (1..=3)
        .map(|i| format!("127.0.0.1:{}", 2000 + i).parse().unwrap())
        .collect();
    let store = Store::new();
    let (_manager, backend) = compile_one(static_cluster("h", &addresses), &store);
    let hosts = backend.membership().hosts().to_vec();
    hosts[0].set_healthy(false);
    backend.refresh_health();
    for _ in 0..30 {
        assert_ne!(backend.choose_host(None).unwrap().address(), addresses[0]);
    }
    assert_eq!(store.gauge("cluster.h.membership_healthy").value(), 2);
    // One healthy host of three is below the 50% panic threshold: all hosts
    // are used again, and each such pick counts lb_healthy_panic.
    hosts[1].set_healthy(false);
    backend.refresh_health();
    let picked: std::collections::HashSet<SocketAddr> = (0..30)
        .map(|_| backend.choose_host(None).unwrap().address())
        .collect();
    assert_eq!(picked.len(), 3);
    assert_eq!(store.counter("cluster.h.lb_healthy_panic").value(), 30);
    assert_eq!(hosts[0].health_flags(), "/failed_active_hc");
}

#[test]
fn weighted_round_robin_across_a_cluster() {
    let mut config = cluster(
        "w",
        DiscoveryType::Static,
        vec![
            endpoint("127.0.0.1", 1, Some(1)),
            endpoint("127.0.0.1", 2, Some(3)),
        ],
    );
    config.lb_policy = ProtoLbPolicy::RoundRobin as i32;
    let (_manager, backend) = compile_one(config, &Store::new());
    let heavy = (0..400)
        .filter(|_| backend.choose_host(None).unwrap().address().port() == 2)
        .count();
    assert_eq!(heavy, 300);
}

#[test]
fn maglev_cluster_is_consistent_per_hash() {
    let addresses: Vec<SocketAddr> = (1..=4)
        .map(|i| format!("127.0.0.1:{}", 3000 + i).parse().unwrap())
        .collect();
    let mut config = static_cluster("m", &addresses);
    config.lb_policy = ProtoLbPolicy::Maglev as i32;
    let (_manager, backend) = compile_one(config, &Store::new());
    for hash in [1u64, 99, 123_456_789] {
        let first = backend.choose_host(Some(hash)).unwrap().address();
        for _ in 0..5 {
            assert_eq!(backend.choose_host(Some(hash)).unwrap().address(), first);
        }
    }
}

#[test]
fn config_errors_name_their_paths() {
    let good = static_cluster("a", &["127.0.0.1:80".parse().unwrap()]);
    let named = cluster(
        "b",
        DiscoveryType::Static,
        vec![endpoint("backend.local", 80, None)],
    );
    assert_eq!(
        compile_errors(&[good.clone(), named]),
        "[1].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.\
         address: 'backend.local' is not an IP address; a STATIC cluster needs IP addresses \
         (use STRICT_DNS or LOGICAL_DNS to resolve names)"
    );
    let mut maglev = good.clone();
    maglev.lb_policy = ProtoLbPolicy::Maglev as i32;
    maglev.lb_config = Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
        table_size: Some(UInt64Value { value: 65536 }),
    }));
    assert_eq!(
        compile_errors(&[maglev]),
        "[0].maglev_lb_config.table_size: The table size of maglev must be prime number, got 65536"
    );
    let eds = cluster("e", DiscoveryType::Eds, vec![]);
    assert_eq!(
        compile_errors(&[eds]),
        "[0].type: cluster type EDS is not supported yet"
    );
    assert_eq!(
        compile_errors(&[good.clone(), good.clone()]),
        "[1].name: duplicate cluster name 'a'"
    );
    let logical = cluster(
        "l",
        DiscoveryType::LogicalDns,
        vec![endpoint("a.local", 80, None), endpoint("b.local", 80, None)],
    );
    assert_eq!(
        compile_errors(&[logical]),
        "[0].load_assignment: LOGICAL_DNS clusters must have a single locality_lb_endpoint \
         and a single lb_endpoint"
    );
    let mut zero_timeout = good.clone();
    zero_timeout.connect_timeout = Some(ProtoDuration {
        seconds: 0,
        nanos: 0,
    });
    assert_eq!(
        compile_errors(&[zero_timeout]),
        "[0].connect_timeout: connect_timeout must be greater than 0s"
    );
    let mut tls = good.clone();
    tls.transport_socket = Some(TransportSocket::default());
    assert_eq!(
        compile_errors(&[tls]),
        "[0].transport_socket: field 'transport_socket' is not supported by Sluice"
    );
    let mut mismatched = good.clone();
    mismatched.lb_config = Some(LbConfig::MaglevLbConfig(MaglevLbConfig::default()));
    assert_eq!(
        compile_errors(&[mismatched]),
        "[0].maglev_lb_config: maglev_lb_config requires lb_policy MAGLEV"
    );
    let weightless = cluster(
        "z",
        DiscoveryType::Static,
        vec![endpoint("127.0.0.1", 80, Some(0))],
    );
    assert_eq!(
        compile_errors(&[weightless]),
        "[0].load_assignment.endpoints[0].lb_endpoints[0].load_balancing_weight: \
         load_balancing_weight must be at least 1"
    );
}

#[test]
fn clusters_text_matches_envoy() {
    let mut config = cluster(
        "backend",
        DiscoveryType::Static,
        vec![
            endpoint("127.0.0.1", 18080, Some(3)),
            endpoint("::1", 18081, None),
        ],
    );
    config.alt_stat_name = String::new();
    let (manager, _backend) = compile_one(config, &Store::new());
    let text = manager.render_text();
    let expected_head = "\
backend::observability_name::backend
backend::default_priority::max_connections::1024
backend::default_priority::max_pending_requests::1024
backend::default_priority::max_requests::1024
backend::default_priority::max_retries::3
backend::high_priority::max_connections::1024
backend::high_priority::max_pending_requests::1024
backend::high_priority::max_requests::1024
backend::high_priority::max_retries::3
backend::added_via_api::false
backend::127.0.0.1:18080::cx_active::0
backend::127.0.0.1:18080::cx_connect_fail::0
backend::127.0.0.1:18080::cx_total::0
backend::127.0.0.1:18080::rq_active::0
backend::127.0.0.1:18080::rq_error::0
backend::127.0.0.1:18080::rq_pending_active::0
backend::127.0.0.1:18080::rq_success::0
backend::127.0.0.1:18080::rq_timeout::0
backend::127.0.0.1:18080::rq_total::0
backend::127.0.0.1:18080::hostname::
backend::127.0.0.1:18080::health_flags::healthy
backend::127.0.0.1:18080::weight::3
backend::127.0.0.1:18080::region::
backend::127.0.0.1:18080::zone::
backend::127.0.0.1:18080::sub_zone::
backend::127.0.0.1:18080::canary::false
backend::127.0.0.1:18080::priority::0
backend::127.0.0.1:18080::success_rate::-1
backend::127.0.0.1:18080::local_origin_success_rate::-1
backend::[::1]:18081::cx_active::0
";
    assert!(text.starts_with(expected_head), "{text}");
    assert!(text.ends_with("backend::[::1]:18081::local_origin_success_rate::-1\n"));

    let json = manager.render_json();
    let status = &json["cluster_statuses"][0];
    assert_eq!(status["name"], "backend");
    assert_eq!(status["observability_name"], "backend");
    let host = &status["host_statuses"][1];
    assert_eq!(host["address"]["socket_address"]["address"], "::1");
    assert_eq!(host["address"]["socket_address"]["port_value"], 18081);
    assert_eq!(host["health_status"]["eds_health_status"], "HEALTHY");
    assert_eq!(
        host["stats"][0],
        serde_json::json!({"name": "cx_connect_fail"})
    );
    assert_eq!(
        host["stats"][6],
        serde_json::json!({"type": "GAUGE", "name": "cx_active"})
    );
    assert_eq!(
        status["circuit_breakers"]["thresholds"][1]["priority"],
        "HIGH"
    );
}
