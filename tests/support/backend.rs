//! In-process HTTP backends (HTTP/1.1 and h2c on one port) that answer with
//! a JSON echo of what they received, so tests can see what Sluice sent.
//!
//! Paths: `/delay/<ms>` sleeps first; `/status/<code>` answers with that
//! status; anything else answers 200.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// What a backend saw, as it reports it in its response body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EchoReply {
    pub backend: String,
    pub method: String,
    pub path: String,
    pub version: String,
    pub headers: BTreeMap<String, String>,
    pub body_len: usize,
    /// The request's authority (`:authority` over HTTP/2; HTTP/1.1 has
    /// only the `host` header, in `headers`).
    #[serde(default)]
    pub authority: Option<String>,
    /// Every header line in arrival order, repeated names included
    /// (`headers` keeps only the last value of a repeated name).
    #[serde(default)]
    pub header_list: Vec<(String, String)>,
}

pub struct Backend {
    pub name: String,
    pub address: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Requests served so far.
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    /// Starts a backend on 127.0.0.1 (any free port).
    pub async fn start(name: &str) -> Backend {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(name: &str, address: SocketAddr) -> Backend {
        let listener = TcpListener::bind(address).await.expect("bind backend");
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
                        let reqs = reqs.clone();
                        async move {
                            reqs.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(echo(&name, req).await)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend {
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

async fn echo(name: &str, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_default();
    let mut status = 200u16;
    if let Some(ms) = path.strip_prefix("/delay/") {
        let ms: u64 = ms
            .split(['/', '?'])
            .next()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms.min(30_000))).await;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        status = code
            .split(['/', '?'])
            .next()
            .unwrap_or("200")
            .parse()
            .unwrap_or(200);
    }
    let header_list: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let headers = header_list.iter().cloned().collect();
    let reply = EchoReply {
        backend: name.to_string(),
        method: parts.method.to_string(),
        path,
        version: format!("{:?}", parts.version),
        headers,
        body_len: body.len(),
        authority: parts.uri.authority().map(|a| a.to_string()),
        header_list,
    };
    let mut response = Response::new(Full::new(Bytes::from(serde_json::to_vec(&reply).unwrap())));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
        .headers_mut()
        .insert("x-backend", name.parse().unwrap());
    response
}
