//! Hash cookies Envoy generates for a `cookie` hash policy with a `ttl`
//! when the request has none: the value (stable per connection) and the
//! `Set-Cookie` header that hands it to the client.

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::route::v3::route_action::hash_policy::Cookie;
use xxhash_rust::xxh64::xxh64;

use crate::config::ConfigError;

/// How to build the `Set-Cookie` for a generated hash cookie.
#[derive(Debug, Clone)]
pub struct CookieTemplate {
    /// `Max-Age`; zero makes a session cookie (no `Max-Age`).
    max_age_seconds: i64,
    path: String,
    /// `; name` or `; name=value`, ready to append.
    attributes: String,
}

pub fn cookie_template(
    cookie: &Cookie,
    max_age_seconds: i64,
) -> Result<CookieTemplate, ConfigError> {
    if max_age_seconds < 0 {
        return Err(ConfigError::new("cookie.ttl", "must not be negative"));
    }
    if cookie.path.contains([';', '\r', '\n', '\0']) {
        return Err(ConfigError::new(
            "cookie.path",
            "must not contain ';', CR, LF or NUL",
        ));
    }
    let mut attributes = String::new();
    for (i, attribute) in cookie.attributes.iter().enumerate() {
        let field = format!("cookie.attributes[{i}]");
        if attribute.name.is_empty()
            || http::HeaderName::from_bytes(attribute.name.as_bytes()).is_err()
        {
            return Err(ConfigError::new(
                format!("{field}.name"),
                format!("invalid attribute name \"{}\"", attribute.name),
            ));
        }
        if attribute.value.contains([';', '\r', '\n', '\0']) {
            return Err(ConfigError::new(
                format!("{field}.value"),
                "must not contain ';', CR, LF or NUL",
            ));
        }
        attributes.push_str("; ");
        attributes.push_str(&attribute.name);
        if !attribute.value.is_empty() {
            attributes.push('=');
            attributes.push_str(&attribute.value);
        }
    }
    Ok(CookieTemplate {
        max_age_seconds,
        path: cookie.path.clone(),
        attributes,
    })
}

impl CookieTemplate {
    /// Envoy's `makeSetCookieValue`: `name="value"; Max-Age=N; Path=p;
    /// attributes; HttpOnly`.
    pub fn set_cookie(&self, name: &str, value: &str) -> String {
        let mut out = format!("{name}=\"{value}\"");
        if self.max_age_seconds != 0 {
            out.push_str(&format!("; Max-Age={}", self.max_age_seconds));
        }
        if !self.path.is_empty() {
            out.push_str("; Path=");
            out.push_str(&self.path);
        }
        out.push_str(&self.attributes);
        out.push_str("; HttpOnly");
        out
    }
}

/// The same per connection, so concurrent streams get the same cookie:
/// 16 hex digits of xxHash64 over `remote` then `local` (`ip:port`).
pub fn generated_cookie_value(remote: SocketAddr, local: SocketAddr) -> String {
    format!("{:016x}", xxh64(format!("{remote}{local}").as_bytes(), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_values_match_envoy() {
        // Observed from Envoy 1.40: a client on 127.0.0.1:28555 talking to a
        // listener on 127.0.0.1:28480 got `sticky="9b1b67136c44d71c"`.
        let remote: SocketAddr = "127.0.0.1:28555".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:28480".parse().unwrap();
        assert_eq!(generated_cookie_value(remote, local), "9b1b67136c44d71c");
    }
}
