//! The command operators (`%PROTOCOL%`, `%REQ(X?Y):Z%`, …): building one
//! from its parsed name, argument and length, with Envoy's validation
//! messages, and evaluating it against a [`StreamInfo`] as text or as a
//! typed JSON value.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::start_time::StartTimeFormat;
use crate::stream_info::StreamInfo;

/// One command operator, with everything it needs resolved at parse time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operator {
    StartTime(StartTimeFormat),
    RequestHeader(HeaderLookup),
    ResponseHeader(HeaderLookup),
    ResponseTrailer(HeaderLookup),
    Protocol,
    ResponseCode,
    ResponseCodeDetails,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    ResponseDuration,
    UpstreamHost,
    UpstreamCluster,
    UpstreamLocalAddress(AddressPart),
    UpstreamRemoteAddress(AddressPart),
    UpstreamTransportFailureReason,
    UpstreamRequestAttemptCount,
    DownstreamRemoteAddress(AddressPart),
    DownstreamLocalAddress(AddressPart),
    RouteName,
    Hostname(Arc<str>),
}

/// Which part of a socket address an address operator prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddressPart {
    /// `ip:port` (`[v6]:port`).
    Full,
    /// `ip` (`_WITHOUT_PORT`).
    Ip,
    /// `port` (`_PORT`): a number in typed JSON.
    Port,
}

/// `X?Y` with an optional `:Z` length.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeaderLookup {
    main: HeaderSource,
    alternative: Option<HeaderSource>,
    max_length: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum HeaderSource {
    Named(HeaderName),
    Method,
    Path,
    Authority,
    Scheme,
    Status,
    /// A pseudo-header Sluice does not record: always absent.
    Absent,
}

/// What an operator produced, before it is rendered.
pub(crate) enum Rendered {
    /// Written into the output already.
    Text,
    /// A number (typed JSON renders it as a number).
    Number(u64),
    /// No value: `-` in text, `null` in typed JSON.
    Absent,
}

impl Operator {
    /// Builds the operator `name` with its optional `(argument)` and
    /// `:length`, rejecting what Envoy rejects at config load.
    pub(crate) fn build(
        name: &str,
        argument: Option<&str>,
        max_length: Option<usize>,
    ) -> Result<Self, String> {
        let header_lookup = |kind: HeaderKind| -> Result<HeaderLookup, String> {
            let argument = argument.filter(|a| !a.is_empty());
            let argument = argument.ok_or_else(|| format!("{name} requires parameters"))?;
            HeaderLookup::parse(argument, kind, max_length)
        };
        let operator = match name {
            "REQ" | "REQUEST_HEADER" => {
                return Ok(Operator::RequestHeader(header_lookup(HeaderKind::Request)?));
            }
            "RESP" | "RESPONSE_HEADER" => {
                return Ok(Operator::ResponseHeader(header_lookup(
                    HeaderKind::Response,
                )?));
            }
            "TRAILER" | "RESPONSE_TRAILER" => {
                return Ok(Operator::ResponseTrailer(header_lookup(
                    HeaderKind::Trailer,
                )?));
            }
            "START_TIME" => {
                if max_length.is_some() {
                    return Err(format!("{name} does not allow length to be specified."));
                }
                return Ok(Operator::StartTime(StartTimeFormat::parse(
                    argument.unwrap_or(""),
                )?));
            }
            "RESPONSE_CODE_DETAILS" => {
                if max_length.is_some() {
                    return Err(format!("{name} does not allow length to be specified."));
                }
                Operator::ResponseCodeDetails
            }
            "PROTOCOL" => Operator::Protocol,
            "RESPONSE_CODE" => Operator::ResponseCode,
            "RESPONSE_FLAGS" => Operator::ResponseFlags,
            "BYTES_RECEIVED" => Operator::BytesReceived,
            "BYTES_SENT" => Operator::BytesSent,
            "DURATION" => Operator::Duration,
            "RESPONSE_DURATION" => Operator::ResponseDuration,
            "UPSTREAM_HOST" => Operator::UpstreamHost,
            "UPSTREAM_CLUSTER" => Operator::UpstreamCluster,
            "UPSTREAM_LOCAL_ADDRESS" => Operator::UpstreamLocalAddress(AddressPart::Full),
            "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => {
                Operator::UpstreamLocalAddress(AddressPart::Ip)
            }
            "UPSTREAM_LOCAL_PORT" => Operator::UpstreamLocalAddress(AddressPart::Port),
            "UPSTREAM_REMOTE_ADDRESS" => Operator::UpstreamRemoteAddress(AddressPart::Full),
            "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
                Operator::UpstreamRemoteAddress(AddressPart::Ip)
            }
            "UPSTREAM_REMOTE_PORT" => Operator::UpstreamRemoteAddress(AddressPart::Port),
            "UPSTREAM_TRANSPORT_FAILURE_REASON" => Operator::UpstreamTransportFailureReason,
            "UPSTREAM_REQUEST_ATTEMPT_COUNT" => Operator::UpstreamRequestAttemptCount,
            "DOWNSTREAM_REMOTE_ADDRESS" => Operator::DownstreamRemoteAddress(AddressPart::Full),
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
                Operator::DownstreamRemoteAddress(AddressPart::Ip)
            }
            "DOWNSTREAM_REMOTE_PORT" => Operator::DownstreamRemoteAddress(AddressPart::Port),
            "DOWNSTREAM_LOCAL_ADDRESS" => Operator::DownstreamLocalAddress(AddressPart::Full),
            "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => {
                Operator::DownstreamLocalAddress(AddressPart::Ip)
            }
            "DOWNSTREAM_LOCAL_PORT" => Operator::DownstreamLocalAddress(AddressPart::Port),
            "ROUTE_NAME" => Operator::RouteName,
            "HOSTNAME" => Operator::Hostname(hostname().into()),
            _ => return Err(format!("Not supported field in StreamInfo: {name}")),
        };
        if argument.is_some() || max_length.is_some() {
            if matches!(operator, Operator::ResponseCodeDetails) {
                return Err(format!("{name} does not take any parameters"));
            }
            return Err(format!("{name} does not take any parameters or length"));
        }
        Ok(operator)
    }

    /// True when the operator reads request headers (beyond the pseudo
    /// headers kept in [`StreamInfo`]'s own fields).
    pub(crate) fn reads_request_headers(&self) -> bool {
        match self {
            Operator::RequestHeader(lookup) => lookup.reads_header_map(),
            _ => false,
        }
    }

    /// Writes the value into `out` when it is text, or says what it is.
    /// Numbers are returned, not written, so typed JSON can keep them.
    pub(crate) fn render(&self, info: &StreamInfo, out: &mut String) -> Rendered {
        match self {
            Operator::StartTime(format) => {
                format.format_into(info.start_time, out);
                Rendered::Text
            }
            Operator::RequestHeader(lookup) => lookup.render(info, Headers::Request, out),
            Operator::ResponseHeader(lookup) => lookup.render(info, Headers::Response, out),
            Operator::ResponseTrailer(lookup) => lookup.render(info, Headers::Trailers, out),
            Operator::Protocol => match info.protocol.and_then(protocol_name) {
                Some(name) => text(out, name),
                None => Rendered::Absent,
            },
            Operator::ResponseCode => Rendered::Number(info.response_code.unwrap_or(0).into()),
            Operator::ResponseCodeDetails => opt_text(out, info.response_code_details.as_deref()),
            Operator::ResponseFlags => {
                // Envoy prints "-" for no flags in every format (in JSON
                // too: `"flags":"-"`, not null).
                if info.response_flags.is_empty() {
                    return text(out, "-");
                }
                for (i, flag) in info.response_flags.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(flag.short_code());
                }
                Rendered::Text
            }
            Operator::BytesReceived => Rendered::Number(info.bytes_received),
            Operator::BytesSent => Rendered::Number(info.bytes_sent),
            Operator::Duration => millis(info.duration),
            Operator::ResponseDuration => millis(info.response_duration),
            Operator::UpstreamHost => address(out, info.upstream_host, AddressPart::Full),
            Operator::UpstreamCluster => opt_text(out, info.upstream_cluster.as_deref()),
            Operator::UpstreamLocalAddress(part) => {
                address(out, info.upstream_local_address, *part)
            }
            Operator::UpstreamRemoteAddress(part) => address(out, info.upstream_host, *part),
            Operator::UpstreamTransportFailureReason => {
                // Envoy prints this field with spaces as underscores
                // (`delayed_connect_error:_Connection_refused`).
                match info.upstream_transport_failure_reason.as_deref() {
                    Some(reason) if !reason.is_empty() => {
                        out.extend(reason.chars().map(|c| if c == ' ' { '_' } else { c }));
                        Rendered::Text
                    }
                    _ => Rendered::Absent,
                }
            }
            Operator::UpstreamRequestAttemptCount => {
                Rendered::Number(info.upstream_request_attempt_count.into())
            }
            Operator::DownstreamRemoteAddress(part) => {
                address(out, info.downstream_remote_address, *part)
            }
            Operator::DownstreamLocalAddress(part) => {
                address(out, info.downstream_local_address, *part)
            }
            Operator::RouteName => opt_text(out, info.route_name.as_deref()),
            Operator::Hostname(name) => text(out, name),
        }
    }
}

#[derive(Clone, Copy)]
enum HeaderKind {
    Request,
    Response,
    Trailer,
}

#[derive(Clone, Copy)]
enum Headers {
    Request,
    Response,
    Trailers,
}

impl HeaderLookup {
    fn parse(argument: &str, kind: HeaderKind, max_length: Option<usize>) -> Result<Self, String> {
        let mut names = argument.split('?');
        let main = names.next().unwrap_or_default();
        let alternative = names.next();
        if names.next().is_some() {
            return Err(format!(
                "More than 1 alternative header specified in token: {argument}"
            ));
        }
        Ok(HeaderLookup {
            main: HeaderSource::parse(main, kind)?,
            alternative: match alternative {
                Some(name) => Some(HeaderSource::parse(name, kind)?),
                None => None,
            },
            max_length,
        })
    }

    fn reads_header_map(&self) -> bool {
        let named = |source: &HeaderSource| matches!(source, HeaderSource::Named(_));
        named(&self.main) || self.alternative.as_ref().is_some_and(named)
    }

    fn render(&self, info: &StreamInfo, headers: Headers, out: &mut String) -> Rendered {
        let start = out.len();
        let found = self.main.write(info, headers, out)
            || self
                .alternative
                .as_ref()
                .is_some_and(|source| source.write(info, headers, out));
        if !found {
            return Rendered::Absent;
        }
        if let Some(max) = self.max_length {
            if let Some((cut, _)) = out[start..].char_indices().nth(max) {
                out.truncate(start + cut);
            }
        }
        Rendered::Text
    }
}

impl HeaderSource {
    fn parse(name: &str, kind: HeaderKind) -> Result<Self, String> {
        let lower = name.to_ascii_lowercase();
        if let Some(pseudo) = lower.strip_prefix(':') {
            return Ok(match (kind, pseudo) {
                (HeaderKind::Request, "method") => HeaderSource::Method,
                (HeaderKind::Request, "path") => HeaderSource::Path,
                (HeaderKind::Request, "authority") => HeaderSource::Authority,
                (HeaderKind::Request, "scheme") => HeaderSource::Scheme,
                (HeaderKind::Response, "status") => HeaderSource::Status,
                _ => HeaderSource::Absent,
            });
        }
        if lower.is_empty() {
            return Ok(HeaderSource::Absent);
        }
        HeaderName::from_bytes(lower.as_bytes())
            .map(HeaderSource::Named)
            .map_err(|_| format!("invalid header name \"{name}\""))
    }

    /// Appends the value when present; false when absent.
    fn write(&self, info: &StreamInfo, headers: Headers, out: &mut String) -> bool {
        let value: Option<&str> = match self {
            HeaderSource::Method => info.request_method.as_ref().map(|m| m.as_str()),
            HeaderSource::Path => info.request_path.as_ref().map(|pq| pq.as_str()),
            HeaderSource::Authority => info
                .request_authority
                .as_ref()
                .and_then(|v| v.to_str().ok()),
            HeaderSource::Scheme => info.request_scheme,
            HeaderSource::Status => {
                return match info.response_code {
                    Some(code) => {
                        let _ = write!(out, "{code}");
                        true
                    }
                    None => false,
                };
            }
            HeaderSource::Absent => None,
            HeaderSource::Named(name) => {
                let map = match headers {
                    Headers::Request => &info.request_headers,
                    Headers::Response => &info.response_headers,
                    Headers::Trailers => &info.response_trailers,
                };
                match map.get(name) {
                    Some(value) => {
                        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
                        return true;
                    }
                    // The request id may have been generated by the proxy
                    // rather than received; StreamInfo keeps it either way.
                    None if matches!(headers, Headers::Request) && name == "x-request-id" => {
                        info.request_id.as_deref()
                    }
                    None => None,
                }
            }
        };
        match value {
            Some(value) => {
                out.push_str(value);
                true
            }
            None => false,
        }
    }
}

fn text(out: &mut String, value: &str) -> Rendered {
    out.push_str(value);
    Rendered::Text
}

/// Empty strings count as unset, as Envoy's string fields do.
fn opt_text(out: &mut String, value: Option<&str>) -> Rendered {
    match value {
        Some(value) if !value.is_empty() => text(out, value),
        _ => Rendered::Absent,
    }
}

fn millis(duration: Option<Duration>) -> Rendered {
    match duration {
        Some(duration) => Rendered::Number(duration.as_millis() as u64),
        None => Rendered::Absent,
    }
}

fn address(out: &mut String, address: Option<SocketAddr>, part: AddressPart) -> Rendered {
    let Some(address) = address else {
        return Rendered::Absent;
    };
    match part {
        AddressPart::Full => {
            let _ = write!(out, "{address}");
            Rendered::Text
        }
        AddressPart::Ip => {
            let _ = write!(out, "{}", address.ip());
            Rendered::Text
        }
        AddressPart::Port => Rendered::Number(address.port().into()),
    }
}

fn protocol_name(version: http::Version) -> Option<&'static str> {
    match version {
        http::Version::HTTP_09 => Some("HTTP/0.9"),
        http::Version::HTTP_10 => Some("HTTP/1.0"),
        http::Version::HTTP_11 => Some("HTTP/1.1"),
        http::Version::HTTP_2 => Some("HTTP/2"),
        http::Version::HTTP_3 => Some("HTTP/3"),
        _ => None,
    }
}

/// This machine's host name, as `%HOSTNAME%` prints it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "-".to_string())
}
