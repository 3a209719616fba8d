//! Per-host HTTP connection pools. HTTP/1.1 keeps a bounded list of idle
//! keep-alive connections for reuse (see [`super::http1`]); HTTP/2
//! multiplexes every request over one connection per host, reconnecting
//! when it closes. Both honour the cluster's `connect_timeout`, idle
//! timeout and `max_requests_per_connection`.
//!
//! A request that fails on a reused connection before it was written (the
//! server closed the idle connection) is sent again, once, on a fresh
//! connection.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::connect::{connect, ConnState, ConnectionGuard, InFlight};
use super::host::Host;
use super::http1;
use super::stats::ClusterStats;
use super::UpstreamError;
use crate::http::body::Body;

/// The HTTP protocol spoken to a cluster's hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    Http2,
}

/// Cluster-wide settings every host pool of the cluster shares.
#[derive(Debug)]
pub(crate) struct PoolContext {
    pub protocol: UpstreamProtocol,
    pub connect_timeout: Duration,
    /// `None`: idle connections are never closed by Sluice.
    pub idle_timeout: Option<Duration>,
    pub max_requests_per_connection: Option<u32>,
    pub stats: Arc<ClusterStats>,
}

struct Http2Connection {
    sender: http2::SendRequest<Body>,
    state: Arc<ConnState>,
}

/// The connections of one host.
pub(crate) struct HostPool {
    context: Arc<PoolContext>,
    pub(super) http1: http1::IdleConnections,
    http2: ArcSwapOption<Http2Connection>,
    http2_connecting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for HostPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostPool")
            .field("protocol", &self.context.protocol)
            .finish_non_exhaustive()
    }
}

impl HostPool {
    pub(crate) fn new(context: Arc<PoolContext>) -> HostPool {
        HostPool {
            context,
            http1: http1::IdleConnections::default(),
            http2: ArcSwapOption::empty(),
            http2_connecting: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn context(&self) -> &Arc<PoolContext> {
        &self.context
    }

    /// Number of idle HTTP/1.1 connections held.
    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.http1.len()
    }

    fn usable(&self, connection: &Http2Connection) -> bool {
        let under_limit = self
            .context
            .max_requests_per_connection
            .is_none_or(|max| connection.state.requests() < max);
        !connection.sender.is_closed() && under_limit
    }

    async fn http2_connection(&self, host: &Host) -> Result<Arc<Http2Connection>, UpstreamError> {
        if let Some(current) = self.http2.load_full() {
            if self.usable(&current) {
                return Ok(current);
            }
        }
        let _single_flight = self.http2_connecting.lock().await;
        if let Some(current) = self.http2.load_full() {
            if self.usable(&current) {
                return Ok(current);
            }
            if !current.sender.is_closed() {
                self.context.stats.upstream_cx_max_requests.inc();
            }
        }
        let fresh = Arc::new(connect_http2(host, &self.context).await?);
        self.http2.store(Some(fresh.clone()));
        Ok(fresh)
    }

    fn forget_http2(&self, connection: &Arc<Http2Connection>) {
        self.http2
            .compare_and_swap(&Some(connection.clone()), None::<Arc<Http2Connection>>);
    }
}

/// An HTTP/2 request's hold on its connection: keeps the request counted
/// on the connection (for the idle timeout); drop it when the response body
/// is done.
#[derive(Debug)]
pub(crate) struct Lent {
    _in_flight: InFlight,
}

/// A response as the pool hands it out, before the cluster's bookkeeping.
// The HTTP/1.1 variant carries its connection; boxing it would cost an
// allocation per request (the router boxes the whole body once anyway).
#[allow(clippy::large_enum_variant)]
pub(crate) enum PooledResponse {
    /// The body owns its HTTP/1.1 connection until it ended.
    Http1(Response<http1::ResponseBody>),
    Http2(Response<Incoming>, Lent),
}

/// Sends `request` to `host` over its pool.
///
/// `ready` is called when a connection is ready to carry the request
/// (Envoy's pool ready); it may be called again if the request is replayed
/// on a fresh connection.
pub(crate) async fn send(
    host: &Arc<Host>,
    request: Request<Body>,
    ready: &mut (dyn FnMut() + Send),
) -> Result<PooledResponse, UpstreamError> {
    match host.pool().context().protocol {
        UpstreamProtocol::Http1 => {
            let mut request = request;
            prepare_http1(&mut request, host);
            http1::send(host, request, ready)
                .await
                .map(PooledResponse::Http1)
        }
        UpstreamProtocol::Http2 => {
            // Boxed: its state (hyper's handshake) is twice the HTTP/1.1
            // path's, and every caller's future would carry (and move) it.
            let (response, lent) = Box::pin(send_http2(host, request, ready)).await?;
            Ok(PooledResponse::Http2(response, lent))
        }
    }
}

async fn send_http2(
    host: &Arc<Host>,
    mut request: Request<Body>,
    ready: &mut (dyn FnMut() + Send),
) -> Result<(Response<Incoming>, Lent), UpstreamError> {
    prepare_http2(&mut request, host);
    let pool = host.pool();
    let mut may_retry = true;
    loop {
        let connection = pool.http2_connection(host).await?;
        let mut sender = connection.sender.clone();
        let in_flight = connection.state.begin_request();
        ready();
        let outcome = match sender.ready().await {
            Ok(()) => sender.try_send_request(request).await,
            Err(error) => {
                drop(in_flight);
                pool.forget_http2(&connection);
                if may_retry {
                    may_retry = false;
                    continue;
                }
                return Err(UpstreamError::from_hyper(error));
            }
        };
        match outcome {
            Ok(response) => {
                let lent = Lent {
                    _in_flight: in_flight,
                };
                return Ok((response, lent));
            }
            Err(mut failure) => {
                drop(in_flight);
                let unsent = failure.take_message();
                let error = failure.into_error();
                if let (Some(again), true) = (unsent, may_retry) {
                    pool.forget_http2(&connection);
                    request = again;
                    may_retry = false;
                    continue;
                }
                return Err(UpstreamError::from_hyper(error));
            }
        }
    }
}

/// Runs a connection until it closes (or idles out), keeping its counters.
fn drive<F>(connection: F, guard: ConnectionGuard, state: Arc<ConnState>, context: &PoolContext)
where
    F: std::future::Future + Send + 'static,
{
    let idle_timeout = context.idle_timeout;
    let stats = context.stats.clone();
    tokio::spawn(async move {
        let _guard = guard;
        match idle_timeout {
            Some(idle) => tokio::select! {
                _ = connection => {}
                _ = state.idle_expired(idle) => stats.upstream_cx_idle_timeout.inc(),
            },
            None => {
                connection.await;
            }
        }
    });
}

async fn connect_http2(
    host: &Host,
    context: &Arc<PoolContext>,
) -> Result<Http2Connection, UpstreamError> {
    let (stream, guard) = connect(host, context).await?;
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(UpstreamError::from_hyper)?;
    context.stats.upstream_cx_http2_total.inc();
    let state = ConnState::new();
    drive(connection, guard, state.clone(), context);
    Ok(Http2Connection { sender, state })
}

/// HTTP/1.1 wants an origin-form target and a Host header.
fn prepare_http1(request: &mut Request<Body>, host: &Host) {
    *request.version_mut() = Version::HTTP_11;
    if !request.headers().contains_key(header::HOST) {
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| host.address().to_string());
        if let Ok(value) = HeaderValue::from_str(&authority) {
            request.headers_mut().insert(header::HOST, value);
        }
    }
    if request.method() != http::Method::CONNECT && request.uri().authority().is_some() {
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(path);
    }
}

/// HTTP/2 carries the authority in `:authority` (from the URI) and forbids
/// connection-specific headers.
fn prepare_http2(request: &mut Request<Body>, host: &Host) {
    *request.version_mut() = Version::HTTP_2;
    let headers = request.headers_mut();
    let host_header = headers.remove(header::HOST);
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::HeaderName::from_static("keep-alive"),
        header::HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
    if headers
        .get(header::TE)
        .is_some_and(|te| te.as_bytes() != b"trailers")
    {
        headers.remove(header::TE);
    }
    let authority = request.uri().authority().cloned().or_else(|| {
        host_header
            .and_then(|value| Authority::try_from(value.as_bytes()).ok())
            .or_else(|| Authority::try_from(host.address().to_string()).ok())
    });
    let mut parts = request.uri().clone().into_parts();
    if parts.scheme.is_none() {
        parts.scheme = Some(Scheme::HTTP);
    }
    parts.authority = authority;
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}
