//! Read-only views of a request as Envoy's router sees it: the `:authority`
//! (from the URI or the `Host` header), header values, raw query
//! parameters, and cookies. Nothing here allocates unless a header value is
//! not valid UTF-8.

use std::borrow::Cow;

use http::request::Parts;
use http::HeaderName;

/// The request's `:authority`: the URI's authority (HTTP/2, absolute-form
/// HTTP/1) or else the `Host` header.
pub fn authority(req: &Parts) -> Option<&str> {
    if let Some(authority) = req.uri.authority() {
        return Some(authority.as_str());
    }
    req.headers
        .get(http::header::HOST)
        .and_then(|value| std::str::from_utf8(value.as_bytes()).ok())
}

/// The `:path` pseudo-header: path and query as received.
pub fn path_and_query(req: &Parts) -> Option<&str> {
    req.uri.path_and_query().map(|pq| pq.as_str())
}

/// The path without its query string (what path matching sees).
pub fn path_only(req: &Parts) -> &str {
    req.uri.path()
}

/// Where a configured header name reads from: a pseudo-header or a header.
/// `host` is an alias of `:authority`, as Envoy stores HTTP/1's Host there.
#[derive(Debug, Clone)]
pub enum HeaderSource {
    Method,
    Path,
    Authority,
    Scheme,
    Named(HeaderName),
}

impl HeaderSource {
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "" => Err("must not be empty".into()),
            ":method" => Ok(HeaderSource::Method),
            ":path" => Ok(HeaderSource::Path),
            ":authority" => Ok(HeaderSource::Authority),
            ":scheme" => Ok(HeaderSource::Scheme),
            _ if name.eq_ignore_ascii_case("host") => Ok(HeaderSource::Authority),
            _ if name.starts_with(':') => Err(format!(
                "pseudo-header \"{name}\" is not available; use :method, :path, :authority or :scheme"
            )),
            _ => HeaderName::from_bytes(name.as_bytes())
                .map(HeaderSource::Named)
                .map_err(|_| format!("invalid header name \"{name}\"")),
        }
    }

    /// Every value, in order (one for a pseudo-header).
    pub fn values<'r>(&self, req: &'r Parts) -> impl Iterator<Item = Cow<'r, str>> {
        let (single, named) = match self {
            HeaderSource::Named(name) => (None, Some(req.headers.get_all(name).iter())),
            pseudo => (pseudo.single(req), None),
        };
        single.map(Cow::Borrowed).into_iter().chain(
            named
                .into_iter()
                .flatten()
                .map(|v| String::from_utf8_lossy(v.as_bytes())),
        )
    }

    fn single<'r>(&self, req: &'r Parts) -> Option<&'r str> {
        match self {
            HeaderSource::Method => Some(req.method.as_str()),
            HeaderSource::Path => path_and_query(req),
            HeaderSource::Authority => authority(req),
            // HTTP/1 requests carry no scheme; Envoy's codec derives `:scheme`
            // from the connection, which the connection manager records in
            // `x-forwarded-proto` before routing.
            HeaderSource::Scheme => req.uri.scheme_str().or_else(|| {
                req.headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
            }),
            HeaderSource::Named(name) => first_header(req, name),
        }
    }
}

/// The first value of `name` as text, when present and valid UTF-8.
pub fn first_header<'r>(req: &'r Parts, name: &HeaderName) -> Option<&'r str> {
    req.headers
        .get(name)
        .and_then(|value| std::str::from_utf8(value.as_bytes()).ok())
}

/// The first value of query parameter `name`, undecoded, as Envoy's
/// `QueryParamsMulti::parseQueryString(..).getFirstValue(..)`: parameters are
/// split on `&`, name and value on the first `=`; a parameter without `=` has
/// an empty value.
pub fn query_parameter<'r>(req: &'r Parts, name: &str) -> Option<&'r str> {
    let query = req.uri.query()?;
    query.split('&').find_map(|param| {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        (key == name).then_some(value)
    })
}

/// The value of cookie `name` from the `Cookie` headers, as Envoy's
/// `parseCookieValue`: pairs split on `;`, leading spaces skipped, value
/// unquoted when wrapped in double quotes; the first match wins.
pub fn cookie<'r>(req: &'r Parts, name: &str) -> Option<&'r str> {
    for header in req.headers.get_all(http::header::COOKIE) {
        let Ok(text) = std::str::from_utf8(header.as_bytes()) else {
            continue;
        };
        for pair in text.split(';') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            if key.trim_start_matches(' ') != name {
                continue;
            }
            let value = if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
                &value[1..value.len() - 1]
            } else {
                value
            };
            return Some(value);
        }
    }
    None
}

/// Splits `host[:port]` into the host part, handling `[v6]:port`. A bare
/// IPv6 address without brackets is returned whole.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.rfind("]:") {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rfind(':') {
        // Exactly one colon: `name:port`. More than one without brackets is
        // an unbracketed IPv6 literal, which has no port.
        Some(colon) if host[..colon].find(':').is_none() => &host[..colon],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn authority_prefers_the_uri_then_host() {
        assert_eq!(
            authority(&parts("http://a.example/x", &[("host", "b")])),
            Some("a.example")
        );
        assert_eq!(authority(&parts("/x", &[("host", "b:8")])), Some("b:8"));
        assert_eq!(authority(&parts("/x", &[])), None);
    }

    #[test]
    fn query_parameters_are_raw_and_first_wins() {
        let req = parts("/p?a=1&b&a=2&c=x%20y&=e", &[]);
        assert_eq!(query_parameter(&req, "a"), Some("1"));
        assert_eq!(query_parameter(&req, "b"), Some(""));
        assert_eq!(query_parameter(&req, "c"), Some("x%20y"));
        assert_eq!(query_parameter(&req, "d"), None);
        assert_eq!(query_parameter(&parts("/p", &[]), "a"), None);
    }

    #[test]
    fn cookies_parse_like_envoy() {
        let req = parts(
            "/",
            &[("cookie", "a=1; b=\"quoted\""), ("cookie", "c=3;bad; a=9")],
        );
        assert_eq!(cookie(&req, "a"), Some("1"));
        assert_eq!(cookie(&req, "b"), Some("quoted"));
        assert_eq!(cookie(&req, "c"), Some("3"));
        assert_eq!(cookie(&req, "bad"), None);
    }

    #[test]
    fn ports_strip_for_names_v4_and_bracketed_v6() {
        assert_eq!(strip_port("example.com:80"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("1.2.3.4:8080"), "1.2.3.4");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
    }
}
