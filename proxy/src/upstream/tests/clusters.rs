//! Cluster-level behaviour: DNS discovery, membership updates, health and
//! panic mode, load balancing through a cluster, config errors and the
//! `/clusters` admin output.

use super::*;

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
    let original_dst = cluster("o", DiscoveryType::OriginalDst, vec![]);
    assert_eq!(
        compile_errors(&[original_dst]),
        "[0].type: cluster type ORIGINAL_DST is not supported yet"
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
