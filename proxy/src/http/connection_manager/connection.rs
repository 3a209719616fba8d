//! One downstream HTTP connection: hyper's HTTP/1.1 or HTTP/2 server
//! (by `codec_type`), wrapped with the connection-level timeouts
//! (`idle_timeout`, `max_connection_duration`) and draining; HTTP/2
//! streams run in the connection's task ([`LocalStreams`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::config::HttpConnectionManager;
use super::local_streams::LocalStreams;
use super::read_ahead::ReadAhead;
use super::spare_timer::SpareTimer;
use crate::activity::{Activity, Tracked};
use crate::drain::DrainSignal;

/// What every stream of one connection shares.
pub(super) struct ConnectionContext {
    pub hcm: Arc<HttpConnectionManager>,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub active_streams: AtomicUsize,
    /// 0 until the first request tells the protocol (AUTO codec), then 1
    /// for HTTP/1.x or 2 for HTTP/2.
    protocol: AtomicU8,
    pub drain: DrainSignal,
    /// The route-timeout timer kept for the connection's next request.
    pub spare_timer: SpareTimer,
}

impl ConnectionContext {
    /// Counts the connection as HTTP/1 or HTTP/2 once, on its first request.
    pub fn count_protocol(&self, version: http::Version) {
        let code = if version == http::Version::HTTP_2 {
            2
        } else {
            1
        };
        if self.protocol.swap(code, Ordering::Relaxed) != 0 {
            return;
        }
        let stats = &self.hcm.stats;
        if code == 2 {
            stats.downstream_cx_http2_total.inc();
            stats.downstream_cx_http2_active.inc();
        } else {
            stats.downstream_cx_http1_total.inc();
            stats.downstream_cx_http1_active.inc();
        }
    }
}

/// Serves HTTP on one accepted connection until it closes.
pub async fn serve_connection(
    hcm: Arc<HttpConnectionManager>,
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    drain: DrainSignal,
) {
    let stats = hcm.stats.clone();
    stats.downstream_cx_total.inc();
    stats.downstream_cx_active.inc();
    let activity = Activity::default();
    activity.touch();
    let context = Arc::new(ConnectionContext {
        hcm: hcm.clone(),
        remote,
        local,
        active_streams: AtomicUsize::new(0),
        protocol: AtomicU8::new(0),
        drain: drain.clone(),
        spare_timer: SpareTimer::default(),
    });
    let service_context = context.clone();
    let service = service_fn(move |request| {
        let context = service_context.clone();
        async move { Ok::<_, Infallible>(super::stream::handle(context, request).await) }
    });
    let tracked = Tracked::new(stream, activity.clone());
    // AUTO codec: the HTTP/2 preface check's 24-byte read and the request
    // head come from one read (see read_ahead.rs).
    let auto_codec = hcm.builder.is_http1_available() && hcm.builder.is_http2_available();
    let io = ReadAhead::new(tracked, auto_codec);
    let connection = hcm.builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    // HTTP/2 streams run in this task, polled with the connection.
    let mut streams = LocalStreams::default();

    let mut drain = drain;
    let mut closing = false;
    let mut max_duration = hcm
        .max_connection_duration
        .map(|d| tokio::time::Instant::now() + d);
    let close_at = tokio::time::sleep(Duration::from_secs(365 * 86400));
    tokio::pin!(close_at);
    loop {
        let idle_check = match hcm.idle_timeout {
            Some(idle) => idle.saturating_sub(activity.idle_for()),
            None => Duration::from_secs(86400),
        };
        tokio::select! {
            result = std::future::poll_fn(|cx| streams.poll_connection(connection.as_mut(), cx)) => {
                if let Err(error) = result {
                    tracing::debug!(target: "sluice::http", %remote, %error, "downstream connection error");
                }
                break;
            }
            wait = drain.connection_should_close(), if !closing => {
                closing = true;
                close_at.as_mut().reset(tokio::time::Instant::now() + wait);
            }
            _ = close_at.as_mut(), if closing => {
                stats.downstream_cx_drain_close.inc();
                connection.as_mut().graceful_shutdown();
                close_at.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(365 * 86400));
            }
            _ = tokio::time::sleep(idle_check), if hcm.idle_timeout.is_some() => {
                let idle = hcm.idle_timeout.unwrap_or_default();
                if context.active_streams.load(Ordering::Relaxed) == 0 && activity.idle_for() >= idle {
                    stats.downstream_cx_idle_timeout.inc();
                    connection.as_mut().graceful_shutdown();
                    activity.touch();
                }
            }
            _ = sleep_until_opt(max_duration), if max_duration.is_some() => {
                stats.downstream_cx_max_duration_reached.inc();
                connection.as_mut().graceful_shutdown();
                max_duration = None;
            }
        }
    }
    stats.downstream_cx_active.dec();
    match context.protocol.load(Ordering::Relaxed) {
        1 => stats.downstream_cx_http1_active.dec(),
        2 => stats.downstream_cx_http2_active.dec(),
        _ => {}
    }
    // Streams still waiting on an upstream finish (and log) on their own
    // time, as they would in tasks of their own.
    streams.finish().await;
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
