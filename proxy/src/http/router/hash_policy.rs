//! A route's `hash_policy` list: the request hash that ring-hash and Maglev
//! load balancers use, computed as Envoy's `HashPolicyImpl` does — each
//! policy hashes its value with xxHash64 (seed 0), results combine as
//! `rotl(hash, 1) ^ new`, and a `terminal` policy that produced a hash ends
//! the evaluation. A cookie policy with a `ttl` whose cookie is missing
//! generates one (as Envoy's router does) when the caller supplies the
//! downstream connection's addresses; the `Set-Cookie` values are handed back
//! for the response.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use envoy_types::pb::envoy::config::route::v3::route_action::{
    hash_policy::PolicySpecifier, HashPolicy as HashPolicyConfig,
};
use http::request::Parts;
use xxhash_rust::xxh64::xxh64;

use super::hash_cookie::{cookie_template, generated_cookie_value, CookieTemplate};
use super::request::{self, HeaderSource};
use super::string_match::RegexSubstitution;
use crate::config::{ConfigError, ConfigErrors};

#[derive(Debug, Clone)]
enum HashMethod {
    Header {
        source: HeaderSource,
        rewrite: Option<RegexSubstitution>,
    },
    Cookie {
        name: String,
        /// Present when a missing cookie is generated (`ttl` set).
        generate: Option<CookieTemplate>,
    },
    SourceIp,
    QueryParameter {
        name: String,
    },
}

/// Where a generated cookie's value comes from, and where its `Set-Cookie`
/// goes.
struct CookieGenerator<'a> {
    remote: SocketAddr,
    local: SocketAddr,
    set_cookies: &'a mut Vec<String>,
}

#[derive(Debug, Clone)]
struct HashStep {
    method: HashMethod,
    terminal: bool,
}

/// The compiled `hash_policy` list of one route.
#[derive(Debug, Clone, Default)]
pub struct HashPolicy {
    steps: Vec<HashStep>,
}

impl HashPolicy {
    /// Compiles `hash_policy`; error paths start at `hash_policy[i]`.
    pub fn compile(configs: &[HashPolicyConfig]) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut steps = Vec::with_capacity(configs.len());
        for (i, config) in configs.iter().enumerate() {
            match compile_method(config) {
                Ok(Some(method)) => steps.push(HashStep {
                    method,
                    terminal: config.terminal,
                }),
                Ok(None) => {}
                Err(error) => errors.push(error.under(&format!("hash_policy[{i}]"))),
            }
        }
        errors.into_result(HashPolicy { steps })
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// True when a cookie policy would generate a missing cookie; use
    /// [`Self::compute_setting_cookies`] then.
    pub fn generates_cookies(&self) -> bool {
        self.steps.iter().any(|step| {
            matches!(
                step.method,
                HashMethod::Cookie {
                    generate: Some(_),
                    ..
                }
            )
        })
    }

    /// The request's hash, or `None` when no policy produced one (the load
    /// balancer then picks as if there were no hash policy). Missing `ttl`
    /// cookies are not generated here.
    pub fn compute(&self, req: &Parts, source_ip: Option<IpAddr>) -> Option<u64> {
        self.evaluate(req, source_ip, None)
    }

    /// [`Self::compute`] for a request on the connection `remote` → `local`,
    /// generating missing `ttl` cookies as Envoy does: the value is the hex
    /// xxHash64 of both addresses, and its `Set-Cookie` is pushed to
    /// `set_cookies` for the response.
    pub fn compute_setting_cookies(
        &self,
        req: &Parts,
        remote: SocketAddr,
        local: SocketAddr,
        set_cookies: &mut Vec<String>,
    ) -> Option<u64> {
        let generator = CookieGenerator {
            remote,
            local,
            set_cookies,
        };
        self.evaluate(req, Some(remote.ip()), Some(generator))
    }

    fn evaluate(
        &self,
        req: &Parts,
        source_ip: Option<IpAddr>,
        mut generator: Option<CookieGenerator<'_>>,
    ) -> Option<u64> {
        let mut hash: Option<u64> = None;
        for step in &self.steps {
            if let Some(new) = step.method.evaluate(req, source_ip, generator.as_mut()) {
                // Rotating keeps two identical policies from cancelling out.
                hash = Some(hash.map_or(0, |old| old.rotate_left(1)) ^ new);
            }
            if step.terminal && hash.is_some() {
                break;
            }
        }
        hash
    }
}

fn compile_method(config: &HashPolicyConfig) -> Result<Option<HashMethod>, ConfigError> {
    Ok(Some(match &config.policy_specifier {
        None => {
            return Err(ConfigError::new(
                "",
                "one of header, cookie, connection_properties, query_parameter or filter_state is required",
            ))
        }
        Some(PolicySpecifier::Header(header)) => {
            let source = HeaderSource::parse(&header.header_name)
                .map_err(|m| ConfigError::new("header.header_name", m))?;
            let rewrite = header
                .regex_rewrite
                .as_ref()
                .map(RegexSubstitution::compile)
                .transpose()
                .map_err(|e| e.under("header.regex_rewrite"))?;
            HashMethod::Header { source, rewrite }
        }
        Some(PolicySpecifier::Cookie(cookie)) => {
            if cookie.name.is_empty() {
                return Err(ConfigError::new("cookie.name", "must not be empty"));
            }
            let generate = match &cookie.ttl {
                None => None,
                Some(ttl) => Some(cookie_template(cookie, ttl.seconds)?),
            };
            HashMethod::Cookie {
                name: cookie.name.clone(),
                generate,
            }
        }
        // Envoy adds no policy at all for `source_ip: false`.
        Some(PolicySpecifier::ConnectionProperties(props)) if !props.source_ip => return Ok(None),
        Some(PolicySpecifier::ConnectionProperties(_)) => HashMethod::SourceIp,
        Some(PolicySpecifier::QueryParameter(param)) => {
            if param.name.is_empty() {
                return Err(ConfigError::new("query_parameter.name", "must not be empty"));
            }
            HashMethod::QueryParameter {
                name: param.name.clone(),
            }
        }
        Some(PolicySpecifier::FilterState(_)) => {
            return Err(ConfigError::new(
                "filter_state",
                "field 'filter_state' is not supported by Sluice",
            ))
        }
    }))
}

impl HashMethod {
    fn evaluate(
        &self,
        req: &Parts,
        source_ip: Option<IpAddr>,
        generator: Option<&mut CookieGenerator<'_>>,
    ) -> Option<u64> {
        match self {
            HashMethod::Header { source, rewrite } => {
                let rewritten = |value| apply_rewrite(rewrite.as_ref(), value);
                let mut values = source.values(req);
                let first = rewritten(values.next()?);
                let Some(second) = values.next() else {
                    return Some(xxh64(first.as_bytes(), 0));
                };
                let mut all: Vec<Cow<'_, str>> = vec![first, rewritten(second)];
                all.extend(values.map(rewritten));
                // Sorted so `a, b` and `b, a` hash the same; each value seeds
                // the next, as Envoy's `HashUtil::xxHash64(span)`.
                all.sort_unstable();
                Some(
                    all.iter()
                        .fold(0, |seed, value| xxh64(value.as_bytes(), seed)),
                )
            }
            HashMethod::Cookie { name, generate } => {
                if let Some(value) = request::cookie(req, name).filter(|v| !v.is_empty()) {
                    return Some(xxh64(value.as_bytes(), 0));
                }
                let (template, generator) = (generate.as_ref()?, generator?);
                let value = generated_cookie_value(generator.remote, generator.local);
                generator
                    .set_cookies
                    .push(template.set_cookie(name, &value));
                Some(xxh64(value.as_bytes(), 0))
            }
            HashMethod::SourceIp => source_ip.map(|ip| xxh64(ip_text(ip, &mut [0; 64]), 0)),
            HashMethod::QueryParameter { name } => {
                request::query_parameter(req, name).map(|value| xxh64(value.as_bytes(), 0))
            }
        }
    }
}

fn apply_rewrite<'v>(rewrite: Option<&RegexSubstitution>, value: Cow<'v, str>) -> Cow<'v, str> {
    match rewrite {
        Some(rewrite) => Cow::Owned(rewrite.replace_all(&value)),
        None => value,
    }
}

/// The address as Envoy prints it (`10.0.0.1`, `2001:db8::1`), formatted
/// into `buffer` without allocating.
fn ip_text(ip: IpAddr, buffer: &mut [u8; 64]) -> &[u8] {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    // An IPv6 address prints in at most 45 bytes.
    let _ = write!(cursor, "{ip}");
    let len = cursor.position() as usize;
    &buffer[..len]
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::route::v3::route_action::hash_policy::{
        ConnectionProperties, Cookie, FilterState, Header, QueryParameter,
    };
    use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatchAndSubstitute, RegexMatcher};

    fn policy(specifier: PolicySpecifier, terminal: bool) -> HashPolicyConfig {
        HashPolicyConfig {
            terminal,
            policy_specifier: Some(specifier),
        }
    }

    fn header(name: &str) -> PolicySpecifier {
        PolicySpecifier::Header(Header {
            header_name: name.into(),
            regex_rewrite: None,
        })
    }

    fn req(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn hash(policies: Vec<HashPolicyConfig>, req: &Parts, ip: Option<IpAddr>) -> Option<u64> {
        HashPolicy::compile(&policies).unwrap().compute(req, ip)
    }

    #[test]
    fn header_hash_is_xxh64_of_the_value() {
        let r = req("/", &[("x-user", "alice")]);
        assert_eq!(
            hash(vec![policy(header("x-user"), false)], &r, None),
            Some(xxh64(b"alice", 0))
        );
        let other = req("/", &[("x-user", "bob")]);
        assert_ne!(
            hash(vec![policy(header("x-user"), false)], &r, None),
            hash(vec![policy(header("x-user"), false)], &other, None)
        );
        assert_eq!(
            hash(vec![policy(header("x-user"), false)], &req("/", &[]), None),
            None
        );
    }

    #[test]
    fn repeated_header_values_hash_independently_of_order() {
        let ab = req("/", &[("x-k", "a"), ("x-k", "b")]);
        let ba = req("/", &[("x-k", "b"), ("x-k", "a")]);
        let p = || vec![policy(header("x-k"), false)];
        assert_eq!(hash(p(), &ab, None), hash(p(), &ba, None));
        assert_eq!(hash(p(), &ab, None), Some(xxh64(b"b", xxh64(b"a", 0))));
    }

    #[test]
    fn header_regex_rewrite_applies_before_hashing() {
        let spec = PolicySpecifier::Header(Header {
            header_name: ":path".into(),
            regex_rewrite: Some(RegexMatchAndSubstitute {
                pattern: Some(RegexMatcher {
                    regex: "^/api/([^/]+)/.*$".into(),
                    ..Default::default()
                }),
                substitution: "\\1".into(),
            }),
        });
        let r = req("/api/tenant7/things", &[]);
        assert_eq!(
            hash(vec![policy(spec, false)], &r, None),
            Some(xxh64(b"tenant7", 0))
        );
    }

    #[test]
    fn policies_combine_by_rotate_and_xor_and_terminal_stops() {
        let r = req("/?q=v", &[("x-a", "1"), ("cookie", "sid=s1")]);
        let a = xxh64(b"1", 0);
        let q = xxh64(b"v", 0);
        let both = vec![
            policy(header("x-a"), false),
            policy(
                PolicySpecifier::QueryParameter(QueryParameter { name: "q".into() }),
                false,
            ),
        ];
        assert_eq!(hash(both, &r, None), Some(a.rotate_left(1) ^ q));
        let terminal_first = vec![
            policy(header("x-a"), true),
            policy(
                PolicySpecifier::QueryParameter(QueryParameter { name: "q".into() }),
                false,
            ),
        ];
        assert_eq!(hash(terminal_first, &r, None), Some(a));
        // A terminal policy that produced nothing does not stop the chain.
        let terminal_missing = vec![
            policy(header("x-missing"), true),
            policy(
                PolicySpecifier::Cookie(Cookie {
                    name: "sid".into(),
                    ..Default::default()
                }),
                false,
            ),
        ];
        assert_eq!(hash(terminal_missing, &r, None), Some(xxh64(b"s1", 0)));
    }

    #[test]
    fn ttl_cookies_are_generated_when_missing() {
        use envoy_types::pb::envoy::config::route::v3::route_action::hash_policy::CookieAttribute;
        let p = HashPolicy::compile(&[policy(
            PolicySpecifier::Cookie(Cookie {
                name: "sticky".into(),
                ttl: Some(envoy_types::pb::google::protobuf::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                path: "/app".into(),
                attributes: vec![
                    CookieAttribute {
                        name: "SameSite".into(),
                        value: "Strict".into(),
                    },
                    CookieAttribute {
                        name: "Secure".into(),
                        value: String::new(),
                    },
                ],
            }),
            false,
        )])
        .unwrap();
        assert!(p.generates_cookies());
        let remote: SocketAddr = "10.0.0.1:5555".parse().unwrap();
        let local: SocketAddr = "[::1]:8080".parse().unwrap();
        let value = format!("{:016x}", xxh64(b"10.0.0.1:5555[::1]:8080", 0));
        let mut set_cookies = Vec::new();
        let hash = p.compute_setting_cookies(&req("/", &[]), remote, local, &mut set_cookies);
        assert_eq!(hash, Some(xxh64(value.as_bytes(), 0)));
        assert_eq!(
            set_cookies,
            [format!(
                "sticky=\"{value}\"; Max-Age=3600; Path=/app; SameSite=Strict; Secure; HttpOnly"
            )]
        );
        // The client returns it: same hash, nothing more to set.
        let back = req("/", &[("cookie", &format!("sticky={value}"))]);
        let mut again = Vec::new();
        assert_eq!(
            p.compute_setting_cookies(&back, remote, local, &mut again),
            hash
        );
        assert!(again.is_empty());
        // Without the connection, nothing is generated.
        assert_eq!(p.compute(&req("/", &[]), None), None);
    }

    #[test]
    fn a_zero_ttl_makes_a_session_cookie() {
        let p = HashPolicy::compile(&[policy(
            PolicySpecifier::Cookie(Cookie {
                name: "s".into(),
                ttl: Some(Default::default()),
                ..Default::default()
            }),
            false,
        )])
        .unwrap();
        let addr: SocketAddr = "1.2.3.4:1".parse().unwrap();
        let mut set_cookies = Vec::new();
        p.compute_setting_cookies(&req("/", &[]), addr, addr, &mut set_cookies);
        assert!(
            set_cookies[0].ends_with("\"; HttpOnly"),
            "{}",
            set_cookies[0]
        );
        assert!(!set_cookies[0].contains("Max-Age"));
    }

    #[test]
    fn source_ip_hashes_the_address_text() {
        let p = || {
            vec![policy(
                PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true }),
                false,
            )]
        };
        let r = req("/", &[]);
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(hash(p(), &r, Some(v4)), Some(xxh64(b"10.0.0.1", 0)));
        assert_eq!(hash(p(), &r, Some(v6)), Some(xxh64(b"2001:db8::1", 0)));
        assert_eq!(hash(p(), &r, None), None);
        let off = vec![policy(
            PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: false }),
            false,
        )];
        assert!(HashPolicy::compile(&off).unwrap().is_empty());
    }

    #[test]
    fn unsupported_and_invalid_policies_are_rejected() {
        let errors = HashPolicy::compile(&[
            policy(header("x-ok"), false),
            policy(
                PolicySpecifier::Cookie(Cookie {
                    name: "c".into(),
                    ttl: Some(envoy_types::pb::google::protobuf::Duration {
                        seconds: -1,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                false,
            ),
            policy(
                PolicySpecifier::FilterState(FilterState { key: "k".into() }),
                false,
            ),
            policy(header(""), false),
            HashPolicyConfig::default(),
        ])
        .unwrap_err();
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "hash_policy[1].cookie.ttl",
                "hash_policy[2].filter_state",
                "hash_policy[3].header.header_name",
                "hash_policy[4]"
            ]
        );
    }
}
