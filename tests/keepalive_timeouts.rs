//! Route and stream idle timeouts on ONE keep-alive connection, black-box.
//! Each downstream connection keeps one timer and re-arms it per request
//! (proxy/src/http/connection_manager/spare_timer.rs): these tests check
//! that a later request still times out at its own deadline after a
//! request with a longer one, that a request with a longer deadline is not
//! cut short by a timer that already fired, and that the stream idle
//! timeout still answers 408 after a fast request.

mod support;

use std::time::{Duration, Instant};

use support::{hcm_listener, static_cluster, Backend, KeepAlive, Sluice, ADMIN_AND_LISTENERS};

fn config() -> String {
    let listener = |port: &str, prefix: &str, extra: &str, catch_all: &str| {
        let routes = format!(
            r#"              - match: {{ prefix: "/short" }}
                route: {{ cluster: blue, timeout: 0.4s, prefix_rewrite: "/delay/3000" }}
              - match: {{ prefix: "/long" }}
                route: {{ cluster: blue, timeout: 3s, prefix_rewrite: "/delay/800" }}
              - match: {{ prefix: "/" }}
                route: {{ cluster: blue {catch_all} }}"#
        );
        hcm_listener(port, prefix, extra, &routes)
    };
    let mut yaml = String::from(ADMIN_AND_LISTENERS);
    yaml += &listener("MAIN", "main", "", "");
    yaml += &listener(
        "STREAM_IDLE",
        "stream_idle",
        "          stream_idle_timeout: 0.5s",
        ", timeout: 0s",
    );
    yaml += "\n  clusters:";
    yaml += &static_cluster("blue", "BLUE");
    yaml + "\n"
}

/// GET `path` on `connection`: the status and how long it took.
async fn timed_get(connection: &mut KeepAlive, path: &str) -> (u16, Duration) {
    let started = Instant::now();
    let reply = connection
        .get("t", path)
        .await
        .unwrap_or_else(|error| panic!("GET {path} on the kept connection: {error}"));
    (reply.status, started.elapsed())
}

#[tokio::test]
async fn route_timeouts_hold_for_every_request_of_a_keep_alive_connection() {
    let blue = Backend::start("blue").await;
    let sluice = Sluice::start(&config(), &[("BLUE", blue.port())]).await;
    let mut connection = KeepAlive::connect(sluice.addr("MAIN")).await;

    // The fast request leaves the connection's timer filed 15 s ahead.
    assert_eq!(timed_get(&mut connection, "/fast").await.0, 200);
    // An earlier deadline than the kept timer's: 504 at 0.4 s, not later.
    let (status, took) = timed_get(&mut connection, "/short").await;
    assert_eq!(status, 504);
    assert!(took < Duration::from_millis(2500), "504 after {took:?}");
    // The timer fired; re-armed 3 s ahead it must not cut this 0.8 s answer.
    let (status, took) = timed_get(&mut connection, "/long").await;
    assert_eq!(status, 200, "after {took:?}");
    assert!(took >= Duration::from_millis(800), "{took:?}");
    // And the short deadline again, after the longer one.
    let (status, took) = timed_get(&mut connection, "/short").await;
    assert_eq!(status, 504);
    assert!(took < Duration::from_millis(2500), "504 after {took:?}");
    assert_eq!(timed_get(&mut connection, "/fast").await.0, 200);
    assert_eq!(
        sluice.stat("cluster.blue.upstream_rq_timeout").await,
        Some(2)
    );
}

#[tokio::test]
async fn stream_idle_timeout_holds_after_a_fast_request_on_the_same_connection() {
    let blue = Backend::start("blue").await;
    let sluice = Sluice::start(&config(), &[("BLUE", blue.port())]).await;
    let mut connection = KeepAlive::connect(sluice.addr("STREAM_IDLE")).await;

    assert_eq!(timed_get(&mut connection, "/fast").await.0, 200);
    let (status, took) = timed_get(&mut connection, "/delay/3000").await;
    assert_eq!(status, 408, "after {took:?}");
    assert!(took < Duration::from_millis(2500), "408 after {took:?}");
    assert!(took >= Duration::from_millis(400), "408 after {took:?}");
}
