//! The `redirect` and `direct_response` actions: answers the proxy gives
//! itself without an upstream. The redirect `Location` is built the way
//! Envoy's `Http::Utility::newUri` builds it.

use std::borrow::Cow;

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier as DataSourceSpecifier;
use envoy_types::pb::envoy::config::route::v3::{
    redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier},
    DirectResponseAction, RedirectAction as RedirectActionConfig,
};
use http::request::Parts;
use http::StatusCode;

use super::request;
use super::rewrite::PathRewrite;
use super::route_match::PathMatch;
use crate::config::{ConfigError, ConfigErrors};

/// Envoy's default `max_direct_response_body_size_bytes`.
pub const DEFAULT_MAX_DIRECT_RESPONSE_BODY_BYTES: u32 = 4096;

#[derive(Debug, Clone)]
enum RedirectPath {
    Keep,
    /// `path_redirect`; a query in it replaces the request's query and is
    /// never stripped.
    Replace {
        path: String,
        has_query: bool,
    },
    Rewrite(PathRewrite),
}

/// A compiled `redirect` action.
#[derive(Debug, Clone)]
pub struct RedirectAction {
    scheme: Option<String>,
    host: Option<String>,
    /// `:port`, ready to append.
    port: Option<String>,
    path: RedirectPath,
    strip_query: bool,
    /// The virtual host's `require_tls` redirect: `https://{host}{path}`
    /// exactly as requested (Envoy's `SslRedirector`).
    tls_required: bool,
    pub response_code: StatusCode,
}

impl RedirectAction {
    /// Error paths are relative to the `RedirectAction`.
    pub fn compile(config: &RedirectActionConfig, path: &PathMatch) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let scheme = match &config.scheme_rewrite_specifier {
            Some(SchemeRewriteSpecifier::HttpsRedirect(true)) => Some("https".to_string()),
            Some(SchemeRewriteSpecifier::SchemeRedirect(scheme)) if !scheme.is_empty() => {
                let valid = scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
                if !valid {
                    errors.push(ConfigError::new(
                        "scheme_redirect",
                        format!("\"{scheme}\" is not a valid URI scheme"),
                    ));
                }
                Some(scheme.clone())
            }
            _ => None,
        };
        let host = (!config.host_redirect.is_empty()).then(|| config.host_redirect.clone());
        if let Some(host) = &host {
            if host.contains(['\0', '\r', '\n', '/', '?', '#']) {
                errors.push(ConfigError::new(
                    "host_redirect",
                    format!("\"{}\" is not a valid host", host.escape_debug()),
                ));
            }
        }
        let port = match config.port_redirect {
            0 => None,
            port @ 1..=65535 => Some(format!(":{port}")),
            port => {
                errors.push(ConfigError::new(
                    "port_redirect",
                    format!("{port} is not a valid port (1-65535)"),
                ));
                None
            }
        };
        let redirect_path = match &config.path_rewrite_specifier {
            None => RedirectPath::Keep,
            Some(PathRewriteSpecifier::PathRedirect(new_path)) => {
                if new_path.contains(['\0', '\r', '\n']) {
                    errors.push(ConfigError::new(
                        "path_redirect",
                        "must not contain NUL, CR or LF",
                    ));
                }
                if new_path.is_empty() {
                    RedirectPath::Keep
                } else {
                    RedirectPath::Replace {
                        path: new_path.clone(),
                        has_query: new_path.contains('?'),
                    }
                }
            }
            Some(PathRewriteSpecifier::PrefixRewrite(prefix)) => {
                match PathRewrite::compile(prefix, None, path) {
                    Ok(Some(rewrite)) => RedirectPath::Rewrite(rewrite),
                    Ok(None) => RedirectPath::Keep,
                    Err(error) => {
                        errors.push(error);
                        RedirectPath::Keep
                    }
                }
            }
            Some(PathRewriteSpecifier::RegexRewrite(regex)) => {
                match PathRewrite::compile("", Some(regex), path) {
                    Ok(Some(rewrite)) => RedirectPath::Rewrite(rewrite),
                    Ok(None) => RedirectPath::Keep,
                    Err(error) => {
                        errors.push(error);
                        RedirectPath::Keep
                    }
                }
            }
            Some(PathRewriteSpecifier::PathRewrite(_)) => {
                errors.push(ConfigError::new(
                    "path_rewrite",
                    "field 'path_rewrite' is not supported by Sluice",
                ));
                RedirectPath::Keep
            }
        };
        let response_code = match RedirectResponseCode::try_from(config.response_code) {
            Ok(RedirectResponseCode::MovedPermanently) => StatusCode::MOVED_PERMANENTLY,
            Ok(RedirectResponseCode::Found) => StatusCode::FOUND,
            Ok(RedirectResponseCode::SeeOther) => StatusCode::SEE_OTHER,
            Ok(RedirectResponseCode::TemporaryRedirect) => StatusCode::TEMPORARY_REDIRECT,
            Ok(RedirectResponseCode::PermanentRedirect) => StatusCode::PERMANENT_REDIRECT,
            Err(_) => {
                errors.push(ConfigError::new(
                    "response_code",
                    format!("unknown value {}", config.response_code),
                ));
                StatusCode::MOVED_PERMANENTLY
            }
        };
        errors.into_result(RedirectAction {
            scheme,
            host,
            port,
            path: redirect_path,
            strip_query: config.strip_query,
            tls_required: false,
            response_code,
        })
    }

    /// The 301 to `https` that a virtual host with `require_tls` answers to
    /// requests that arrived without TLS.
    pub fn require_tls() -> Self {
        RedirectAction {
            scheme: None,
            host: None,
            port: None,
            path: RedirectPath::Keep,
            strip_query: false,
            tls_required: true,
            response_code: StatusCode::MOVED_PERMANENTLY,
        }
    }

    /// The `Location` for `req`. `scheme` is the request's scheme (`:scheme`,
    /// i.e. `https` on a TLS connection); `x-forwarded-proto`, when present,
    /// decides which default port is dropped, as in Envoy.
    pub fn location(&self, req: &Parts, scheme: &str) -> String {
        if self.tls_required {
            let host = request::authority(req).unwrap_or("");
            let path = request::path_and_query(req).unwrap_or("");
            return format!("https://{host}{path}");
        }
        let final_scheme = self.scheme.as_deref().unwrap_or(scheme);
        let final_port = self.port.as_deref().unwrap_or("");
        let final_host = match &self.host {
            Some(host) => host.as_str(),
            None => {
                let forwarded_proto = req
                    .headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(scheme);
                request_host(req, final_scheme, final_port, forwarded_proto)
            }
        };
        let original = request::path_and_query(req).unwrap_or("");
        let (path, keep_query): (Cow<'_, str>, bool) = match &self.path {
            RedirectPath::Keep => (Cow::Borrowed(original), !self.strip_query),
            RedirectPath::Rewrite(rewrite) => (
                rewrite
                    .apply(original)
                    .map_or(Cow::Borrowed(original), Cow::Owned),
                !self.strip_query,
            ),
            RedirectPath::Replace {
                path,
                has_query: true,
            } => (Cow::Borrowed(path.as_str()), true),
            RedirectPath::Replace {
                path,
                has_query: false,
            } => match original.find('?') {
                Some(query_start) => (
                    Cow::Owned(format!("{path}{}", &original[query_start..])),
                    !self.strip_query,
                ),
                None => (Cow::Borrowed(path.as_str()), !self.strip_query),
            },
        };
        let path = if keep_query {
            &path[..]
        } else {
            path.split_once('?').map_or(&path[..], |(before, _)| before)
        };
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("{final_scheme}://{final_host}{final_port}{slash}{path}")
    }
}

/// Envoy's `processRequestHost`: the request's Host, without its port when
/// the redirect sets a port, or when the scheme changes and the port was the
/// default one of the request's protocol (`http://h:80` → `https://h`).
fn request_host<'r>(req: &'r Parts, new_scheme: &str, new_port: &str, protocol: &str) -> &'r str {
    let host = request::authority(req).unwrap_or("");
    let port_start = if host.starts_with('[') {
        host.rfind("]:").map(|i| i + 1)
    } else {
        host.rfind(':')
    };
    let Some(port_start) = port_start else {
        return host;
    };
    let port = &host[port_start..];
    let mut remove = !new_port.is_empty();
    if new_scheme != protocol {
        remove |= protocol.eq_ignore_ascii_case("https") && port == ":443";
        remove |= protocol.eq_ignore_ascii_case("http") && port == ":80";
    }
    if remove {
        &host[..port_start]
    } else {
        host
    }
}

/// A compiled `direct_response` action.
#[derive(Debug, Clone)]
pub struct DirectResponse {
    pub status: StatusCode,
    pub body: Option<Bytes>,
}

impl DirectResponse {
    /// Error paths are relative to the `DirectResponseAction`.
    pub fn compile(
        config: &DirectResponseAction,
        max_body_bytes: u32,
    ) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let status = match u16::try_from(config.status) {
            Ok(code @ 200..=599) => StatusCode::from_u16(code).ok(),
            _ => None,
        };
        if status.is_none() {
            errors.push(ConfigError::new(
                "status",
                format!("{} is not a valid status (200-599)", config.status),
            ));
        }
        if config.body_format.is_some() {
            errors.push(ConfigError::new(
                "body_format",
                "field 'body_format' is not supported by Sluice",
            ));
        }
        let body = match config.body.as_ref().and_then(|b| b.specifier.as_ref()) {
            None => None,
            Some(DataSourceSpecifier::InlineBytes(bytes)) => Some(Bytes::from(bytes.clone())),
            Some(DataSourceSpecifier::InlineString(text)) => Some(Bytes::from(text.clone())),
            Some(DataSourceSpecifier::EnvironmentVariable(name)) => match std::env::var(name) {
                Ok(value) => Some(Bytes::from(value)),
                Err(_) => {
                    errors.push(ConfigError::new(
                        "body.environment_variable",
                        format!("environment variable \"{name}\" does not exist"),
                    ));
                    None
                }
            },
            Some(DataSourceSpecifier::Filename(_)) => {
                errors.push(ConfigError::new(
                    "body.filename",
                    "field 'filename' is not supported by Sluice; use inline_string or inline_bytes",
                ));
                None
            }
        };
        if let Some(body) = &body {
            if body.len() > max_body_bytes as usize {
                errors.push(ConfigError::new(
                    "body",
                    format!(
                        "response body is {} bytes; the maximum is {max_body_bytes} \
                         (max_direct_response_body_size_bytes)",
                        body.len()
                    ),
                ));
            }
        }
        match status {
            Some(status) if errors.is_empty() => Ok(DirectResponse { status, body }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
#[path = "redirect_tests.rs"]
mod tests;
