//! Why an upstream request or connection failed, classified the way Envoy
//! classifies it: the response flag (`UF`, `UC`, `UR`, `UPE`), the reset
//! reason and `%UPSTREAM_TRANSPORT_FAILURE_REASON%`, and the body of the
//! local reply Envoy sends downstream.

use std::error::Error as _;
use std::io;

use crate::stream_info::ResponseFlag;

/// A failure talking to one upstream host.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connection was not established within `connect_timeout`.
    #[error("upstream connect timeout")]
    ConnectTimeout,
    /// The TCP connection could not be established (refused, unreachable, …).
    #[error("upstream connect failed: {0}")]
    ConnectFailed(#[source] io::Error),
    /// The connection closed before a complete response arrived.
    #[error("upstream connection terminated: {0}")]
    ConnectionTermination(String),
    /// The upstream reset the stream (HTTP/2 `RST_STREAM`).
    #[error("upstream reset the stream: {reason}")]
    Reset {
        reason: String,
        /// The peer refused the stream (`REFUSED_STREAM`): safe to retry.
        refused: bool,
    },
    /// The upstream sent something that is not valid HTTP.
    #[error("upstream protocol error: {0}")]
    Protocol(String),
}

impl UpstreamError {
    /// The response flag Envoy logs for this failure.
    pub fn response_flag(&self) -> ResponseFlag {
        match self {
            UpstreamError::ConnectTimeout | UpstreamError::ConnectFailed(_) => {
                ResponseFlag::UpstreamConnectionFailure
            }
            UpstreamError::ConnectionTermination(_) => ResponseFlag::UpstreamConnectionTermination,
            UpstreamError::Reset { .. } => ResponseFlag::UpstreamRemoteReset,
            UpstreamError::Protocol(_) => ResponseFlag::UpstreamProtocolError,
        }
    }

    /// Envoy's stream reset reason (`Http::Utility::resetReasonToString`).
    pub fn reset_reason(&self) -> &'static str {
        match self {
            UpstreamError::ConnectTimeout => "connection timeout",
            UpstreamError::ConnectFailed(_) => "remote connection failure",
            UpstreamError::ConnectionTermination(_) => "connection termination",
            UpstreamError::Reset { refused: true, .. } => "remote refused stream reset",
            UpstreamError::Reset { refused: false, .. } => "remote reset",
            UpstreamError::Protocol(_) => "protocol error",
        }
    }

    /// The raw value behind Envoy's `%UPSTREAM_TRANSPORT_FAILURE_REASON%`:
    /// for a refused connection Envoy 1.40 has
    /// `delayed connect error: Connection refused` (its access log prints it
    /// with spaces as underscores); empty when Envoy has none (a connect
    /// timeout has no transport failure reason).
    pub fn transport_failure_reason(&self) -> String {
        match self {
            UpstreamError::ConnectFailed(error) => {
                let text = error.to_string();
                // std appends " (os error N)" to the strerror text Envoy uses.
                let strerror = text.split(" (os error").next().unwrap_or(&text);
                format!("delayed connect error: {strerror}")
            }
            _ => String::new(),
        }
    }

    /// The body of the 503 Envoy answers downstream when the upstream fails
    /// before response headers. Envoy 1.40 leaves the transport failure
    /// reason of a refused or failed TCP connect out of the body (it is only
    /// in `%UPSTREAM_TRANSPORT_FAILURE_REASON%`).
    pub fn local_reply_body(&self) -> String {
        format!(
            "upstream connect error or disconnect/reset before headers. reset reason: {}",
            self.reset_reason()
        )
    }

    /// Whether the request certainly never reached the upstream application
    /// (a retry cannot duplicate it).
    pub fn is_before_request_sent(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectTimeout
                | UpstreamError::ConnectFailed(_)
                | UpstreamError::Reset { refused: true, .. }
        )
    }

    /// Classifies an error from a hyper client connection.
    pub(crate) fn from_hyper(error: hyper::Error) -> UpstreamError {
        if let Some(h2_error) = find_source::<h2::Error>(&error) {
            if h2_error.is_reset() && h2_error.is_remote() {
                let reason = h2_error.reason().unwrap_or(h2::Reason::INTERNAL_ERROR);
                return UpstreamError::Reset {
                    reason: format!("{reason:?}"),
                    refused: reason == h2::Reason::REFUSED_STREAM,
                };
            }
            if h2_error.is_go_away() || h2_error.is_io() {
                return UpstreamError::ConnectionTermination(error.to_string());
            }
            return UpstreamError::Protocol(error.to_string());
        }
        if error.is_parse() || error.is_parse_status() || error.is_parse_too_large() {
            return UpstreamError::Protocol(error.to_string());
        }
        UpstreamError::ConnectionTermination(describe(&error))
    }
}

/// hyper's message plus its innermost cause (`connection reset by peer`).
fn describe(error: &hyper::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.source().is_none() {
            text.push_str(": ");
            text.push_str(&cause.to_string());
        }
        source = cause.source();
    }
    text
}

fn find_source<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_connection_reads_like_envoy() {
        let error = UpstreamError::ConnectFailed(io::Error::from_raw_os_error(111));
        assert_eq!(error.response_flag().short_code(), "UF");
        assert_eq!(
            error.transport_failure_reason(),
            "delayed connect error: Connection refused"
        );
        assert_eq!(
            error.local_reply_body(),
            "upstream connect error or disconnect/reset before headers. reset reason: remote \
             connection failure"
        );
        assert!(error.is_before_request_sent());
    }

    #[test]
    fn timeout_has_no_transport_reason() {
        let error = UpstreamError::ConnectTimeout;
        assert_eq!(error.response_flag().short_code(), "UF");
        assert_eq!(error.transport_failure_reason(), "");
        assert!(error
            .local_reply_body()
            .ends_with("reset reason: connection timeout"));
    }

    #[test]
    fn flags_per_kind() {
        let reset = UpstreamError::Reset {
            reason: "CANCEL".into(),
            refused: false,
        };
        assert_eq!(reset.response_flag().short_code(), "UR");
        assert_eq!(reset.reset_reason(), "remote reset");
        let closed = UpstreamError::ConnectionTermination("closed".into());
        assert_eq!(closed.response_flag().short_code(), "UC");
        assert!(!closed.is_before_request_sent());
        let bad = UpstreamError::Protocol("bad status".into());
        assert_eq!(bad.response_flag().short_code(), "UPE");
    }
}
