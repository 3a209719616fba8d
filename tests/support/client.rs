//! Minimal clients for tests: HTTP/1.1 and h2c requests with a deadline,
//! and a raw TCP exchange for malformed input.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::backend::EchoReply;

const DEADLINE: Duration = Duration::from_secs(10);

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The backend's echo, when the request reached one.
    pub fn echo(&self) -> EchoReply {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not a backend echo ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// GET over a fresh HTTP/1.1 connection.
pub async fn get(address: SocketAddr, host: &str, path: &str) -> Reply {
    let request = Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    request_on(address, request, false).await
}

/// GETs `/` on 127.0.0.1:`port` until `check` accepts the reply; panics
/// naming `what` after 15 s.
pub async fn get_until(port: u16, what: &str, check: impl Fn(&Reply) -> bool) -> Reply {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            let reply = get(address, "x", "/").await;
            if check(&reply) {
                return reply;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET over a fresh h2c (prior knowledge) connection.
pub async fn get_h2(address: SocketAddr, host: &str, path: &str) -> Reply {
    let uri = format!("http://{host}{path}");
    let request = Request::get(uri).body(Full::new(Bytes::new())).unwrap();
    request_on(address, request, true).await
}

/// Any request over a fresh connection (HTTP/1.1 or h2c).
pub async fn request(address: SocketAddr, request: Request<Full<Bytes>>, h2: bool) -> Reply {
    request_on(address, request, h2).await
}

async fn request_on(address: SocketAddr, request: Request<Full<Bytes>>, h2: bool) -> Reply {
    tokio::time::timeout(DEADLINE, async move {
        let stream = TcpStream::connect(address).await.expect("connect to proxy");
        let io = TokioIo::new(stream);
        let response = if h2 {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .expect("h2 handshake");
            tokio::spawn(connection);
            sender.send_request(request).await.expect("h2 request")
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("http1 handshake");
            tokio::spawn(connection);
            sender.send_request(request).await.expect("http1 request")
        };
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    })
    .await
    .expect("request finished in time")
}

/// Writes `bytes` on a fresh connection and reads until the peer closes
/// (or `wait` passes); returns what came back.
pub async fn raw_exchange(address: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// One HTTP/1.1 keep-alive connection for several requests in a row, to
/// see what happens to a connection that stays open (drain, `connection:
/// close`).
pub struct KeepAlive {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl KeepAlive {
    pub async fn connect(address: SocketAddr) -> KeepAlive {
        tokio::time::timeout(DEADLINE, async move {
            let stream = TcpStream::connect(address).await.expect("connect to proxy");
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("http1 handshake");
            tokio::spawn(connection);
            KeepAlive { sender }
        })
        .await
        .expect("connected in time")
    }

    /// GET on this connection; `Err` once the connection is closed.
    pub async fn get(&mut self, host: &str, path: &str) -> Result<Reply, String> {
        let request = Request::get(path)
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        tokio::time::timeout(DEADLINE, async {
            self.sender.ready().await.map_err(|e| e.to_string())?;
            let response = self
                .sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok(Reply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        })
        .await
        .unwrap_or_else(|_| Err("request timed out".into()))
    }
}

/// Polls (bounded by `limit`) until a new connection to `address` is
/// refused; true if it was.
pub async fn wait_refused(address: SocketAddr, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(address)).await {
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => return true,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    false
}
