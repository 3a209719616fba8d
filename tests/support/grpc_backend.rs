//! An in-process gRPC-like backend (HTTP/1.1 and h2c on one port) that answers
//! every request the way a gRPC server does: status 200,
//! `content-type: application/grpc`, one length-prefixed message (the
//! backend's name), then trailers `grpc-status: 0`, `grpc-message: ok` and
//! `x-trailer-backend: <name>`. Response headers `x-seen-content-type` and
//! `x-seen-te` report what the request carried.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

pub type GrpcBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub struct GrpcBackend {
    pub name: String,
    pub address: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Requests served so far.
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GrpcBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gRPC message frame: uncompressed flag, big-endian length, payload.
pub fn grpc_frame(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.push(0);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

impl GrpcBackend {
    pub async fn start(name: &str) -> GrpcBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let backend_name = name.to_string();
        let (conns, reqs) = (connections.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let name = backend_name.clone();
                let reqs = reqs.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let name = name.clone();
                        reqs.fetch_add(1, Ordering::SeqCst);
                        async move { Ok::<_, Infallible>(answer(&name, req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        GrpcBackend {
            name: name.to_string(),
            address,
            connections,
            requests,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }
}

async fn answer(name: &str, request: Request<Incoming>) -> Response<GrpcBody> {
    let (parts, body) = request.into_parts();
    let _ = body.collect().await;
    let seen = |header: &str| {
        parts
            .headers
            .get(header)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    trailers.insert("grpc-message", "ok".parse().unwrap());
    trailers.insert("x-trailer-backend", name.parse().unwrap());
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(grpc_frame(name.as_bytes()))),
        Ok(Frame::trailers(trailers)),
    ];
    let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert("content-type", "application/grpc".parse().unwrap());
    headers.insert("x-seen-content-type", seen("content-type").parse().unwrap());
    headers.insert("x-seen-te", seen("te").parse().unwrap());
    response
}
