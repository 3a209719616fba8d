//! The router's upstream half: pick the cluster and host, rewrite the
//! request for the upstream, send it through the cluster's connection pool
//! under the route timeout, and turn failures into Envoy's local replies
//! and response flags.

use std::sync::Arc;

use http::{header, HeaderValue, Request, StatusCode};

use super::connection::ConnectionContext;
use super::headers;
use super::local_reply::{self, local_reply};
use super::request_body::{RequestBody, RequestProgress};
use super::spare_timer::{race, SpareTimer};
use super::stream::Outcome;
use crate::http::body;
use crate::http::router::{ForwardAction, RouteMatch, RouteTable};
use crate::stream_info::{ResponseFlag, StreamInfo};

/// The downstream request as the router forwards it.
pub(super) struct ForwardRequest<'p> {
    pub parts: http::request::Parts,
    pub body: RequestBody,
    pub progress: &'p RequestProgress,
    pub grpc: bool,
}

pub(super) async fn forward<'a>(
    context: &ConnectionContext,
    routes: &RouteTable,
    matched: &RouteMatch<'a>,
    action: &'a ForwardAction,
    request: ForwardRequest<'_>,
    info: &mut StreamInfo,
) -> Outcome<'a> {
    let ForwardRequest {
        mut parts,
        body: request_body,
        progress,
        grpc,
    } = request;
    let hcm = &context.hcm;
    let choice = action.cluster_for(&parts, rand::random());
    let weighted = choice.weighted;
    // A cluster still warming (no first assignment yet) is not found, as in Envoy.
    let cluster = choice
        .name
        .and_then(|name| hcm.clusters.get(name))
        .filter(|cluster| cluster.is_warm());
    let reply = |status: StatusCode, text: &str| Outcome {
        response: local_reply(status, text, grpc),
        deadline: None,
        idle_timeout: None,
        weighted,
    };
    let Some(cluster) = cluster else {
        hcm.stats.no_cluster.inc();
        info.add_flag(ResponseFlag::NoClusterFound);
        return reply(action.cluster_not_found_response_code, "");
    };
    info.upstream_cluster = Some(Arc::from(cluster.name()));

    let mut set_cookies = Vec::new();
    let hash = if action.hash_policy.generates_cookies() {
        action.compute_hash_setting_cookies(&parts, context.remote, context.local, &mut set_cookies)
    } else {
        action.compute_hash(&parts, Some(context.remote.ip()))
    };
    let Some(host) = cluster.choose_host(hash) else {
        info.add_flag(ResponseFlag::NoHealthyUpstream);
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            local_reply::NO_HEALTHY_UPSTREAM,
        );
    };
    info.upstream_host = Some(host.address());

    // Envoy's order: header mutations, then the Host rewrite (which may
    // read the original path), then the path rewrite.
    routes.apply_request_headers(matched, weighted, &mut parts.headers, info);
    let new_host = match action.rewritten_host(&parts, weighted) {
        Some(host) => HeaderValue::from_str(&host).ok(),
        None if action.auto_host_rewrite() => {
            let name = if host.hostname().is_empty() {
                host.address().to_string()
            } else {
                format!("{}:{}", host.hostname(), host.address().port())
            };
            HeaderValue::from_str(&name).ok()
        }
        None => None,
    };
    if let Some(value) = new_host {
        // Envoy (since 1.35) keeps the host from before the rewrite.
        if let Some(original) = parts.headers.insert(header::HOST, value) {
            if !hcm.suppress_envoy_headers {
                parts
                    .headers
                    .insert(headers::X_ENVOY_ORIGINAL_HOST.clone(), original);
            }
        }
    }
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if let Some(new_path) = action.rewrite_path(path_and_query) {
        if let Ok(original) = HeaderValue::from_str(path_and_query) {
            parts
                .headers
                .insert(headers::X_ENVOY_ORIGINAL_PATH.clone(), original);
        }
        match new_path.parse() {
            Ok(uri) => parts.uri = uri,
            Err(_) => {
                return reply(StatusCode::BAD_REQUEST, "invalid rewritten path");
            }
        }
    } else if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        // Upstreams get origin-form; the authority travels in Host (which a
        // host rewrite may have changed).
        if let Some(path_and_query) = parts.uri.path_and_query().cloned() {
            parts.uri = http::Uri::from(path_and_query);
        }
    }

    let timeout = action.timeout;
    if let Some(timeout_ms) = &action.timeout_ms_header {
        if !hcm.suppress_envoy_headers {
            parts.headers.insert(
                headers::X_ENVOY_EXPECTED_RQ_TIMEOUT_MS.clone(),
                timeout_ms.clone(),
            );
        }
    }
    let started = tokio::time::Instant::now();
    let deadline = timeout.map(|t| started + t);
    // A bodiless request (most GETs) needs no wrapper, and an empty body
    // boxes without allocating.
    let request_body = if http_body::Body::is_end_stream(&request_body) {
        body::empty()
    } else {
        body::boxed(request_body)
    };
    let request = Request::from_parts(parts, request_body);
    // Pinned here and lent: moved into `wait_for_headers`, the upstream
    // exchange's (large) state would be copied once more per request.
    let send = cluster.send(&host, request);
    tokio::pin!(send);
    let result = wait_for_headers(
        send.as_mut(),
        deadline,
        hcm.stream_idle_timeout,
        progress,
        &context.spare_timer,
    )
    .await;
    match result {
        Err(HeaderWait::RouteTimeout) => {
            cluster.record_timeout(&host);
            cluster.record_response(Some(&host), 504);
            info.add_flag(ResponseFlag::UpstreamRequestTimeout);
            reply(StatusCode::GATEWAY_TIMEOUT, local_reply::UPSTREAM_TIMEOUT)
        }
        Err(HeaderWait::StreamIdle) => {
            hcm.stats.downstream_rq_idle_timeout.inc();
            info.add_flag(ResponseFlag::StreamIdleTimeout);
            reply(StatusCode::REQUEST_TIMEOUT, local_reply::STREAM_TIMEOUT)
        }
        Ok(Err(error)) => {
            if progress
                .timed_out
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                hcm.stats.downstream_rq_timeout.inc();
                return reply(StatusCode::REQUEST_TIMEOUT, local_reply::REQUEST_TIMEOUT);
            }
            info.add_flag(error.response_flag());
            let reason = error.transport_failure_reason();
            if !reason.is_empty() {
                info.upstream_transport_failure_reason = Some(reason);
            }
            cluster.record_response(Some(&host), 503);
            tracing::debug!(target: "sluice::router", cluster = cluster.name(), %error, "upstream request failed");
            reply(StatusCode::SERVICE_UNAVAILABLE, &error.local_reply_body())
        }
        Ok(Ok(response)) => {
            let elapsed = started.elapsed();
            let (mut response_parts, response_body) = response.into_parts();
            headers::remove_hop_by_hop(&mut response_parts.headers);
            for cookie in set_cookies {
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    response_parts.headers.append(header::SET_COOKIE, value);
                }
            }
            if !hcm.suppress_envoy_headers {
                response_parts.headers.insert(
                    headers::X_ENVOY_UPSTREAM_SERVICE_TIME.clone(),
                    headers::number_value(elapsed.as_millis() as u64),
                );
            }
            Outcome {
                response: http::Response::from_parts(response_parts, body::boxed(response_body)),
                deadline,
                idle_timeout: action.idle_timeout,
                weighted,
            }
        }
    }
}

/// Why the wait for upstream response headers ended without them.
enum HeaderWait {
    RouteTimeout,
    StreamIdle,
}

/// Waits for the upstream's response headers, bounded by the route
/// timeout (fixed deadline) and the stream idle timeout, which request body
/// data arriving from downstream resets, as in Envoy. The timer is the
/// connection's spare (see [`SpareTimer`]).
async fn wait_for_headers<F: std::future::Future>(
    mut send: std::pin::Pin<&mut F>,
    deadline: Option<tokio::time::Instant>,
    stream_idle: Option<std::time::Duration>,
    progress: &RequestProgress,
    timers: &SpareTimer,
) -> Result<F::Output, HeaderWait> {
    let next_wake = || {
        let idle_at = stream_idle.map(|idle| {
            tokio::time::Instant::now() + idle.saturating_sub(progress.activity.idle_for())
        });
        match (deadline, idle_at) {
            (Some(d), Some(i)) => Some(d.min(i)),
            (d, i) => d.or(i),
        }
    };
    let Some(wake) = next_wake() else {
        return Ok(send.await);
    };
    let mut spare = timers.take(wake);
    let outcome = loop {
        if let Some(output) = race(&mut send, &mut spare.timer).await {
            break Ok(output);
        }
        let now = tokio::time::Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break Err(HeaderWait::RouteTimeout);
        }
        if stream_idle.is_some_and(|idle| progress.activity.idle_for() >= idle) {
            break Err(HeaderWait::StreamIdle);
        }
        if let Some(wake) = next_wake() {
            spare.timer.as_mut().reset(wake);
        }
    };
    timers.give_back(spare);
    outcome
}
