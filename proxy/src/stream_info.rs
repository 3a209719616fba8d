//! What is known about one downstream request (or TCP connection) as it
//! flows through the proxy: timing, addresses, protocol, headers, the
//! upstream chosen, the outcome. Access logs and header substitutions
//! (`%DOWNSTREAM_REMOTE_ADDRESS%`, …) read it.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Envoy's response flags: why a request ended the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseFlag {
    /// UH: no healthy upstream host.
    NoHealthyUpstream,
    /// UF: upstream connection failure.
    UpstreamConnectionFailure,
    /// UT: upstream request timeout.
    UpstreamRequestTimeout,
    /// UR: upstream remote reset.
    UpstreamRemoteReset,
    /// UC: upstream connection termination.
    UpstreamConnectionTermination,
    /// NR: no route configured.
    NoRouteFound,
    /// NC: upstream cluster not found.
    NoClusterFound,
    /// DC: downstream connection termination.
    DownstreamConnectionTermination,
    /// SI: stream idle timeout.
    StreamIdleTimeout,
    /// DPE: downstream protocol error.
    DownstreamProtocolError,
    /// UPE: upstream protocol error.
    UpstreamProtocolError,
    /// DT: max duration / request timeout reached.
    DurationTimeout,
}

impl ResponseFlag {
    /// Envoy's short code, as `%RESPONSE_FLAGS%` prints it.
    pub fn short_code(self) -> &'static str {
        match self {
            ResponseFlag::NoHealthyUpstream => "UH",
            ResponseFlag::UpstreamConnectionFailure => "UF",
            ResponseFlag::UpstreamRequestTimeout => "UT",
            ResponseFlag::UpstreamRemoteReset => "UR",
            ResponseFlag::UpstreamConnectionTermination => "UC",
            ResponseFlag::NoRouteFound => "NR",
            ResponseFlag::NoClusterFound => "NC",
            ResponseFlag::DownstreamConnectionTermination => "DC",
            ResponseFlag::StreamIdleTimeout => "SI",
            ResponseFlag::DownstreamProtocolError => "DPE",
            ResponseFlag::UpstreamProtocolError => "UPE",
            ResponseFlag::DurationTimeout => "DT",
        }
    }
}

/// The per-request (or per-connection for TCP) record.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub start_time: SystemTime,
    pub start_instant: Instant,
    /// `None` for a TCP proxy connection.
    pub protocol: Option<http::Version>,
    pub downstream_remote_address: Option<SocketAddr>,
    pub downstream_local_address: Option<SocketAddr>,
    pub request_method: Option<http::Method>,
    /// The original `:path` (path and query) before any rewrite (shares the
    /// request's bytes: no copy per request).
    pub request_path: Option<http::uri::PathAndQuery>,
    /// The `Host`/`:authority` as received (shares the request's bytes).
    pub request_authority: Option<http::HeaderValue>,
    /// The request's `:scheme` (`http` or `https`).
    pub request_scheme: Option<&'static str>,
    /// Request headers as received (only kept when something reads them).
    pub request_headers: http::HeaderMap,
    pub response_headers: http::HeaderMap,
    pub response_trailers: http::HeaderMap,
    pub response_code: Option<u16>,
    pub response_flags: Vec<ResponseFlag>,
    /// Why the response code is what it is (`via_upstream`,
    /// `direct_response`, `route_not_found`, …): `%RESPONSE_CODE_DETAILS%`.
    pub response_code_details: Option<Cow<'static, str>>,
    /// How many times the request was sent upstream (0: never).
    pub upstream_request_attempt_count: u32,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub upstream_cluster: Option<Arc<str>>,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_local_address: Option<SocketAddr>,
    pub upstream_transport_failure_reason: Option<String>,
    pub route_name: Option<Arc<str>>,
    /// Total duration; set when the stream ends.
    pub duration: Option<Duration>,
    /// Time from the start until the first upstream response byte.
    pub response_duration: Option<Duration>,
    /// The `x-request-id` of the request, when there is one.
    pub request_id: Option<String>,
}

impl StreamInfo {
    pub fn new(
        downstream_remote: Option<SocketAddr>,
        downstream_local: Option<SocketAddr>,
    ) -> Self {
        StreamInfo {
            start_time: SystemTime::now(),
            start_instant: Instant::now(),
            protocol: None,
            downstream_remote_address: downstream_remote,
            downstream_local_address: downstream_local,
            request_method: None,
            request_path: None,
            request_authority: None,
            request_scheme: None,
            request_headers: http::HeaderMap::new(),
            response_headers: http::HeaderMap::new(),
            response_trailers: http::HeaderMap::new(),
            response_code: None,
            response_flags: Vec::new(),
            response_code_details: None,
            upstream_request_attempt_count: 0,
            bytes_received: 0,
            bytes_sent: 0,
            upstream_cluster: None,
            upstream_host: None,
            upstream_local_address: None,
            upstream_transport_failure_reason: None,
            route_name: None,
            duration: None,
            response_duration: None,
            request_id: None,
        }
    }

    pub fn add_flag(&mut self, flag: ResponseFlag) {
        if !self.response_flags.contains(&flag) {
            self.response_flags.push(flag);
        }
    }

    /// `%RESPONSE_FLAGS%`: short codes joined by commas, or `-` when none.
    pub fn response_flags_string(&self) -> String {
        if self.response_flags.is_empty() {
            return "-".to_string();
        }
        self.response_flags
            .iter()
            .map(|flag| flag.short_code())
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_render_as_envoy_short_codes() {
        let mut info = StreamInfo::new(None, None);
        assert_eq!(info.response_flags_string(), "-");
        info.add_flag(ResponseFlag::NoHealthyUpstream);
        info.add_flag(ResponseFlag::UpstreamRequestTimeout);
        info.add_flag(ResponseFlag::NoHealthyUpstream);
        assert_eq!(info.response_flags_string(), "UH,UT");
    }
}
