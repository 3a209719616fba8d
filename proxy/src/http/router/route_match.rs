//! A route's `match`: path (prefix / path / safe_regex /
//! path_separated_prefix, with `case_sensitive`), `runtime_fraction`,
//! header, query-parameter and cookie matchers and `grpc`, compiled once and
//! evaluated per request without allocating.

use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, query_parameter_matcher::QueryParameterMatchSpecifier,
    route_match::PathSpecifier, CookieMatcher as CookieMatcherConfig,
    HeaderMatcher as HeaderMatcherConfig, QueryParameterMatcher as QueryParameterMatcherConfig,
    RouteMatch as RouteMatchConfig,
};
use envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType;
use http::request::Parts;
use regex::Regex;

use super::request::{self, HeaderSource};
use super::string_match::{compile_full_match, starts_with, StringMatch};
use crate::config::{ConfigError, ConfigErrors};

/// How a route matches the request path (without its query string).
#[derive(Debug, Clone)]
pub enum PathMatch {
    Prefix {
        prefix: String,
        case_sensitive: bool,
    },
    Exact {
        path: String,
        case_sensitive: bool,
    },
    Regex(Regex),
    /// Matches `prefix` exactly or followed by `/`.
    SeparatedPrefix {
        prefix: String,
        case_sensitive: bool,
    },
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Prefix {
                prefix,
                case_sensitive,
            } => starts_with(path, prefix, !case_sensitive),
            PathMatch::Exact {
                path: want,
                case_sensitive,
            } => {
                if *case_sensitive {
                    path == want
                } else {
                    path.eq_ignore_ascii_case(want)
                }
            }
            PathMatch::Regex(regex) => regex.is_match(path),
            PathMatch::SeparatedPrefix {
                prefix,
                case_sensitive,
            } => {
                starts_with(path, prefix, !case_sensitive)
                    && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/')
            }
        }
    }

    /// The length of the path portion a `prefix_rewrite` replaces: the
    /// configured prefix or path; `None` for a regex (the whole path).
    pub fn matched_len(&self) -> Option<usize> {
        match self {
            PathMatch::Prefix { prefix, .. } | PathMatch::SeparatedPrefix { prefix, .. } => {
                Some(prefix.len())
            }
            PathMatch::Exact { path, .. } => Some(path.len()),
            PathMatch::Regex(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
enum HeaderCheck {
    String(StringMatch),
    Present(bool),
    /// `[start, end)` on the value parsed as a signed integer.
    Range {
        start: i64,
        end: i64,
    },
}

/// A compiled `HeaderMatcher`.
#[derive(Debug, Clone)]
pub struct HeaderMatch {
    source: HeaderSource,
    check: HeaderCheck,
    invert: bool,
    treat_missing_as_empty: bool,
}

impl HeaderMatch {
    /// Error paths are relative to the `HeaderMatcher`. The deprecated
    /// `*_match` fields are still accepted, as Envoy accepts them.
    #[allow(deprecated)]
    pub fn compile(config: &HeaderMatcherConfig) -> Result<Self, ConfigError> {
        let source = HeaderSource::parse(&config.name).map_err(|m| ConfigError::new("name", m))?;
        let check = match &config.header_match_specifier {
            // A matcher with only a name checks the header is present.
            None => HeaderCheck::Present(true),
            Some(HeaderMatchSpecifier::ExactMatch(value)) => {
                HeaderCheck::String(StringMatch::exact(value))
            }
            Some(HeaderMatchSpecifier::PrefixMatch(value)) => {
                HeaderCheck::String(StringMatch::prefix(non_empty(value, "prefix_match")?))
            }
            Some(HeaderMatchSpecifier::SuffixMatch(value)) => {
                HeaderCheck::String(StringMatch::suffix(non_empty(value, "suffix_match")?))
            }
            Some(HeaderMatchSpecifier::ContainsMatch(value)) => {
                HeaderCheck::String(StringMatch::contains(non_empty(value, "contains_match")?))
            }
            Some(HeaderMatchSpecifier::SafeRegexMatch(regex)) => {
                HeaderCheck::String(StringMatch::regex(
                    compile_full_match(regex).map_err(|e| e.under("safe_regex_match"))?,
                ))
            }
            Some(HeaderMatchSpecifier::StringMatch(matcher)) => HeaderCheck::String(
                StringMatch::compile(matcher).map_err(|e| e.under("string_match"))?,
            ),
            Some(HeaderMatchSpecifier::PresentMatch(present)) => HeaderCheck::Present(*present),
            Some(HeaderMatchSpecifier::RangeMatch(range)) => {
                if range.start >= range.end {
                    return Err(ConfigError::new(
                        "range_match",
                        format!(
                            "start ({}) must be less than end ({})",
                            range.start, range.end
                        ),
                    ));
                }
                HeaderCheck::Range {
                    start: range.start,
                    end: range.end,
                }
            }
        };
        Ok(HeaderMatch {
            source,
            check,
            invert: config.invert_match,
            treat_missing_as_empty: config.treat_missing_header_as_empty,
        })
    }

    /// Envoy 1.40 matches each value of a repeated header on its own (the
    /// CVE-2026-26308 fix, runtime guard `route_match_headers_individually`):
    /// the matcher holds when any value matches, and `invert_match` negates
    /// that — no value may match.
    pub fn matches(&self, req: &Parts) -> bool {
        let mut values = self.source.values(req).peekable();
        if values.peek().is_none() {
            if self.treat_missing_as_empty {
                return self.check_value("") != self.invert;
            }
            // Absent: only `present_match: false` matches, or with
            // `invert_match`, only `present_match: true`.
            return matches!(self.check, HeaderCheck::Present(present) if present == self.invert);
        }
        let matched = values.any(|value| self.check_value(&value));
        matched != self.invert
    }

    fn check_value(&self, value: &str) -> bool {
        match &self.check {
            HeaderCheck::String(matcher) => matcher.matches(value),
            HeaderCheck::Present(present) => *present,
            HeaderCheck::Range { start, end } => value
                .parse::<i64>()
                .is_ok_and(|number| *start <= number && number < *end),
        }
    }
}

fn non_empty<'a>(value: &'a str, field: &str) -> Result<&'a str, ConfigError> {
    if value.is_empty() {
        Err(ConfigError::new(field, "must not be empty"))
    } else {
        Ok(value)
    }
}

/// A compiled `QueryParameterMatcher` (values are matched undecoded, as
/// Envoy's route matching does).
#[derive(Debug, Clone)]
pub struct QueryParameterMatch {
    name: String,
    check: QueryCheck,
}

#[derive(Debug, Clone)]
enum QueryCheck {
    Value(StringMatch),
    /// `present_match`: `true` needs the parameter, `false` its absence
    /// (as Envoy 1.40 behaves). No specifier at all means present.
    Present(bool),
}

impl QueryParameterMatch {
    pub fn compile(config: &QueryParameterMatcherConfig) -> Result<Self, ConfigError> {
        if config.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        let check = match &config.query_parameter_match_specifier {
            Some(QueryParameterMatchSpecifier::StringMatch(matcher)) => QueryCheck::Value(
                StringMatch::compile(matcher).map_err(|e| e.under("string_match"))?,
            ),
            Some(QueryParameterMatchSpecifier::PresentMatch(present)) => {
                QueryCheck::Present(*present)
            }
            None => QueryCheck::Present(true),
        };
        Ok(QueryParameterMatch {
            name: config.name.clone(),
            check,
        })
    }

    pub fn matches(&self, req: &Parts) -> bool {
        let value = request::query_parameter(req, &self.name);
        match &self.check {
            QueryCheck::Value(matcher) => value.is_some_and(|v| matcher.matches(v)),
            QueryCheck::Present(present) => value.is_some() == *present,
        }
    }
}

/// A compiled `CookieMatcher`: an absent cookie does not match (so with
/// `invert_match` it does).
#[derive(Debug, Clone)]
pub struct CookieMatch {
    name: String,
    value: StringMatch,
    invert: bool,
}

impl CookieMatch {
    pub fn compile(config: &CookieMatcherConfig) -> Result<Self, ConfigError> {
        if config.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        let Some(matcher) = &config.string_match else {
            return Err(ConfigError::new("string_match", "is required"));
        };
        Ok(CookieMatch {
            name: config.name.clone(),
            value: StringMatch::compile(matcher).map_err(|e| e.under("string_match"))?,
            invert: config.invert_match,
        })
    }

    pub fn matches(&self, req: &Parts) -> bool {
        let matched = request::cookie(req, &self.name).is_some_and(|v| self.value.matches(v));
        matched != self.invert
    }
}

/// A compiled `RouteMatch`.
#[derive(Debug, Clone)]
pub struct RouteMatcher {
    pub path: PathMatch,
    /// `runtime_fraction` as `(numerator, denominator)`: the route matches
    /// when `random % denominator < numerator` (Envoy's default value; Sluice
    /// has no runtime layer to override it).
    fraction: Option<(u64, u64)>,
    headers: Vec<HeaderMatch>,
    query_parameters: Vec<QueryParameterMatch>,
    cookies: Vec<CookieMatch>,
    grpc: bool,
}

impl RouteMatcher {
    /// Error paths are relative to the `RouteMatch`.
    pub fn compile(config: &RouteMatchConfig) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        for (field, set) in [
            ("tls_context", config.tls_context.is_some()),
            ("dynamic_metadata", !config.dynamic_metadata.is_empty()),
            ("filter_state", !config.filter_state.is_empty()),
        ] {
            if set {
                errors.push(unsupported(field));
            }
        }
        let fraction = match config.runtime_fraction.as_ref().map(compile_fraction) {
            None => None,
            Some(Ok(fraction)) => Some(fraction),
            Some(Err(error)) => {
                errors.push(error.under("runtime_fraction"));
                None
            }
        };
        let case_sensitive = config.case_sensitive.as_ref().is_none_or(|v| v.value);
        let path = match compile_path(config.path_specifier.as_ref(), case_sensitive) {
            Ok(path) => Some(path),
            Err(error) => {
                errors.push(error);
                None
            }
        };
        let mut headers = Vec::with_capacity(config.headers.len());
        for (i, header) in config.headers.iter().enumerate() {
            match HeaderMatch::compile(header) {
                Ok(matcher) => headers.push(matcher),
                Err(error) => errors.push(error.under(&format!("headers[{i}]"))),
            }
        }
        let mut query_parameters = Vec::with_capacity(config.query_parameters.len());
        for (i, param) in config.query_parameters.iter().enumerate() {
            match QueryParameterMatch::compile(param) {
                Ok(matcher) => query_parameters.push(matcher),
                Err(error) => errors.push(error.under(&format!("query_parameters[{i}]"))),
            }
        }
        let mut cookies = Vec::with_capacity(config.cookies.len());
        for (i, cookie) in config.cookies.iter().enumerate() {
            match CookieMatch::compile(cookie) {
                Ok(matcher) => cookies.push(matcher),
                Err(error) => errors.push(error.under(&format!("cookies[{i}]"))),
            }
        }
        match path {
            Some(path) if errors.is_empty() => Ok(RouteMatcher {
                path,
                fraction,
                headers,
                query_parameters,
                cookies,
                grpc: config.grpc.is_some(),
            }),
            _ => Err(errors),
        }
    }

    /// A matcher for every request (prefix `/`), for synthetic routes.
    pub fn match_all() -> Self {
        RouteMatcher {
            path: PathMatch::Prefix {
                prefix: String::new(),
                case_sensitive: true,
            },
            fraction: None,
            headers: Vec::new(),
            query_parameters: Vec::new(),
            cookies: Vec::new(),
            grpc: false,
        }
    }

    /// True when matching draws on the request's random value.
    pub fn uses_random(&self) -> bool {
        self.fraction.is_some()
    }

    /// Envoy's order: runtime fraction, path, gRPC, headers, query
    /// parameters, cookies; all must match. `path` is the request path without its
    /// query (and, when configured, without path parameters); `random` is
    /// the stream's random value.
    pub fn matches(&self, req: &Parts, path: &str, random: u64) -> bool {
        self.fraction
            .is_none_or(|(numerator, denominator)| random % denominator < numerator)
            && self.path.matches(path)
            && (!self.grpc || is_grpc(req))
            && self.headers.iter().all(|h| h.matches(req))
            && self.query_parameters.iter().all(|q| q.matches(req))
            && self.cookies.iter().all(|c| c.matches(req))
    }
}

fn compile_path(
    specifier: Option<&PathSpecifier>,
    case_sensitive: bool,
) -> Result<PathMatch, ConfigError> {
    Ok(match specifier {
        None => {
            return Err(ConfigError::new(
                "",
                "one of prefix, path, safe_regex or path_separated_prefix is required",
            ))
        }
        Some(PathSpecifier::Prefix(prefix)) => PathMatch::Prefix {
            prefix: prefix.clone(),
            case_sensitive,
        },
        Some(PathSpecifier::Path(path)) => PathMatch::Exact {
            path: path.clone(),
            case_sensitive,
        },
        Some(PathSpecifier::SafeRegex(regex)) => {
            PathMatch::Regex(compile_full_match(regex).map_err(|e| e.under("safe_regex"))?)
        }
        Some(PathSpecifier::PathSeparatedPrefix(prefix)) => {
            let valid = prefix.len() >= 2 && !prefix.ends_with('/') && !prefix.contains(['?', '#']);
            if !valid {
                return Err(ConfigError::new(
                    "path_separated_prefix",
                    format!(
                        "\"{prefix}\" must be at least 2 characters, must not end with '/' \
                         and must not contain '?' or '#'"
                    ),
                ));
            }
            PathMatch::SeparatedPrefix {
                prefix: prefix.clone(),
                case_sensitive,
            }
        }
        Some(PathSpecifier::ConnectMatcher(_)) => return Err(unsupported("connect_matcher")),
        Some(PathSpecifier::PathMatchPolicy(_)) => return Err(unsupported("path_match_policy")),
    })
}

fn compile_fraction(config: &RuntimeFractionalPercent) -> Result<(u64, u64), ConfigError> {
    let Some(percent) = &config.default_value else {
        return Err(ConfigError::new("default_value", "is required"));
    };
    let denominator = match DenominatorType::try_from(percent.denominator) {
        Ok(DenominatorType::Hundred) => 100,
        Ok(DenominatorType::TenThousand) => 10_000,
        Ok(DenominatorType::Million) => 1_000_000,
        Err(_) => {
            return Err(ConfigError::new(
                "default_value.denominator",
                format!("unknown value {}", percent.denominator),
            ))
        }
    };
    Ok((u64::from(percent.numerator), denominator))
}

fn unsupported(field: &str) -> ConfigError {
    ConfigError::new(field, format!("field '{field}' is not supported by Sluice"))
}

/// Envoy's `isGrpcRequestHeaders`: a `:path` and a content-type of exactly
/// `application/grpc` or `application/grpc+…` (not `application/grpc-web`).
fn is_grpc(req: &Parts) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    let Some(content_type) = req.headers.get(http::header::CONTENT_TYPE) else {
        return false;
    };
    let bytes = content_type.as_bytes();
    request::path_and_query(req).is_some()
        && bytes.starts_with(GRPC)
        && (bytes.len() == GRPC.len() || bytes[GRPC.len()] == b'+')
}

#[cfg(test)]
#[path = "route_match_tests.rs"]
mod tests;
