//! The admin listener: HTTP/1.1 over hyper, one task per connection,
//! requests answered by [`super::handle`]. On shutdown it stops accepting,
//! lets in-flight requests finish (so `/quitquitquit` gets its `OK`), and
//! closes idle keep-alive connections.

use crate::stream_info::StreamInfo;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{header, Request, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{handle, AdminContext};
use crate::http::body::{full, Body};
use crate::logging::targets;

/// Largest request body read (form-encoded `/runtime_modify`).
const MAX_BODY_BYTES: usize = 1 << 20;
/// How long open connections get to finish once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves the admin API on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, ctx: Arc<dyn AdminContext>, shutdown: impl Future) {
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(stream, peer, ctx.clone(), closing_rx.clone()));
                }
                Err(error) => {
                    // Out of descriptors and similar: back off instead of spinning.
                    tracing::warn!(target: targets::ADMIN, %error, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        connections.abort_all();
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    ctx: Arc<dyn AdminContext>,
    mut closing: watch::Receiver<bool>,
) {
    let local = stream.local_addr().ok();
    let service = service_fn(move |request: Request<Incoming>| {
        let ctx = ctx.clone();
        async move {
            let mut info = StreamInfo::new(Some(peer), local);
            info.protocol = Some(request.version());
            info.request_method = Some(request.method().clone());
            info.request_path = request.uri().path_and_query().cloned();
            info.request_headers = request.headers().clone();
            let response = answer(ctx.clone(), request).await;
            info.response_code = Some(response.status().as_u16());
            info.response_headers = response.headers().clone();
            info.bytes_sent = http_body::Body::size_hint(response.body())
                .exact()
                .unwrap_or(0);
            info.duration = Some(info.start_instant.elapsed());
            ctx.log_request(&info);
            Ok::<_, Infallible>(response)
        }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(target: targets::ADMIN, %error, "admin connection error");
            }
            return;
        }
        _ = closing.wait_for(|closing| *closing) => {}
    }
    connection.as_mut().graceful_shutdown();
    if let Err(error) = connection.await {
        tracing::debug!(target: targets::ADMIN, %error, "admin connection error");
    }
}

async fn answer(ctx: Arc<dyn AdminContext>, request: Request<Incoming>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let form = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) if is_form => {
            Some(String::from_utf8_lossy(&collected.to_bytes()).into_owned())
        }
        Ok(_) => None,
        Err(error) => {
            let status = if error.is::<LengthLimitError>() {
                http::StatusCode::PAYLOAD_TOO_LARGE
            } else {
                http::StatusCode::BAD_REQUEST
            };
            let mut response = Response::new(full(format!("cannot read request body: {error}\n")));
            *response.status_mut() = status;
            return response;
        }
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    handle(ctx.as_ref(), &parts.method, path_and_query, form.as_deref())
}
