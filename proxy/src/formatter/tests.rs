//! Format strings against filled and empty [`StreamInfo`]s: every operator,
//! absent values, truncation, and every class of malformed input.

use super::*;
use crate::stream_info::ResponseFlag;
use http::{HeaderValue, Method, Version};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// A request as Envoy would have logged it, every field set.
pub(crate) fn filled_info() -> StreamInfo {
    let mut info = StreamInfo::new(
        Some("10.0.35.28:51234".parse().unwrap()),
        Some("10.0.0.1:8080".parse().unwrap()),
    );
    info.start_time = UNIX_EPOCH + Duration::new(1_460_751_420, 310_123_456);
    info.protocol = Some(Version::HTTP_2);
    info.request_method = Some(Method::POST);
    info.request_path = Some(http::uri::PathAndQuery::from_static("/api/v1/locations"));
    info.request_authority = Some(HeaderValue::from_static("locations"));
    info.request_scheme = Some("https");
    let headers = &mut info.request_headers;
    headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.35.28"));
    headers.insert("user-agent", HeaderValue::from_static("nsq2http"));
    headers.insert(
        "x-request-id",
        HeaderValue::from_static("cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2"),
    );
    info.response_headers.insert(
        "x-envoy-upstream-service-time",
        HeaderValue::from_static("100"),
    );
    info.response_headers
        .insert("content-type", HeaderValue::from_static("text/plain"));
    info.response_trailers
        .insert("grpc-status", HeaderValue::from_static("0"));
    info.response_code = Some(204);
    info.response_code_details = Some("via_upstream".into());
    info.add_flag(ResponseFlag::UpstreamRequestTimeout);
    info.add_flag(ResponseFlag::UpstreamConnectionFailure);
    info.bytes_received = 154;
    info.bytes_sent = 0;
    info.duration = Some(Duration::from_micros(226_900));
    info.response_duration = Some(Duration::from_millis(120));
    info.upstream_cluster = Some(Arc::from("locations_cluster"));
    info.upstream_host = Some("10.0.2.1:80".parse().unwrap());
    info.upstream_local_address = Some("10.0.0.1:40000".parse().unwrap());
    info.upstream_transport_failure_reason = Some("TLS error".into());
    info.upstream_request_attempt_count = 2;
    info.route_name = Some(Arc::from("r1"));
    info
}

pub(crate) fn empty_info() -> StreamInfo {
    let mut info = StreamInfo::new(None, None);
    info.start_time = UNIX_EPOCH + Duration::new(1_460_751_420, 310_123_456);
    info
}

fn render(format: &str, info: &StreamInfo) -> String {
    FormatString::parse(format)
        .unwrap_or_else(|e| panic!("{format}: {e}"))
        .format(info)
}

#[test]
fn every_operator_with_a_filled_stream_info() {
    let info = filled_info();
    let cases = [
        ("%START_TIME%", "2016-04-15T20:17:00.310Z"),
        ("%START_TIME(%s.%3f)%", "1460751420.310"),
        ("%REQ(:METHOD)%", "POST"),
        ("%REQ(:PATH)%", "/api/v1/locations"),
        ("%REQ(:authority)%", "locations"),
        ("%REQ(:SCHEME)%", "https"),
        ("%REQ(USER-AGENT)%", "nsq2http"),
        ("%REQUEST_HEADER(user-agent)%", "nsq2http"),
        ("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "/api/v1/locations"),
        ("%REQ(USER-AGENT?:PATH)%", "nsq2http"),
        ("%RESP(CONTENT-TYPE)%", "text/plain"),
        ("%RESPONSE_HEADER(content-type)%", "text/plain"),
        ("%RESP(:status)%", "204"),
        ("%TRAILER(GRPC-STATUS)%", "0"),
        ("%RESPONSE_TRAILER(grpc-status)%", "0"),
        ("%PROTOCOL%", "HTTP/2"),
        ("%RESPONSE_CODE%", "204"),
        ("%RESPONSE_CODE_DETAILS%", "via_upstream"),
        ("%RESPONSE_FLAGS%", "UT,UF"),
        ("%BYTES_RECEIVED%", "154"),
        ("%BYTES_SENT%", "0"),
        ("%DURATION%", "226"),
        ("%RESPONSE_DURATION%", "120"),
        ("%UPSTREAM_HOST%", "10.0.2.1:80"),
        ("%UPSTREAM_CLUSTER%", "locations_cluster"),
        ("%UPSTREAM_LOCAL_ADDRESS%", "10.0.0.1:40000"),
        ("%UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", "10.0.0.1"),
        ("%UPSTREAM_LOCAL_PORT%", "40000"),
        ("%UPSTREAM_REMOTE_ADDRESS%", "10.0.2.1:80"),
        ("%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "10.0.2.1"),
        ("%UPSTREAM_REMOTE_PORT%", "80"),
        ("%UPSTREAM_TRANSPORT_FAILURE_REASON%", "TLS_error"),
        ("%UPSTREAM_REQUEST_ATTEMPT_COUNT%", "2"),
        ("%DOWNSTREAM_REMOTE_ADDRESS%", "10.0.35.28:51234"),
        ("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "10.0.35.28"),
        ("%DOWNSTREAM_REMOTE_PORT%", "51234"),
        ("%DOWNSTREAM_LOCAL_ADDRESS%", "10.0.0.1:8080"),
        ("%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", "10.0.0.1"),
        ("%DOWNSTREAM_LOCAL_PORT%", "8080"),
        ("%ROUTE_NAME%", "r1"),
        ("100%%", "100%"),
        ("a%%b%%", "a%b%"),
    ];
    for (format, expected) in cases {
        assert_eq!(render(format, &info), expected, "{format}");
    }
    let hostname = render("%HOSTNAME%", &info);
    assert!(!hostname.is_empty() && hostname != "-");
}

#[test]
fn ipv6_addresses_keep_brackets_only_with_port() {
    let info = StreamInfo::new(Some("[::1]:80".parse().unwrap()), None);
    assert_eq!(render("%DOWNSTREAM_REMOTE_ADDRESS%", &info), "[::1]:80");
    assert_eq!(
        render("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", &info),
        "::1"
    );
}

#[test]
fn absent_values_print_a_dash() {
    let info = empty_info();
    for format in [
        "%REQ(:METHOD)%",
        "%REQ(:PATH)%",
        "%REQ(USER-AGENT)%",
        "%REQ(X-A?X-B)%",
        "%RESP(CONTENT-TYPE)%",
        "%RESP(:status)%",
        "%TRAILER(GRPC-STATUS)%",
        "%PROTOCOL%",
        "%RESPONSE_CODE_DETAILS%",
        "%RESPONSE_FLAGS%",
        "%DURATION%",
        "%RESPONSE_DURATION%",
        "%UPSTREAM_HOST%",
        "%UPSTREAM_CLUSTER%",
        "%UPSTREAM_LOCAL_ADDRESS%",
        "%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
        "%DOWNSTREAM_REMOTE_ADDRESS%",
        "%DOWNSTREAM_LOCAL_PORT%",
        "%ROUTE_NAME%",
    ] {
        assert_eq!(render(format, &info), "-", "{format}");
    }
    // Envoy prints zero, not a dash, for these.
    assert_eq!(render("%RESPONSE_CODE%", &info), "0");
    assert_eq!(render("%BYTES_SENT% %BYTES_RECEIVED%", &info), "0 0");
    assert_eq!(render("%UPSTREAM_REQUEST_ATTEMPT_COUNT%", &info), "0");
}

#[test]
fn omit_empty_values_prints_nothing_for_absent_values() {
    let format = FormatString::parse("[%REQ(X-MISSING)%][%UPSTREAM_HOST%][%RESPONSE_CODE%]")
        .unwrap()
        .with_omit_empty_values(true);
    assert_eq!(format.format(&empty_info()), "[][][0]");
}

#[test]
fn present_but_empty_header_is_empty_not_a_dash() {
    let mut info = empty_info();
    info.request_headers
        .insert("x-empty", HeaderValue::from_static(""));
    info.request_headers
        .append("x-multi", HeaderValue::from_static("a"));
    info.request_headers
        .append("x-multi", HeaderValue::from_static("b"));
    assert_eq!(render("[%REQ(X-EMPTY?X-MULTI)%]", &info), "[]");
    assert_eq!(render("%REQ(X-MULTI)%", &info), "a");
}

#[test]
fn generated_request_id_is_logged_without_the_header() {
    let mut info = empty_info();
    info.request_id = Some("generated-id".into());
    assert_eq!(render("%REQ(X-REQUEST-ID)%", &info), "generated-id");
}

#[test]
fn truncation_cuts_to_the_given_length() {
    let info = filled_info();
    assert_eq!(render("%REQ(USER-AGENT):3%", &info), "nsq");
    assert_eq!(render("%REQ(USER-AGENT):100%", &info), "nsq2http");
    assert_eq!(render("[%REQ(USER-AGENT):0%]", &info), "[]");
    assert_eq!(render("%REQ(X-MISSING?:PATH):4%", &info), "/api");
    assert_eq!(render("%RESP(CONTENT-TYPE):4%", &info), "text");
    assert_eq!(render("%TRAILER(GRPC-STATUS):1%", &info), "0");
    assert_eq!(render("%REQ(X-MISSING):2%", &info), "-");
    let mut info = info;
    info.request_headers
        .insert("x-utf8", HeaderValue::from_str("héllo").unwrap());
    assert_eq!(render("%REQ(X-UTF8):2%", &info), "hé");
}

#[test]
fn start_time_custom_formats() {
    let info = filled_info();
    assert_eq!(render("%START_TIME()%", &info), "2016-04-15T20:17:00.310Z");
    assert_eq!(
        render("%START_TIME(%Y/%m/%dT%H:%M:%S%z %s)%", &info),
        "2016/04/15T20:17:00+0000 1460751420"
    );
    assert_eq!(render("%START_TIME(%s.%6f)%", &info), "1460751420.310123");
    assert_eq!(
        render("%START_TIME(%s.%9f)%", &info),
        "1460751420.310123456"
    );
    assert_eq!(render("[%START_TIME(%H)%]", &info), "[20]");
    assert_eq!(
        render("%START_TIME(%Q %E3S %Ez)%", &info),
        "%Q 00.310 +00:00"
    );
}

#[test]
fn literal_strings_and_mixed_text() {
    let literal = FormatString::parse("plain value").unwrap();
    assert!(literal.is_literal());
    assert_eq!(literal.format(&empty_info()), "plain value");
    let empty = FormatString::parse("").unwrap();
    assert_eq!(empty.format(&empty_info()), "");
    let mixed = FormatString::parse("code=%RESPONSE_CODE% via %UPSTREAM_HOST%\n").unwrap();
    assert!(!mixed.is_literal());
    assert_eq!(mixed.format(&filled_info()), "code=204 via 10.0.2.1:80\n");
    assert!(FormatString::parse("100%%").unwrap().is_literal());
}

#[test]
fn format_into_appends_to_the_callers_buffer() {
    let format = FormatString::parse("%RESPONSE_CODE%;").unwrap();
    let mut out = String::from("prefix:");
    format.format_into(&filled_info(), &mut out);
    format.format_into(&empty_info(), &mut out);
    assert_eq!(out, "prefix:204;0;");
}

#[test]
fn header_value_substitutions_work() {
    let info = filled_info();
    for (format, expected) in [
        ("%DOWNSTREAM_REMOTE_ADDRESS%", "10.0.35.28:51234"),
        ("%START_TIME%", "2016-04-15T20:17:00.310Z"),
        ("%PROTOCOL%", "HTTP/2"),
        ("%UPSTREAM_REMOTE_ADDRESS%", "10.0.2.1:80"),
    ] {
        assert_eq!(render(format, &info), expected);
    }
}

#[test]
fn reads_request_headers_only_for_real_headers() {
    let reads = |f: &str| FormatString::parse(f).unwrap().reads_request_headers();
    assert!(reads("%REQ(USER-AGENT)%"));
    assert!(reads("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"));
    assert!(!reads("%REQ(:METHOD)% %REQ(:PATH)%"));
    assert!(!reads("%RESP(CONTENT-TYPE)% %PROTOCOL%"));
}

fn parse_error(format: &str) -> String {
    FormatString::parse(format).expect_err(format)
}

#[test]
fn malformed_commands_are_rejected_with_their_position() {
    for (format, position) in [
        ("%REQ(%", 0),
        ("%REQ(X):abc%", 0),
        ("%REQ(X)", 0),
        ("%REQ(X):%", 0),
        ("abc %", 4),
        ("100%", 3),
        ("%protocol%", 0),
        ("%START_TIME(%", 0),
        ("ok %PROTOCOL% %", 14),
    ] {
        let error = parse_error(format);
        assert!(
            error.contains(&format!(
                "Couldn't find valid command at position {position}"
            )),
            "{format}: {error}"
        );
        assert!(error.contains(format), "{error}");
    }
}

#[test]
fn unknown_operators_are_rejected_by_name() {
    let error = parse_error("%FOO%");
    assert!(
        error.contains("Not supported field in StreamInfo: FOO"),
        "{error}"
    );
    assert!(parse_error("x %DYNAMIC_METADATA(a:b)% y").contains("DYNAMIC_METADATA"));
}

#[test]
fn wrong_arguments_are_rejected() {
    for (format, message) in [
        ("%REQ%", "REQ requires parameters"),
        ("%REQ()%", "REQ requires parameters"),
        ("%RESP()%", "RESP requires parameters"),
        ("%TRAILER%", "TRAILER requires parameters"),
        (
            "%REQ(a?b?c)%",
            "More than 1 alternative header specified in token: a?b?c",
        ),
        ("%REQ(bad header)%", "invalid header name \"bad header\""),
        (
            "%PROTOCOL(x)%",
            "PROTOCOL does not take any parameters or length",
        ),
        (
            "%PROTOCOL:3%",
            "PROTOCOL does not take any parameters or length",
        ),
        (
            "%UPSTREAM_HOST:3%",
            "UPSTREAM_HOST does not take any parameters or length",
        ),
        (
            "%DURATION():5%",
            "DURATION does not take any parameters or length",
        ),
        (
            "%START_TIME():3%",
            "START_TIME does not allow length to be specified.",
        ),
        (
            "%RESPONSE_CODE_DETAILS:3%",
            "RESPONSE_CODE_DETAILS does not allow length to be specified.",
        ),
    ] {
        let error = parse_error(format);
        assert!(error.contains(message), "{format}: {error}");
    }
}
