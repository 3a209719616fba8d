//! One HTTP request/response exchange (a "stream" in Envoy's terms): header
//! preparation, route selection and the route's action (forward, redirect,
//! direct response), response headers, and handing the body to the
//! [`ResponseBody`] that closes the stream's books.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::connection::ConnectionContext;
use super::headers;
use super::local_reply::{self, local_reply};
use super::request_body::RequestProgress;
use super::response_body::{ResponseBody, StreamEnd};
use crate::http::body::{self, Body};
use crate::http::router::{RouteAction, WeightedClusterEntry};
use crate::stream_info::{ResponseFlag, StreamInfo};

/// What the route decided and what the forwarder produced, ready to send.
pub(super) struct Outcome<'a> {
    pub response: Response<Body>,
    /// The route timeout's deadline, still running while the body streams.
    pub deadline: Option<tokio::time::Instant>,
    /// The route's idle timeout: `None` unset (the connection manager's
    /// applies), zero disabled.
    pub idle_timeout: Option<std::time::Duration>,
    /// The weighted cluster picked, whose header mutations also apply.
    pub weighted: Option<&'a WeightedClusterEntry>,
}

impl Outcome<'_> {
    fn local(response: Response<Body>) -> Self {
        Outcome {
            response,
            deadline: None,
            idle_timeout: None,
            weighted: None,
        }
    }
}

pub(super) async fn handle(
    context: Arc<ConnectionContext>,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    let hcm = context.hcm.clone();
    let stats = &hcm.stats;
    let version = request.version();
    context.active_streams.fetch_add(1, Ordering::Relaxed);
    context.count_protocol(version);
    stats.downstream_rq_total.inc();
    stats.downstream_rq_active.inc();
    if version == http::Version::HTTP_2 {
        stats.downstream_rq_http2_total.inc();
    } else {
        stats.downstream_rq_http1_total.inc();
    }

    let progress = Arc::new(RequestProgress::default());
    // Closes the books if this future is dropped before it returns a
    // response (the client reset the stream or went away).
    // Boxed once here: the response body keeps it, and the request's
    // future stays small (it is moved on its way into hyper's task).
    let mut pending = PendingStream(Some(Box::new(StreamEnd {
        info: StreamInfo::new(Some(context.remote), Some(context.local)),
        context: context.clone(),
        request: progress.clone(),
    })));
    let info = pending.info_mut();
    info.protocol = Some(version);
    let (mut parts, incoming) = request.into_parts();
    info.request_authority = parts.headers.get(header::HOST).cloned();
    if info.request_authority.is_none() {
        // HTTP/2 carries the authority in the URI; routing and upstreams want Host.
        if let Some(authority) = parts.uri.authority() {
            if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
                info.request_authority = Some(value.clone());
                parts.headers.insert(header::HOST, value);
            }
        }
    }
    info.request_method = Some(parts.method.clone());
    info.request_path = parts.uri.path_and_query().cloned();

    let request_id = headers::prepare_request(&hcm, &mut parts.headers, context.remote);
    info.request_id = request_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // One table for the whole request, even if RDS swaps it meanwhile.
    let routes = hcm.route_table();
    if hcm.access_logs.needs_request_headers()
        || routes.as_ref().is_some_and(|r| r.reads_request_headers())
    {
        info.request_headers = parts.headers.clone();
    }
    let grpc = local_reply::is_grpc(&parts.headers);

    let mut outcome = match routes.as_ref().and_then(|r| r.find(&parts).map(|m| (r, m))) {
        None => {
            stats.no_route.inc();
            info.add_flag(ResponseFlag::NoRouteFound);
            Outcome::local(local_reply(StatusCode::NOT_FOUND, "", grpc))
        }
        Some((routes, matched)) => {
            if !matched.route.name.is_empty() {
                info.route_name = Some(Arc::from(matched.route.name.as_str()));
            }
            let mut outcome = match &matched.route.action {
                RouteAction::DirectResponse(direct) => {
                    stats.rq_direct_response.inc();
                    let mut response = Response::new(match &direct.body {
                        Some(bytes) if !bytes.is_empty() => body::full(bytes.clone()),
                        _ => body::empty(),
                    });
                    *response.status_mut() = direct.status;
                    if direct.body.as_ref().is_some_and(|b| !b.is_empty()) {
                        response
                            .headers_mut()
                            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                    }
                    Outcome::local(response)
                }
                RouteAction::Redirect(redirect) => {
                    stats.rq_redirect.inc();
                    let location = redirect.location(&parts, "http");
                    let mut response = Response::new(body::empty());
                    *response.status_mut() = redirect.response_code;
                    if let Ok(value) = HeaderValue::from_str(&location) {
                        response.headers_mut().insert(header::LOCATION, value);
                    }
                    Outcome::local(response)
                }
                RouteAction::Forward(action) => {
                    let body = super::request_body::RequestBody::new(
                        incoming,
                        progress.clone(),
                        hcm.request_timeout,
                    );
                    let request = super::forward::ForwardRequest {
                        parts,
                        body,
                        progress: &progress,
                        grpc,
                    };
                    let forward =
                        super::forward::forward(&context, routes, &matched, action, request, info);
                    match hcm.max_stream_duration {
                        None => forward.await,
                        Some(max) => {
                            let limit = tokio::time::Instant::now() + max;
                            match tokio::time::timeout_at(limit, forward).await {
                                Ok(mut outcome) => {
                                    outcome.deadline =
                                        Some(outcome.deadline.map_or(limit, |d| d.min(limit)));
                                    outcome
                                }
                                Err(_) => {
                                    stats.downstream_rq_max_duration_reached.inc();
                                    info.add_flag(ResponseFlag::DurationTimeout);
                                    Outcome::local(local_reply(
                                        StatusCode::REQUEST_TIMEOUT,
                                        local_reply::DURATION_TIMEOUT,
                                        grpc,
                                    ))
                                }
                            }
                        }
                    }
                }
            };
            // `%RESPONSE_CODE%` in response header values.
            info.response_code = Some(outcome.response.status().as_u16());
            routes.apply_response_headers(
                &matched,
                outcome.weighted,
                outcome.response.headers_mut(),
                info,
            );
            outcome
        }
    };

    let response_headers = outcome.response.headers_mut();
    headers::apply_server_header(&hcm, response_headers);
    if hcm.always_set_request_id_in_response {
        if let Some(id) = request_id {
            response_headers.insert(headers::X_REQUEST_ID.clone(), id);
        }
    }
    if context.drain.state() != crate::drain::DrainState::Serving && version < http::Version::HTTP_2
    {
        response_headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = outcome.response.status().as_u16();
    stats.record_status(status);
    info.response_code = Some(status);
    if !hcm.access_logs.is_empty() {
        info.response_headers = outcome.response.headers().clone();
    }
    info.response_duration = Some(info.start_instant.elapsed());

    let idle_timeout = match outcome.idle_timeout {
        Some(route_idle) => (!route_idle.is_zero()).then_some(route_idle),
        None => hcm.stream_idle_timeout,
    };
    let (response_parts, response_body) = outcome.response.into_parts();
    let end = pending.responded();
    Response::from_parts(
        response_parts,
        ResponseBody::new(response_body, end, idle_timeout, outcome.deadline),
    )
}

/// A stream between its request and its response: dropped before
/// [`PendingStream::responded`] (hyper drops the request's future when the
/// client resets the stream or the connection goes away), it finishes the
/// stream as not completed — counters, `DC` flag, access log — as Envoy
/// does for a downstream reset.
struct PendingStream(Option<Box<StreamEnd>>);

impl PendingStream {
    fn info_mut(&mut self) -> &mut StreamInfo {
        &mut self.0.as_mut().expect("stream pending").info
    }

    /// Hands the stream's books to the response body.
    fn responded(mut self) -> Box<StreamEnd> {
        self.0.take().expect("stream pending")
    }
}

impl Drop for PendingStream {
    fn drop(&mut self) {
        if let Some(end) = self.0.take() {
            end.finish(false);
        }
    }
}
