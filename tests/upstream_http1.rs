//! The HTTP/1.1 upstream client, black-box: the real `sluice` in front of a
//! scripted backend that answers with exact bytes (chunked with trailers,
//! until close, HTTP/1.0, informational responses, garbage, oversized
//! heads, bodies cut short, an early 413 during an upload) and reports how
//! each request body was framed and how many connections it accepted.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use support::h2::{h2_connect, h2_send};
use support::{
    hcm_listener, raw_exchange, request, static_cluster, KeepAlive, Sluice, ADMIN_AND_LISTENERS,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ROUTES: &str = "              - match: { prefix: \"/\" }
                route: { cluster: scripted, timeout: 5s }";

fn config() -> String {
    format!(
        "{ADMIN_AND_LISTENERS}{}\n  clusters:{}\n",
        hcm_listener("HTTP", "ingress", "", ROUTES),
        static_cluster("scripted", "BACKEND")
    )
}

/// How the backend saw one request's body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeenBody {
    framing: &'static str,
    bytes: usize,
}

struct Scripted {
    address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<SeenBody>>>,
}

impl Scripted {
    async fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (accepted.clone(), bodies.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, seen.clone()));
            }
        });
        Scripted {
            address,
            accepted,
            bodies,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Answers requests on one connection by path until told to close.
async fn serve(mut stream: TcpStream, bodies: Arc<Mutex<Vec<SeenBody>>>) {
    let mut buffer = Vec::new();
    loop {
        let Some(head) = read_head(&mut stream, &mut buffer).await else {
            return;
        };
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        if path == "/early-413" {
            let _ = stream
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            // Linger so the proxy reads the answer before the reset a close
            // with unread data causes.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
        let Some(body) = read_body(&mut stream, &mut buffer, &head).await else {
            return;
        };
        bodies.lock().unwrap().push(body.clone());
        let (reply, close): (Vec<u8>, bool) = match path.as_str() {
            "/chunked" => (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: t\r\n\r\n".to_vec(),
                false,
            ),
            "/until-close" => (b"HTTP/1.1 200 OK\r\n\r\nstreamed until close".to_vec(), true),
            "/http10" => (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(), false),
            "/continue" => (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\ncontinued".to_vec(),
                false,
            ),
            "/garbage" => (b"SSH-2.0-OpenSSH\r\n\r\n".to_vec(), true),
            "/too-many-headers" => {
                let mut reply = b"HTTP/1.1 200 OK\r\n".to_vec();
                for i in 0..120 {
                    reply.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
                }
                reply.extend_from_slice(b"content-length: 0\r\n\r\n");
                (reply, false)
            }
            "/truncated" => (
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten..".to_vec(),
                true,
            ),
            _ => {
                let text = format!("{} {}", body.framing, body.bytes);
                let mut reply =
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", text.len()).into_bytes();
                reply.extend_from_slice(text.as_bytes());
                (reply, false)
            }
        };
        if stream.write_all(&reply).await.is_err() || close {
            return;
        }
    }
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
        Ok(Ok(n)) if n > 0 => {
            buffer.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
            buffer.drain(..end + 4);
            return Some(head);
        }
        if !read_more(stream, buffer).await {
            return None;
        }
    }
}

async fn read_body(stream: &mut TcpStream, buffer: &mut Vec<u8>, head: &str) -> Option<SeenBody> {
    let header = |name: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")).map(str::to_string))
    };
    if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        let mut bytes = 0;
        loop {
            let Some(line_end) = buffer.windows(2).position(|w| w == b"\r\n") else {
                if !read_more(stream, buffer).await {
                    return None;
                }
                continue;
            };
            let size_text = String::from_utf8_lossy(&buffer[..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            // The chunk, its CRLF (or, for the last, the empty trailer line).
            while buffer.len() < line_end + 2 + size + 2 {
                if !read_more(stream, buffer).await {
                    return None;
                }
            }
            buffer.drain(..line_end + 2 + size + 2);
            bytes += size;
            if size == 0 {
                return Some(SeenBody {
                    framing: "chunked",
                    bytes,
                });
            }
        }
    }
    let Some(length) = header("content-length") else {
        return Some(SeenBody {
            framing: "none",
            bytes: 0,
        });
    };
    let length: usize = length.trim().parse().ok()?;
    while buffer.len() < length {
        if !read_more(stream, buffer).await {
            return None;
        }
    }
    buffer.drain(..length);
    Some(SeenBody {
        framing: "length",
        bytes: length,
    })
}

async fn start() -> (Scripted, Sluice) {
    let backend = Scripted::start().await;
    let sluice = Sluice::start(&config(), &[("BACKEND", backend.address.port())]).await;
    (backend, sluice)
}

const UPSTREAM_PROTOCOL_ERROR: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: protocol error";

#[tokio::test]
async fn chunked_response_is_relayed_and_its_connection_reused() {
    let (backend, sluice) = start().await;
    let mut client = KeepAlive::connect(sluice.addr("HTTP")).await;
    for _ in 0..2 {
        let reply = client.get("x", "/chunked").await.expect("a response");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "hello world");
    }
    assert_eq!(backend.accepted(), 1);
    // An HTTP/2 client gets the chunked body's trailers too.
    let mut h2 = h2_connect(sluice.addr("HTTP")).await;
    let request = http::Request::get("http://x/chunked")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = h2_send(&mut h2, request).await.expect("an h2 response");
    assert_eq!(reply.body, "hello world");
    assert_eq!(reply.trailer("x-trailer"), Some("t"));
}

#[tokio::test]
async fn responses_that_end_the_connection_are_whole_and_not_reused() {
    let (backend, sluice) = start().await;
    let mut client = KeepAlive::connect(sluice.addr("HTTP")).await;
    for path in ["/until-close", "/until-close", "/http10", "/http10"] {
        let reply = client.get("x", path).await.expect("a response");
        assert_eq!(reply.status, 200, "{path}");
        let expected = if path == "/http10" {
            "ok"
        } else {
            "streamed until close"
        };
        assert_eq!(reply.text(), expected);
    }
    // Neither kind of connection carries a second request (the HTTP/1.0
    // backend keeps its connection open, but did not offer keep-alive).
    assert_eq!(backend.accepted(), 4);
}

#[tokio::test]
async fn informational_responses_are_skipped() {
    let (_backend, sluice) = start().await;
    let mut client = KeepAlive::connect(sluice.addr("HTTP")).await;
    let reply = client.get("x", "/continue").await.expect("a response");
    assert_eq!((reply.status, reply.text().as_str()), (200, "continued"));
}

#[tokio::test]
async fn invalid_and_oversized_response_heads_are_503_and_serving_goes_on() {
    let (_backend, sluice) = start().await;
    let mut client = KeepAlive::connect(sluice.addr("HTTP")).await;
    for path in ["/garbage", "/too-many-headers"] {
        let reply = client.get("x", path).await.expect("a local reply");
        assert_eq!(reply.status, 503, "{path}");
        assert_eq!(reply.text(), UPSTREAM_PROTOCOL_ERROR, "{path}");
    }
    let reply = client.get("x", "/ok").await.expect("a response");
    assert_eq!((reply.status, reply.text().as_str()), (200, "none 0"));
    assert_eq!(
        sluice.stat("cluster.scripted.upstream_rq_503").await,
        Some(2)
    );
}

#[tokio::test]
async fn response_cut_short_ends_the_downstream_connection() {
    // raw_exchange returns at the close, well before its 5 s limit.
    let started = std::time::Instant::now();
    let (_backend, sluice) = start().await;
    let raw = raw_exchange(
        sluice.addr("HTTP"),
        b"GET /truncated HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    // hyper's server drops what it had buffered when the body fails, so the
    // client may see nothing; what it must never see is a complete
    // response, nor a connection left open for another request.
    if !raw.is_empty() {
        assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
        let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert!(body.len() < 100, "{raw}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the connection stayed open"
    );
    let mut client = KeepAlive::connect(sluice.addr("HTTP")).await;
    assert_eq!(client.get("x", "/ok").await.expect("served").status, 200);
}

#[tokio::test]
async fn request_bodies_keep_their_framing() {
    let (backend, sluice) = start().await;
    let address = sluice.addr("HTTP");
    let upload = http::Request::post("/upload")
        .header("host", "x")
        .body(Full::new(Bytes::from(vec![b'a'; 100_000])))
        .unwrap();
    let reply = request(address, upload, false).await;
    assert_eq!(reply.text(), "length 100000");

    let chunked = raw_exchange(
        address,
        b"POST /upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n7\r\n1234567\r\n0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(chunked.ends_with("\r\n\r\nchunked 15"), "{chunked}");

    let mut client = KeepAlive::connect(address).await;
    assert_eq!(client.get("x", "/get").await.unwrap().text(), "none 0");
    let seen = backend.bodies.lock().unwrap().clone();
    let framings: Vec<_> = seen.iter().map(|b| (b.framing, b.bytes)).collect();
    assert_eq!(
        framings,
        [("length", 100_000), ("chunked", 15), ("none", 0)]
    );
}

#[tokio::test]
async fn early_response_during_an_upload_reaches_the_client() {
    let (_backend, sluice) = start().await;
    let mut stream = TcpStream::connect(sluice.addr("HTTP")).await.unwrap();
    stream
        .write_all(b"POST /early-413 HTTP/1.1\r\nhost: x\r\ncontent-length: 8388608\r\n\r\n")
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let uploader = tokio::spawn(async move {
        let block = vec![b'u'; 64 * 1024];
        // At most the declared 8 MiB; stops when the proxy stops reading.
        for _ in 0..128 {
            let write = tokio::time::timeout(Duration::from_secs(2), writer.write_all(&block));
            if !matches!(write.await, Ok(Ok(()))) {
                break;
            }
        }
    });
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = reader.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            received.extend_from_slice(&chunk[..n]);
            if received.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    uploader.abort();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 413"), "got {text:?}");
    let mut client = KeepAlive::connect(sluice.addr("HTTP")).await;
    assert_eq!(client.get("x", "/ok").await.expect("served").status, 200);
}
