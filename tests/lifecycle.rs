//! The process lifecycle, black-box: `/quitquitquit`, SIGTERM with a request
//! in flight (it completes, the listener closes, exit 0), SIGINT,
//! `/healthcheck/fail` and `/healthcheck/ok`, `/drain_listeners` (plain and
//! graceful), and start-up failures (bad config, port in use) with exit
//! code 1 and a message on stderr.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::{get, run_until_exit, wait_refused, Backend, KeepAlive, Sluice};

const CONFIG: &str = r#"
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: ${ADMIN} } }
static_resources:
  listeners:
  - name: ingress
    address: { socket_address: { address: 127.0.0.1, port_value: ${HTTP} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: svc }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: svc
    connect_timeout: 1s
    load_assignment:
      cluster_name: svc
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${SVC} } } } }] }]
"#;

/// Generous bound for the process to exit (drain time is 2 s).
const EXIT_LIMIT: Duration = Duration::from_secs(15);

async fn start(backend: &Backend) -> Sluice {
    Sluice::start(CONFIG, &[("SVC", backend.port())]).await
}

#[tokio::test]
async fn quitquitquit_exits_zero() {
    let svc = Backend::start("svc").await;
    let mut sluice = start(&svc).await;
    let reply = sluice.admin_post("/quitquitquit").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "OK\n");
    let status = sluice.wait_exit(EXIT_LIMIT).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit {status:?}:\n{}",
        sluice.log()
    );
}

#[tokio::test]
async fn sigterm_lets_the_in_flight_request_finish_then_exits_zero() {
    let svc = Backend::start("svc").await;
    let mut sluice = start(&svc).await;
    let http = sluice.addr("HTTP");
    let in_flight = tokio::spawn(async move { get(http, "x", "/delay/1500").await });
    // Wait (bounded) until the backend is working on it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while svc.requests.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        svc.requests.load(Ordering::SeqCst),
        1,
        "request reached the backend"
    );

    sluice.signal(libc::SIGTERM);
    assert!(
        wait_refused(http, Duration::from_secs(10)).await,
        "the listener closes on SIGTERM:\n{}",
        sluice.log()
    );
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.echo().path, "/delay/1500");

    let status = sluice.wait_exit(EXIT_LIMIT).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit {status:?}:\n{}",
        sluice.log()
    );
}

#[tokio::test]
async fn sigint_exits_zero() {
    let svc = Backend::start("svc").await;
    let mut sluice = start(&svc).await;
    sluice.signal(libc::SIGINT);
    let status = sluice.wait_exit(EXIT_LIMIT).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit {status:?}:\n{}",
        sluice.log()
    );
}

#[tokio::test]
async fn healthcheck_fail_makes_ready_503_until_ok() {
    let svc = Backend::start("svc").await;
    let sluice = start(&svc).await;
    assert_eq!(sluice.admin_post("/healthcheck/fail").await.status, 200);
    let ready = sluice.admin_get("/ready").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.text(), "DRAINING\n");
    assert_eq!(sluice.stat("server.live").await, Some(0));
    // Failing health checks does not stop traffic.
    assert_eq!(get(sluice.addr("HTTP"), "x", "/ok").await.status, 200);

    assert_eq!(sluice.admin_post("/healthcheck/ok").await.status, 200);
    let ready = sluice.admin_get("/ready").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.text(), "LIVE\n");
    assert_eq!(sluice.stat("server.live").await, Some(1));
}

#[tokio::test]
async fn drain_listeners_stops_accepting_but_admin_answers() {
    let svc = Backend::start("svc").await;
    let sluice = start(&svc).await;
    let http = sluice.addr("HTTP");
    assert_eq!(get(http, "x", "/ok").await.status, 200);
    let reply = sluice.admin_post("/drain_listeners").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "OK\n");
    assert!(
        wait_refused(http, Duration::from_secs(10)).await,
        "listener still accepting after /drain_listeners"
    );
    let info = sluice.admin_get("/server_info").await;
    assert_eq!(info.status, 200);
    assert!(sluice.stat("server.concurrency").await.is_some());
}

#[tokio::test]
async fn graceful_drain_closes_keep_alive_connections() {
    let svc = Backend::start("svc").await;
    let sluice = start(&svc).await;
    let mut connection = KeepAlive::connect(sluice.addr("HTTP")).await;
    let first = connection.get("x", "/ok").await.expect("first request");
    assert_eq!(first.status, 200);
    assert_eq!(first.header("connection"), None);

    assert_eq!(
        sluice.admin_post("/drain_listeners?graceful").await.status,
        200
    );
    // Within the drain time (2 s) a response on this connection says
    // `connection: close`; the bound is generous.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut closed = None;
    while Instant::now() < deadline {
        let reply = connection
            .get("x", "/ok")
            .await
            .unwrap_or_else(|e| panic!("connection dropped without `connection: close`: {e}"));
        assert_eq!(reply.status, 200);
        if reply.header("connection") == Some("close") {
            closed = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed.is_some(), "no `connection: close` during the drain");
    // After the drain period the listener closes too.
    assert!(wait_refused(sluice.addr("HTTP"), Duration::from_secs(10)).await);
}

#[test]
fn bad_config_exits_one_with_the_error_path_on_stderr() {
    let config = "static_resources:\n  clusters:\n  - name: c\n    connect_timeout: 5x\n";
    let exited = run_until_exit(config, &[], EXIT_LIMIT);
    assert_eq!(exited.status.code(), Some(1), "{exited:?}");
    assert!(
        exited
            .stderr
            .contains("static_resources.clusters[0].connect_timeout"),
        "{}",
        exited.stderr
    );
    assert!(
        exited.stderr.contains("invalid duration"),
        "{}",
        exited.stderr
    );
    assert!(
        exited.stderr.contains("sluice.yaml"),
        "names the file: {}",
        exited.stderr
    );
}

#[tokio::test]
async fn listener_port_in_use_exits_one_with_a_clear_message() {
    let svc = Backend::start("svc").await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut ports = std::collections::HashMap::from([
        ("SVC".to_string(), svc.port()),
        ("HTTP".to_string(), port),
    ]);
    let config = support::proxy::render(CONFIG, &mut ports);
    let exited = tokio::task::spawn_blocking(move || run_until_exit(&config, &[], EXIT_LIMIT))
        .await
        .unwrap();
    drop(taken);
    assert_eq!(exited.status.code(), Some(1), "{exited:?}");
    assert!(exited.stderr.contains("'ingress'"), "{}", exited.stderr);
    assert!(
        exited.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        exited.stderr
    );
    assert!(
        exited.stderr.contains("Address already in use"),
        "{}",
        exited.stderr
    );
}

#[tokio::test]
async fn admin_port_in_use_exits_one_with_a_clear_message() {
    let svc = Backend::start("svc").await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut ports = std::collections::HashMap::from([
        ("SVC".to_string(), svc.port()),
        ("ADMIN".to_string(), port),
    ]);
    let config = support::proxy::render(CONFIG, &mut ports);
    let exited = tokio::task::spawn_blocking(move || run_until_exit(&config, &[], EXIT_LIMIT))
        .await
        .unwrap();
    drop(taken);
    assert_eq!(exited.status.code(), Some(1), "{exited:?}");
    assert!(
        exited
            .stderr
            .contains(&format!("cannot bind admin address 127.0.0.1:{port}")),
        "{}",
        exited.stderr
    );
}
