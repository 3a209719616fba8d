//! Responses Sluice generates itself (no route, no healthy upstream,
//! timeouts, redirects, direct responses), with Envoy's bodies, and gRPC's
//! trailers-only form when the request was gRPC.

use http::{header, HeaderValue, Response, StatusCode};

use crate::http::body::{self, Body};

/// Envoy's local reply body texts.
pub const NO_HEALTHY_UPSTREAM: &str = "no healthy upstream";
pub const UPSTREAM_TIMEOUT: &str = "upstream request timeout";
pub const REQUEST_TIMEOUT: &str = "request timeout";
pub const STREAM_TIMEOUT: &str = "stream timeout";
pub const DURATION_TIMEOUT: &str = "downstream duration timeout";

/// A local reply. For a gRPC request, Envoy answers HTTP 200 with
/// `grpc-status`/`grpc-message` headers (trailers-only) instead.
pub fn local_reply(status: StatusCode, text: &str, grpc: bool) -> Response<Body> {
    if grpc {
        let mut response = Response::new(body::empty());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from(grpc_status_for(status)));
        if !text.is_empty() {
            if let Ok(message) = HeaderValue::from_str(&percent_encode_grpc_message(text)) {
                headers.insert("grpc-message", message);
            }
        }
        return response;
    }
    let mut response = if text.is_empty() {
        Response::new(body::empty())
    } else {
        let mut response = Response::new(body::full(text.to_string()));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
        response
    };
    *response.status_mut() = status;
    response
}

/// Envoy's HTTP → gRPC status mapping (`Grpc::Utility::httpToGrpcStatus`).
pub fn grpc_status_for(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 2,                      // UNKNOWN
    }
}

/// gRPC's percent-encoding for `grpc-message`.
fn percent_encode_grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether a request is gRPC (content-type `application/grpc…`).
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_local_reply_has_text_body() {
        let response = local_reply(StatusCode::SERVICE_UNAVAILABLE, NO_HEALTHY_UPSTREAM, false);
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "19");
    }

    #[test]
    fn grpc_local_reply_is_trailers_only() {
        let response = local_reply(StatusCode::SERVICE_UNAVAILABLE, NO_HEALTHY_UPSTREAM, true);
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["grpc-status"], "14");
        assert_eq!(response.headers()["grpc-message"], "no healthy upstream");
        let not_found = local_reply(StatusCode::NOT_FOUND, "", true);
        assert_eq!(not_found.headers()["grpc-status"], "12");
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode_grpc_message("a%b\n"), "a%25b%0A");
    }
}
