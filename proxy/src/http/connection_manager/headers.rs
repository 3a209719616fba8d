//! Header handling the connection manager does on every request and
//! response, as Envoy does: x-forwarded-for / x-forwarded-proto,
//! x-envoy-internal / x-envoy-external-address, x-request-id, hop-by-hop
//! header removal, and the `server` header.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::config::{HttpConnectionManager, ServerHeader};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_ENVOY_INTERNAL: HeaderName = HeaderName::from_static("x-envoy-internal");
pub static X_ENVOY_EXTERNAL_ADDRESS: HeaderName =
    HeaderName::from_static("x-envoy-external-address");
pub static X_ENVOY_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");
pub static X_ENVOY_ORIGINAL_HOST: HeaderName = HeaderName::from_static("x-envoy-original-host");
pub static X_ENVOY_UPSTREAM_SERVICE_TIME: HeaderName =
    HeaderName::from_static("x-envoy-upstream-service-time");
pub static X_ENVOY_EXPECTED_RQ_TIMEOUT_MS: HeaderName =
    HeaderName::from_static("x-envoy-expected-rq-timeout-ms");

/// Headers that describe one hop and are never forwarded (names are
/// lowercase; a `match` on the text is far cheaper than comparing
/// `HeaderName`s).
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
    )
}

/// Headers Envoy removes from requests that come from outside the trust
/// boundary, so clients cannot steer internal behaviour (retries, timeouts,
/// tracing, stats names).
const INTERNAL_ONLY: [&str; 16] = [
    "x-envoy-internal",
    "x-envoy-external-address",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-original-path",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-decorator-operation",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
];

/// Whether an address is internal as Envoy 1.40 judges it by default: its
/// `internal_address_config` defaults to empty, so no address is internal
/// (runtime `envoy.reloadable_features.explicit_internal_address_config`).
/// Sluice does not support `internal_address_config` yet.
pub fn is_internal(_ip: IpAddr) -> bool {
    false
}

/// The address Envoy appends to `x-forwarded-for` for a loopback peer: the
/// node's local address (`LocalInfo::address()`), i.e. the first non-loopback
/// IPv4 interface address, else 127.0.0.1 (Envoy's
/// `Network::Utility::getLocalAddress`). Looked up once.
fn local_address() -> IpAddr {
    static LOCAL: std::sync::OnceLock<IpAddr> = std::sync::OnceLock::new();
    *LOCAL.get_or_init(|| first_interface_ipv4().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)))
}

fn first_interface_ipv4() -> Option<IpAddr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs; every
    // node and address pointer is read only while the list is alive.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut found = None;
        let mut node = list;
        while !node.is_null() {
            let addr = (*node).ifa_addr;
            if !addr.is_null() && i32::from((*addr).sa_family) == libc::AF_INET {
                let v4 = &*(addr as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
                if !ip.is_loopback() {
                    found = Some(IpAddr::V4(ip));
                    break;
                }
            }
            node = (*node).ifa_next;
        }
        libc::freeifaddrs(list);
        found
    }
}

/// The address Envoy considers the client's: the connection peer with
/// `use_remote_address`, else the XFF entry `xff_num_trusted_hops` from the
/// right (falling back to the peer).
fn trusted_client_address(
    hcm: &HttpConnectionManager,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> IpAddr {
    if hcm.use_remote_address {
        return peer.ip();
    }
    let entries: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let index_from_right = hcm.xff_num_trusted_hops as usize;
    if entries.len() > index_from_right {
        if let Ok(ip) = entries[entries.len() - 1 - index_from_right].parse() {
            return ip;
        }
    }
    peer.ip()
}

/// Rewrites request headers on the way in. Returns the request id, if any.
pub fn prepare_request(
    hcm: &HttpConnectionManager,
    headers: &mut HeaderMap,
    peer: SocketAddr,
) -> Option<HeaderValue> {
    let client = trusted_client_address(hcm, headers, peer);
    let internal = is_internal(client);
    if hcm.use_remote_address {
        // One pass over the names first: most requests carry none of them,
        // and a removal by name hashes it each time.
        if !internal
            && headers
                .keys()
                .any(|name| name.as_str().starts_with("x-envoy-"))
        {
            for name in INTERNAL_ONLY {
                headers.remove(name);
            }
        }
        let peer_ip = canonical(peer.ip());
        append_xff(
            headers,
            if peer_ip.is_loopback() {
                local_address()
            } else {
                peer_ip
            },
        );
        // A peer that is not a trusted proxy cannot claim the scheme.
        if hcm.xff_num_trusted_hops == 0 {
            headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
        }
        if internal {
            headers.insert(X_ENVOY_INTERNAL.clone(), HeaderValue::from_static("true"));
        } else if let Ok(value) = HeaderValue::from_str(&client.to_string()) {
            headers.insert(X_ENVOY_EXTERNAL_ADDRESS.clone(), value);
        }
    }
    // One hash for the lookup and the insert.
    headers
        .entry(&X_FORWARDED_PROTO)
        .or_insert_with(|| HeaderValue::from_static("http"));
    remove_hop_by_hop(headers);

    let edge_request = hcm.use_remote_address && !internal;
    let keep_existing = !edge_request || hcm.preserve_external_request_id;
    match headers.get(&X_REQUEST_ID) {
        Some(existing) if keep_existing => Some(existing.clone()),
        _ if hcm.generate_request_id => {
            let id = new_request_id();
            headers.insert(X_REQUEST_ID.clone(), id.clone());
            Some(id)
        }
        // Absent, or an edge request's that is not kept: none either way
        // (no second lookup).
        _ => {
            if !keep_existing {
                headers.remove(&X_REQUEST_ID);
            }
            None
        }
    }
}

/// An IPv4-mapped IPv6 address as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn append_xff(headers: &mut HeaderMap, ip: IpAddr) {
    let ip = canonical(ip);
    let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.is_empty() => format!("{existing},{ip}"),
        _ => ip.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
}

/// Removes hop-by-hop headers, including those named in `Connection`, and
/// `te` unless its (first) value is `trailers` (gRPC needs it).
///
/// One pass over the headers finds what to remove, and only the names
/// `Connection` lists are looked up: most messages carry at most
/// `Connection` itself (`keep-alive` or `close`), and a lookup or removal by
/// name hashes the name each time.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    let mut previous: Option<&HeaderName> = None;
    // `iter` yields every value of a name in a row, the first one first.
    for (name, value) in headers.iter() {
        let first_value = previous.is_none_or(|p| !std::ptr::eq(p, name));
        previous = Some(name);
        if *name == http::header::CONNECTION {
            let listed = value
                .to_str()
                .into_iter()
                .flat_map(|value| value.split(','))
                .map(str::trim)
                .filter(|token| !token_is_hop_by_hop(token) && headers.contains_key(*token))
                .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok());
            doomed.extend(listed);
        }
        if !first_value {
            continue;
        }
        let te_not_trailers =
            *name == http::header::TE && !value.as_bytes().eq_ignore_ascii_case(b"trailers");
        if te_not_trailers || is_hop_by_hop(name.as_str()) {
            doomed.push(name.clone());
        }
    }
    for name in doomed {
        headers.remove(name);
    }
}

/// [`is_hop_by_hop`] for a token of a `Connection` value, in any case.
fn token_is_hop_by_hop(token: &str) -> bool {
    if token.bytes().any(|b| b.is_ascii_uppercase()) {
        is_hop_by_hop(&token.to_ascii_lowercase())
    } else {
        is_hop_by_hop(token)
    }
}

/// `00`…`99`, for [`number_value`].
static TWO_DIGITS: [u8; 200] = {
    let mut table = [0u8; 200];
    let mut n = 0;
    while n < 100 {
        table[2 * n] = b'0' + (n / 10) as u8;
        table[2 * n + 1] = b'0' + (n % 10) as u8;
        n += 1;
    }
    table
};

/// `n` as a header value; below 100 (most upstream service times, in ms)
/// without allocating.
pub fn number_value(n: u64) -> HeaderValue {
    let digits = match n {
        0..=9 => &TWO_DIGITS[2 * n as usize + 1..2 * n as usize + 2],
        10..=99 => &TWO_DIGITS[2 * n as usize..2 * n as usize + 2],
        _ => return HeaderValue::from(n),
    };
    let text = std::str::from_utf8(digits).expect("ASCII digits");
    HeaderValue::from_static(text)
}

/// A random UUID v4 in canonical text form, as Envoy generates for
/// `x-request-id`.
pub fn new_request_id() -> HeaderValue {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 36];
    let mut at = 0;
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text[at] = b'-';
            at += 1;
        }
        text[at] = HEX[(byte >> 4) as usize];
        text[at + 1] = HEX[(byte & 0xf) as usize];
        at += 2;
    }
    HeaderValue::from_bytes(&text).expect("hex and dashes are valid header bytes")
}

/// Sets the `server` response header per `server_header_transformation`.
pub fn apply_server_header(hcm: &HttpConnectionManager, headers: &mut HeaderMap) {
    match hcm.server_header {
        ServerHeader::Overwrite => {
            headers.insert(http::header::SERVER, hcm.server_name.clone());
        }
        ServerHeader::AppendIfAbsent => {
            if !headers.contains_key(http::header::SERVER) {
                headers.insert(http::header::SERVER, hcm.server_name.clone());
            }
        }
        ServerHeader::PassThrough => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_header_values() {
        for n in [0u64, 7, 10, 42, 99, 100, 15000, u64::MAX] {
            assert_eq!(number_value(n), HeaderValue::from(n), "{n}");
        }
    }

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = new_request_id();
        let text = id.to_str().unwrap();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(new_request_id(), id);
    }

    #[test]
    fn no_address_is_internal_by_default() {
        // Envoy 1.40: an empty `internal_address_config` makes nothing internal.
        assert!(!is_internal("10.1.2.3".parse().unwrap()));
        assert!(!is_internal("127.0.0.1".parse().unwrap()));
        assert!(!is_internal("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn local_address_is_not_loopback_when_an_interface_has_one() {
        let local = local_address();
        assert!(local.is_ipv4());
        if let Some(interface) = first_interface_ipv4() {
            assert_eq!(local, interface);
            assert!(!local.is_loopback());
        }
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-custom"),
        );
        headers.insert("x-custom", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("te", HeaderValue::from_static("gzip"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
        let mut grpc = HeaderMap::new();
        grpc.insert("te", HeaderValue::from_static("trailers"));
        remove_hop_by_hop(&mut grpc);
        assert!(grpc.contains_key("te"));
    }

    #[test]
    fn headers_named_in_connection_are_removed_whatever_their_case() {
        let mut headers = HeaderMap::new();
        headers.append("connection", HeaderValue::from_static("Keep-Alive"));
        headers.append("connection", HeaderValue::from_static(" X-One ,close"));
        headers.insert("x-one", HeaderValue::from_static("1"));
        headers.insert("close", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("upgrade", HeaderValue::from_static("h2c"));
        headers.insert("proxy-authorization", HeaderValue::from_static("x"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(|name| name.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["te", "x-kept"]);
    }

    #[test]
    fn messages_without_hop_by_hop_headers_are_untouched() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("a"));
        headers.insert("x-one", HeaderValue::from_static("1"));
        let before = headers.clone();
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers, before);
    }

    #[test]
    fn xff_appends_the_peer() {
        let mut headers = HeaderMap::new();
        append_xff(&mut headers, "10.0.0.1".parse().unwrap());
        assert_eq!(headers[&X_FORWARDED_FOR], "10.0.0.1");
        append_xff(&mut headers, "::ffff:127.0.0.1".parse().unwrap());
        assert_eq!(headers[&X_FORWARDED_FOR], "10.0.0.1,127.0.0.1");
    }
}
