//! `tcp_proxy`, black-box: the real `sluice` between raw TCP clients and
//! in-process TCP backends. Covers bytes both ways (checksummed), half-close
//! in both directions, the idle timeout, a dead upstream, the
//! `tcp.<stat_prefix>.*` byte and connection counters, many concurrent
//! connections, and filter-chain selection by destination port.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::{Sluice, TcpBackend, ECHO_EOF_REPLY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONFIG: &str = r#"
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: ${ADMIN} } }
static_resources:
  listeners:
  - name: echo
    address: { socket_address: { address: 127.0.0.1, port_value: ${ECHO_L} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: echo_tcp
          cluster: echo
  - name: idle
    address: { socket_address: { address: 127.0.0.1, port_value: ${IDLE_L} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: idle_tcp
          cluster: echo
          idle_timeout: 0.5s
  - name: greet
    address: { socket_address: { address: 127.0.0.1, port_value: ${GREET_L} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: greet_tcp
          cluster: greeter
  - name: dead
    address: { socket_address: { address: 127.0.0.1, port_value: ${DEAD_L} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: dead_tcp
          cluster: dead
  - name: chains
    address: { socket_address: { address: 127.0.0.1, port_value: ${CHAINS_L} } }
    filter_chains:
    - name: other_port
      filter_chain_match: { destination_port: ${UNUSED_PORT} }
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: wrong_chain
          cluster: greeter
    - name: default
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: default_chain
          cluster: echo
  - name: this_port
    address: { socket_address: { address: 127.0.0.1, port_value: ${THIS_L} } }
    filter_chains:
    - name: default
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: this_default
          cluster: echo
    - name: this_port
      filter_chain_match: { destination_port: ${THIS_L} }
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: this_port
          cluster: greeter
  clusters:
  - name: echo
    connect_timeout: 1s
    load_assignment:
      cluster_name: echo
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${ECHO} } } } }] }]
  - name: greeter
    connect_timeout: 1s
    load_assignment:
      cluster_name: greeter
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${GREETER} } } } }] }]
  - name: dead
    connect_timeout: 1s
    load_assignment:
      cluster_name: dead
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${DEAD} } } } }] }]
"#;

const GREETING: &[u8] = b"hello from the greeter";

struct World {
    sluice: Sluice,
    /// A port nothing listens on (connections are refused).
    _dead: support::PortReservation,
    echo: TcpBackend,
    _greeter: TcpBackend,
}

async fn world() -> World {
    let echo = TcpBackend::echo().await;
    let greeter = TcpBackend::greeter(GREETING).await;
    let dead = support::reserve_port();
    let sluice = Sluice::start(
        CONFIG,
        &[
            ("ECHO", echo.port()),
            ("GREETER", greeter.port()),
            ("DEAD", dead.port()),
        ],
    )
    .await;
    World {
        sluice,
        _dead: dead,
        echo,
        _greeter: greeter,
    }
}

/// Reads until EOF (bounded); panics if the peer keeps the connection open.
async fn read_to_eof(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut out))
        .await
        .expect("peer closed the connection in time")
        .expect("read");
    out
}

/// Polls a stat until it reaches `want` (bounded); returns the last value.
async fn stat_until(sluice: &Sluice, name: &str, want: i64) -> Option<i64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let value = sluice.stat(name).await;
        if value == Some(want) || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

#[tokio::test]
async fn megabytes_echo_through_intact_and_are_counted() {
    let w = world().await;
    let payload = pattern(3 * 1024 * 1024 + 17);
    let mut stream = TcpStream::connect(w.sluice.addr("ECHO_L")).await.unwrap();
    let (mut read, mut write) = stream.split();
    let send = async {
        write.write_all(&payload).await.unwrap();
        write.shutdown().await.unwrap();
    };
    let mut received = Vec::new();
    let recv = read.read_to_end(&mut received);
    let (_, got) =
        tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(send, recv) })
            .await
            .expect("echo finished in time");
    got.unwrap();
    let (echoed, tail) = received.split_at(received.len() - ECHO_EOF_REPLY.len());
    assert_eq!(echoed.len(), payload.len());
    assert_eq!(checksum(echoed), checksum(&payload));
    assert_eq!(tail, ECHO_EOF_REPLY);

    let rx = payload.len() as i64;
    let tx = received.len() as i64;
    assert_eq!(
        stat_until(&w.sluice, "tcp.echo_tcp.downstream_cx_rx_bytes_total", rx).await,
        Some(rx)
    );
    assert_eq!(
        stat_until(&w.sluice, "tcp.echo_tcp.downstream_cx_tx_bytes_total", tx).await,
        Some(tx)
    );
    assert_eq!(
        stat_until(&w.sluice, "tcp.echo_tcp.downstream_cx_total", 1).await,
        Some(1)
    );
}

#[tokio::test]
async fn client_half_close_reaches_backend_which_can_still_answer() {
    let w = world().await;
    let mut stream = TcpStream::connect(w.sluice.addr("ECHO_L")).await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut first = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut first))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&first, b"ping");
    // Half-close: the read side stays open for the backend's answer.
    stream.shutdown().await.unwrap();
    let rest = read_to_eof(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(rest, ECHO_EOF_REPLY, "the backend's reply after EOF");
    assert_eq!(w.echo.eofs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn backend_closing_first_closes_the_client() {
    let w = world().await;
    let mut stream = TcpStream::connect(w.sluice.addr("GREET_L")).await.unwrap();
    let got = read_to_eof(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(got, GREETING);
}

#[tokio::test]
async fn idle_connection_is_closed_after_idle_timeout() {
    let w = world().await;
    let mut stream = TcpStream::connect(w.sluice.addr("IDLE_L")).await.unwrap();
    stream.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut one))
        .await
        .expect("echo in time")
        .unwrap();
    let started = Instant::now();
    let rest = read_to_eof(&mut stream, Duration::from_secs(5)).await;
    assert!(rest.is_empty() || rest == ECHO_EOF_REPLY, "got {rest:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "closed too early for a 0.5 s idle timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(
        stat_until(&w.sluice, "tcp.idle_tcp.idle_timeout", 1).await,
        Some(1)
    );
}

#[tokio::test]
async fn active_connection_outlives_idle_timeout() {
    let w = world().await;
    let mut stream = TcpStream::connect(w.sluice.addr("IDLE_L")).await.unwrap();
    // 8 exchanges 200 ms apart: 1.6 s in all, each gap well under 0.5 s.
    for i in 0..8u8 {
        stream.write_all(&[i]).await.unwrap();
        let mut one = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut one))
            .await
            .expect("echo in time")
            .expect("connection still open while active");
        assert_eq!(one[0], i);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(w.sluice.stat("tcp.idle_tcp.idle_timeout").await, Some(0));
}

#[tokio::test]
async fn dead_upstream_closes_downstream_promptly_and_counts_connect_fail() {
    let w = world().await;
    let mut stream = TcpStream::connect(w.sluice.addr("DEAD_L")).await.unwrap();
    let _ = stream.write_all(b"anyone?").await;
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    assert!(closed.is_ok(), "downstream not closed within 5 s");
    assert!(out.is_empty(), "no bytes from a dead upstream: {out:?}");
    assert_eq!(
        stat_until(&w.sluice, "cluster.dead.upstream_cx_connect_fail", 1).await,
        Some(1)
    );
}

#[tokio::test]
async fn fifty_concurrent_connections_all_echo() {
    let w = world().await;
    let address = w.sluice.addr("ECHO_L");
    let mut tasks = Vec::new();
    for i in 0..50u32 {
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(address).await.unwrap();
            let message = format!("connection {i} says hi").repeat(100);
            stream.write_all(message.as_bytes()).await.unwrap();
            stream.shutdown().await.unwrap();
            let mut out = Vec::new();
            stream.read_to_end(&mut out).await.unwrap();
            let mut want = message.into_bytes();
            want.extend_from_slice(ECHO_EOF_REPLY);
            out == want
        }));
    }
    let results = tokio::time::timeout(Duration::from_secs(30), async {
        let mut ok = 0;
        for task in tasks {
            if task.await.unwrap() {
                ok += 1;
            }
        }
        ok
    })
    .await
    .expect("all connections finished in time");
    assert_eq!(results, 50);
    assert_eq!(
        stat_until(&w.sluice, "tcp.echo_tcp.downstream_cx_total", 50).await,
        Some(50)
    );
}

#[tokio::test]
async fn chain_for_another_destination_port_is_skipped_for_the_default() {
    let w = world().await;
    let mut stream = TcpStream::connect(w.sluice.addr("CHAINS_L")).await.unwrap();
    stream.write_all(b"which chain?").await.unwrap();
    stream.shutdown().await.unwrap();
    let got = read_to_eof(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(got, [&b"which chain?"[..], ECHO_EOF_REPLY].concat());
    assert_eq!(
        stat_until(&w.sluice, "tcp.default_chain.downstream_cx_total", 1).await,
        Some(1)
    );
    assert_eq!(
        w.sluice.stat("tcp.wrong_chain.downstream_cx_total").await,
        Some(0)
    );
}

#[tokio::test]
async fn chain_matching_the_destination_port_wins_over_the_default() {
    let w = world().await;
    let mut stream = TcpStream::connect(w.sluice.addr("THIS_L")).await.unwrap();
    let got = read_to_eof(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(
        got, GREETING,
        "the destination_port chain goes to the greeter"
    );
}

/// Pipe descriptors the process holds (Linux `/proc`).
fn pipe_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("pipe:"))
        .count()
}

#[tokio::test]
async fn idle_connections_hold_no_relay_pipes() {
    let w = world().await;
    let address = w.sluice.addr("ECHO_L");
    let before = pipe_descriptors(w.sluice.pid());
    let mut streams = Vec::new();
    for i in 0..50u32 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        assert_echoed(&mut stream, &format!("connection {i}")).await;
        streams.push(stream);
    }
    // Both directions of every connection moved bytes and are idle now. A
    // relay that kept its pipes would hold 200 descriptors (50 connections,
    // two pipes of two ends each); pooled pipes are a handful per worker.
    let held = pipe_descriptors(w.sluice.pid()).saturating_sub(before);
    assert!(
        held < 50,
        "{held} pipe descriptors held by 50 idle connections"
    );
    // And the idle connections still relay.
    for (i, stream) in streams.iter_mut().enumerate() {
        assert_echoed(stream, &format!("again {i}")).await;
    }
}

/// Sends `message` and reads the same bytes back within 5 s.
async fn assert_echoed(stream: &mut TcpStream, message: &str) {
    stream.write_all(message.as_bytes()).await.unwrap();
    let mut echoed = vec![0u8; message.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(echoed, message.as_bytes());
}
