//! One long-lived h2c (prior knowledge) client connection that many requests
//! share, and responses read with their trailers.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(10);

/// A response with its body and trailers, fully read.
#[derive(Debug)]
pub struct FullReply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub trailers: Option<http::HeaderMap>,
}

impl FullReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .as_ref()?
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    /// A header or, failing that, a trailer (gRPC's trailers-only replies
    /// carry `grpc-status` in the headers).
    pub fn header_or_trailer(&self, name: &str) -> Option<&str> {
        self.header(name).or_else(|| self.trailer(name))
    }
}

/// Opens an h2c connection (bounded) and returns a sender that can be
/// cloned for concurrent streams.
pub async fn h2_connect(address: SocketAddr) -> SendRequest<Full<Bytes>> {
    tokio::time::timeout(DEADLINE, async move {
        let stream = TcpStream::connect(address).await.expect("connect to proxy");
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        tokio::spawn(connection);
        sender
    })
    .await
    .expect("h2 connected in time")
}

/// Sends one request on `sender` and reads the whole response (bounded).
pub async fn h2_send(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<FullReply, String> {
    tokio::time::timeout(DEADLINE, async move {
        sender.ready().await.map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.map_err(|e| e.to_string())?;
        let trailers = collected.trailers().cloned();
        Ok(FullReply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: collected.to_bytes(),
            trailers,
        })
    })
    .await
    .map_err(|_| "no response in time".to_string())?
}
