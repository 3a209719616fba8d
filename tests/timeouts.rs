//! Timeouts, black-box: the real `sluice` with short timeouts against
//! in-process backends and raw clients that stall. Covers the route
//! `timeout` (504, and `0s` disabling it), `stream_idle_timeout`,
//! `request_headers_timeout`, the connection `idle_timeout` and
//! `max_connection_duration`, `request_timeout`, `max_stream_duration`, the
//! stream idle and route timeouts on a response body that stalls, and a
//! slow-reading client that still gets a complete large response.

mod support;

use std::convert::Infallible;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::Request;
use hyper_util::rt::TokioIo;
use support::{get, hcm_listener, static_cluster, Backend, Sluice, ADMIN_AND_LISTENERS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BULK_LEN: usize = 4 * 1024 * 1024;

/// One HCM listener: `${<PORT>}` with `stat_prefix: <prefix>` and `extra`
/// (HCM fields, 10-space indented) routing everything to cluster `blue`
/// with `route_extra` on the catch-all route.
fn listener(port: &str, prefix: &str, extra: &str, route_extra: &str) -> String {
    let routes = format!(
        r#"              - match: {{ prefix: "/route-timeout" }}
                route: {{ cluster: blue, timeout: 0.5s, prefix_rewrite: "/delay/5000" }}
              - match: {{ prefix: "/no-timeout" }}
                route: {{ cluster: blue, timeout: 0s, prefix_rewrite: "/delay/1500" }}
              - match: {{ prefix: "/bulk" }}
                route: {{ cluster: bulk }}
              - match: {{ prefix: "/" }}
                route: {{ cluster: blue {route_extra} }}"#
    );
    hcm_listener(port, prefix, extra, &routes)
}

fn config() -> String {
    let mut yaml = String::from(ADMIN_AND_LISTENERS);
    yaml += &listener("MAIN", "main", "", "");
    yaml += &listener(
        "STREAM_IDLE",
        "stream_idle",
        "          stream_idle_timeout: 0.5s",
        ", timeout: 0s",
    );
    yaml += &listener(
        "HEADERS",
        "headers",
        "          request_headers_timeout: 0.5s",
        "",
    );
    yaml += &listener(
        "CX_IDLE",
        "cx_idle",
        "          common_http_protocol_options: { idle_timeout: 0.5s }",
        "",
    );
    yaml += &listener(
        "MAX_CX",
        "max_cx",
        "          common_http_protocol_options: { max_connection_duration: 1s }",
        "",
    );
    yaml += &listener("REQUEST", "request", "          request_timeout: 0.5s", "");
    yaml += &listener(
        "MAX_STREAM",
        "max_stream",
        "          common_http_protocol_options: { max_stream_duration: 0.5s }",
        ", timeout: 0s",
    );
    yaml += "\n  clusters:";
    yaml += &static_cluster("blue", "BLUE");
    yaml += &static_cluster("bulk", "BULK");
    yaml + "\n"
}

struct World {
    sluice: Sluice,
    _blue: Backend,
    _bulk: tokio::task::JoinHandle<()>,
}

impl Drop for World {
    fn drop(&mut self) {
        self._bulk.abort();
    }
}

async fn world() -> World {
    let blue = Backend::start("blue").await;
    let (bulk_port, bulk) = bulk_backend().await;
    let sluice = Sluice::start(&config(), &[("BLUE", blue.port()), ("BULK", bulk_port)]).await;
    World {
        sluice,
        _blue: blue,
        _bulk: bulk,
    }
}

/// An HTTP/1.1 backend answering every request with `BULK_LEN` bytes.
async fn bulk_backend() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    let body = Bytes::from(bulk_pattern());
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(body)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, task)
}

fn bulk_pattern() -> Vec<u8> {
    (0..BULK_LEN).map(|i| (i % 253) as u8).collect()
}

/// Reads whatever arrives until the peer closes; `None` if it is still
/// open after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut out)).await {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(_) => None,
    }
}

/// Reads one HTTP/1.1 response (headers and a content-length body) from a
/// raw stream; returns its head and body.
async fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    (head, body)
}

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

#[tokio::test]
async fn route_timeout_is_504_and_counted() {
    let w = world().await;
    let started = Instant::now();
    let reply = get(w.sluice.addr("MAIN"), "t", "/route-timeout").await;
    assert_eq!(reply.status, 504);
    assert_eq!(reply.text(), "upstream request timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        stat_until(&w.sluice, "cluster.blue.upstream_rq_timeout", 1).await,
        Some(1)
    );
}

#[tokio::test]
async fn route_timeout_zero_disables_it() {
    let w = world().await;
    let reply = get(w.sluice.addr("MAIN"), "t", "/no-timeout").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.echo().path, "/delay/1500");
    assert_eq!(
        w.sluice.stat("cluster.blue.upstream_rq_timeout").await,
        Some(0)
    );
}

#[tokio::test]
async fn stream_idle_timeout_answers_408_for_a_stalled_upstream() {
    let w = world().await;
    let started = Instant::now();
    let reply = get(w.sluice.addr("STREAM_IDLE"), "t", "/delay/5000").await;
    assert_eq!(reply.status, 408, "{}", reply.text());
    assert_eq!(reply.text(), "stream timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        stat_until(&w.sluice, "http.stream_idle.downstream_rq_idle_timeout", 1).await,
        Some(1)
    );
}

#[tokio::test]

async fn stream_idle_timeout_is_reset_by_request_body_activity() {
    // Envoy: the stream idle timer restarts on any activity, so a request
    // body that keeps flowing (a chunk every 150 ms, 1.5 s in all, against
    // a 0.5 s stream_idle_timeout) is not idle; the backend answers when it
    // has the whole body.
    let w = world().await;
    let frames = futures_util::stream::unfold(0u32, |i| async move {
        if i == 10 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        Some((
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"0123456789"))),
            i + 1,
        ))
    });
    let stream = TcpStream::connect(w.sluice.addr("STREAM_IDLE"))
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::post("/upload")
        .header("host", "t")
        .body(StreamBody::new(frames))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), async {
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    })
    .await
    .expect("answered in time");
    assert_eq!(response.0, 200, "{}", String::from_utf8_lossy(&response.1));
    let echo: support::EchoReply = serde_json::from_slice(&response.1).unwrap();
    assert_eq!(echo.body_len, 100);
}

#[tokio::test]
async fn request_headers_timeout_closes_a_half_sent_request() {
    let w = world().await;
    let mut stream = TcpStream::connect(w.sluice.addr("HEADERS")).await.unwrap();
    stream.write_all(b"GET /half HT").await.unwrap();
    let got = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("connection closed within 5 s");
    assert!(
        got.is_empty() || got.starts_with("HTTP/1.1 408"),
        "unexpected answer: {got}"
    );
}

#[tokio::test]
async fn request_headers_timeout_spares_a_complete_request() {
    let w = world().await;
    // Headers complete at once; the backend takes longer than the
    // headers timeout to answer, which is not the client's fault.
    let reply = get(w.sluice.addr("HEADERS"), "t", "/delay/1000").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn connection_idle_timeout_closes_an_idle_keep_alive_connection() {
    let w = world().await;
    let mut stream = TcpStream::connect(w.sluice.addr("CX_IDLE")).await.unwrap();
    stream
        .write_all(b"GET /one HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = tokio::time::timeout(Duration::from_secs(5), read_response(&mut stream))
        .await
        .expect("answered in time");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let rest = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("idle connection closed within 5 s");
    assert!(rest.is_empty(), "unexpected bytes: {rest}");
    assert_eq!(
        stat_until(&w.sluice, "http.cx_idle.downstream_cx_idle_timeout", 1).await,
        Some(1)
    );
}

#[tokio::test]
async fn max_connection_duration_closes_a_busy_connection() {
    let w = world().await;
    let mut stream = TcpStream::connect(w.sluice.addr("MAX_CX")).await.unwrap();
    let started = Instant::now();
    let mut answered = 0;
    // A request every 100 ms: never idle, but the 1 s duration ends it.
    let closed = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            if stream
                .write_all(b"GET /busy HTTP/1.1\r\nhost: t\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            let mut probe = Vec::new();
            let (head, _) = match tokio::time::timeout(
                Duration::from_secs(2),
                read_response_or_eof(&mut stream, &mut probe),
            )
            .await
            {
                Ok(Some(response)) => response,
                _ => return,
            };
            answered += 1;
            if head.to_ascii_lowercase().contains("connection: close") {
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "connection still open after 6 s");
    assert!(answered >= 1, "no request was answered");
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "closed before max_connection_duration: {:?}",
        started.elapsed()
    );
    assert_eq!(
        stat_until(
            &w.sluice,
            "http.max_cx.downstream_cx_max_duration_reached",
            1
        )
        .await,
        Some(1)
    );
}

/// Like `read_response`, but `None` when the peer closes before a response.
async fn read_response_or_eof(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 4096];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

#[tokio::test]
async fn request_timeout_answers_408_when_the_body_stalls() {
    let w = world().await;
    let mut stream = TcpStream::connect(w.sluice.addr("REQUEST")).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let started = Instant::now();
    let (head, body) = tokio::time::timeout(Duration::from_secs(5), read_response(&mut stream))
        .await
        .expect("answered within 5 s");
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert_eq!(String::from_utf8_lossy(&body), "request timeout");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(
        stat_until(&w.sluice, "http.request.downstream_rq_timeout", 1).await,
        Some(1)
    );
}

#[tokio::test]
async fn request_timeout_spares_a_prompt_request() {
    let w = world().await;
    // The whole request arrives at once; only the backend is slow, and
    // request_timeout covers receiving the request, not the response.
    let reply = get(w.sluice.addr("REQUEST"), "t", "/delay/1000").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn max_stream_duration_ends_a_long_request_with_408() {
    let w = world().await;
    let started = Instant::now();
    let reply = get(w.sluice.addr("MAX_STREAM"), "t", "/delay/5000").await;
    assert_eq!(reply.status, 408, "{}", reply.text());
    assert_eq!(reply.text(), "downstream duration timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        stat_until(
            &w.sluice,
            "http.max_stream.downstream_rq_max_duration_reached",
            1
        )
        .await,
        Some(1)
    );
    // A quick request on the same listener is unaffected.
    assert_eq!(
        get(w.sluice.addr("MAX_STREAM"), "t", "/quick").await.status,
        200
    );
}

#[tokio::test]
async fn slow_reader_gets_the_whole_large_response() {
    let w = world().await;
    let mut stream = TcpStream::connect(w.sluice.addr("MAIN")).await.unwrap();
    stream
        .write_all(b"GET /bulk HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    // Read 16 KiB at a time with a pause: about 1.3 s for 4 MiB, so the
    // proxy must hold back the upstream rather than fail or drop bytes.
    let result = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = Vec::with_capacity(BULK_LEN + 1024);
        let mut chunk = vec![0u8; 16 * 1024];
        let mut reads = 0u32;
        let mut head_end = None;
        loop {
            let n = stream.read(&mut chunk).await.expect("read");
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            reads += 1;
            if head_end.is_none() {
                head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
            }
            if let Some(end) = head_end {
                if buf.len() - end >= BULK_LEN {
                    break;
                }
            }
            if reads.is_multiple_of(4) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        (buf, head_end)
    })
    .await
    .expect("whole response within 30 s");
    let (buf, head_end) = result;
    let end = head_end.expect("response head");
    let head = String::from_utf8_lossy(&buf[..end]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(buf.len() - end, BULK_LEN);
    assert!(buf[end..] == bulk_pattern()[..], "body corrupted");
}

/// A backend that answers with headers and the first part of a 100-byte
/// body, then stalls with the connection open.
async fn stalling_backend() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let head = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst-part";
            let _ = stream.write_all(head).await;
            held.push(stream);
        }
    });
    (port, task)
}

/// Sends `GET /stall` to `addr` and returns what arrived before Sluice
/// closed the connection, and when it closed.
async fn stalled_response(addr: std::net::SocketAddr) -> (String, Duration) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /stall HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let received = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("the stalled response is aborted");
    (received, started.elapsed())
}

#[tokio::test]
async fn stalled_response_bodies_are_aborted_by_the_stream_idle_and_route_timeouts() {
    let (port, backend) = stalling_backend().await;
    let mut yaml = String::from(ADMIN_AND_LISTENERS);
    yaml += &listener(
        "STREAM_IDLE",
        "stream_idle",
        "          stream_idle_timeout: 0.5s",
        ", timeout: 0s",
    );
    yaml += &listener("ROUTE", "route", "", ", timeout: 0.5s");
    yaml += r#"
  clusters:"#;
    for name in ["blue", "bulk"] {
        yaml += &format!(
            r#"
  - name: {name}
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: ${{STALL}} }} }} }} }}] }}]
"#
        );
    }
    let sluice = Sluice::start(&yaml, &[("STALL", port)]).await;
    for listener in ["STREAM_IDLE", "ROUTE"] {
        let (received, elapsed) = stalled_response(sluice.addr(listener)).await;
        assert!(
            received.starts_with("HTTP/1.1 200"),
            "{listener}: {received}"
        );
        assert!(received.ends_with("first-part"), "{listener}: {received}");
        assert!(
            elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(4),
            "{listener}: {elapsed:?}"
        );
    }
    assert_eq!(
        stat_until(&sluice, "http.stream_idle.downstream_rq_idle_timeout", 1).await,
        Some(1)
    );
    backend.abort();
}
