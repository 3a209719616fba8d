//! The `route` action: which cluster (static name, request header, or
//! weighted pick), path and host rewrites, timeouts, the hash policy and the
//! status to answer when the cluster does not exist.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use envoy_types::pb::envoy::config::route::v3::{
    route_action::{
        ClusterNotFoundResponseCode, ClusterSpecifier as ClusterSpecifierConfig,
        HostRewriteSpecifier,
    },
    weighted_cluster::{cluster_weight, ClusterWeight, RandomValueSpecifier},
    RouteAction as RouteActionConfig, WeightedCluster,
};
use http::request::Parts;
use http::{HeaderName, StatusCode};

use super::hash_policy::HashPolicy;
use super::header_mutation::HeaderMutations;
use super::request;
use super::rewrite::PathRewrite;
use super::route_match::PathMatch;
use super::string_match::RegexSubstitution;
use crate::config::proto::timeout_or;
use crate::config::{ConfigError, ConfigErrors};

/// Envoy's default upstream request timeout for a route.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

/// Where a (weighted) cluster's name comes from.
#[derive(Debug, Clone)]
pub enum ClusterTarget {
    Named(String),
    /// The first value of this request header, read per request.
    Header(HeaderName),
}

impl ClusterTarget {
    fn resolve<'r>(&'r self, req: &'r Parts) -> Option<&'r str> {
        match self {
            ClusterTarget::Named(name) => Some(name),
            ClusterTarget::Header(header) => {
                request::first_header(req, header).filter(|name| !name.is_empty())
            }
        }
    }
}

/// One entry of `weighted_clusters`.
#[derive(Debug, Clone)]
pub struct WeightedClusterEntry {
    pub target: ClusterTarget,
    pub weight: u32,
    pub request_headers: HeaderMutations,
    pub response_headers: HeaderMutations,
    pub host_rewrite_literal: Option<String>,
}

#[derive(Debug, Clone)]
pub struct WeightedClusters {
    pub clusters: Vec<WeightedClusterEntry>,
    total_weight: u64,
    /// `random_value_specifier.header_name`: a header carrying the random value.
    random_header: Option<HeaderName>,
}

impl WeightedClusters {
    /// Envoy's pick: `random % total` falls in one entry's `[begin, end)`.
    pub fn pick<'t>(&'t self, req: &Parts, random: u64) -> &'t WeightedClusterEntry {
        let random = self
            .random_header
            .as_ref()
            .and_then(|header| request::first_header(req, header))
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(random);
        let selected = random % self.total_weight;
        let mut end = 0u64;
        for entry in &self.clusters {
            end += u64::from(entry.weight);
            if selected < end {
                return entry;
            }
        }
        unreachable!("total_weight is the sum of the weights and is > 0")
    }
}

/// How the route names its cluster.
#[derive(Debug, Clone)]
pub enum ClusterSpecifier {
    Target(ClusterTarget),
    Weighted(WeightedClusters),
}

/// The cluster chosen for one request. The name may borrow from the
/// request (`cluster_header`); the weighted entry only from the table, so it
/// outlives changes to the request's headers.
#[derive(Debug, Clone, Copy)]
pub struct ClusterChoice<'t, 'r> {
    /// `None` when the cluster header is absent or empty: answer with
    /// `cluster_not_found_response_code`.
    pub name: Option<&'r str>,
    /// The weighted entry picked, whose header mutations and host rewrite
    /// also apply.
    pub weighted: Option<&'t WeightedClusterEntry>,
}

/// How the upstream `Host` is rewritten.
#[derive(Debug, Clone)]
pub enum HostRewrite {
    None,
    Literal(String),
    /// `auto_host_rewrite`: the caller sets Host to the chosen upstream host.
    Auto,
    /// The first value of this request header (if present).
    Header(HeaderName),
    /// The path (without query) rewritten by this substitution.
    PathRegex(RegexSubstitution),
}

/// A compiled `route` action.
#[derive(Debug, Clone)]
pub struct ForwardAction {
    pub cluster: ClusterSpecifier,
    pub cluster_not_found_response_code: StatusCode,
    path_rewrite: Option<PathRewrite>,
    pub host_rewrite: HostRewrite,
    /// `append_x_forwarded_host`: when the Host is rewritten, the caller
    /// appends the original to `x-forwarded-host`.
    pub append_x_forwarded_host: bool,
    /// Upstream request timeout; `None` means disabled (configured as 0).
    pub timeout: Option<Duration>,
    /// The timeout in milliseconds as a header value, for
    /// `x-envoy-expected-rq-timeout-ms` (made once, not per request).
    pub timeout_ms_header: Option<http::HeaderValue>,
    /// `idle_timeout` as configured: `None` unset (the connection manager's
    /// stream idle timeout applies), `Some(ZERO)` disabled.
    pub idle_timeout: Option<Duration>,
    pub hash_policy: HashPolicy,
}

impl ForwardAction {
    /// Compiles a `RouteAction`; error paths are relative to it.
    pub fn compile(config: &RouteActionConfig, path: &PathMatch) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let cluster = match compile_cluster_specifier(config.cluster_specifier.as_ref()) {
            Ok(cluster) => Some(cluster),
            Err(more) => {
                errors.extend_under("", more);
                None
            }
        };
        let cluster_not_found_response_code =
            match ClusterNotFoundResponseCode::try_from(config.cluster_not_found_response_code) {
                Ok(ClusterNotFoundResponseCode::ServiceUnavailable) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                Ok(ClusterNotFoundResponseCode::NotFound) => StatusCode::NOT_FOUND,
                Ok(ClusterNotFoundResponseCode::InternalServerError) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                Err(_) => {
                    errors.push(ConfigError::new(
                        "cluster_not_found_response_code",
                        format!("unknown value {}", config.cluster_not_found_response_code),
                    ));
                    StatusCode::SERVICE_UNAVAILABLE
                }
            };
        let path_rewrite = compile_path_rewrite(config, path).unwrap_or_else(|error| {
            errors.push(error);
            None
        });
        let host_rewrite = compile_host_rewrite(config.host_rewrite_specifier.as_ref())
            .unwrap_or_else(|error| {
                errors.push(error);
                HostRewrite::None
            });
        let hash_policy = HashPolicy::compile(&config.hash_policy).unwrap_or_else(|more| {
            errors.extend_under("", more);
            HashPolicy::default()
        });
        let timeout = timeout_or(&config.timeout, Some(DEFAULT_ROUTE_TIMEOUT));
        match cluster {
            Some(cluster) if errors.is_empty() => Ok(ForwardAction {
                timeout_ms_header: timeout
                    .map(|timeout| http::HeaderValue::from(timeout.as_millis() as u64)),
                cluster,
                cluster_not_found_response_code,
                path_rewrite,
                host_rewrite,
                append_x_forwarded_host: config.append_x_forwarded_host,
                timeout,
                idle_timeout: config
                    .idle_timeout
                    .as_ref()
                    .map(crate::config::proto::duration),
                hash_policy,
            }),
            _ => Err(errors),
        }
    }

    /// The cluster for this request; `random` drives a weighted pick.
    pub fn cluster_for<'t: 'r, 'r>(&'t self, req: &'r Parts, random: u64) -> ClusterChoice<'t, 'r> {
        match &self.cluster {
            ClusterSpecifier::Target(target) => ClusterChoice {
                name: target.resolve(req),
                weighted: None,
            },
            ClusterSpecifier::Weighted(weighted) => {
                let entry = weighted.pick(req, random);
                ClusterChoice {
                    name: entry.target.resolve(req),
                    weighted: Some(entry),
                }
            }
        }
    }

    /// The new `:path` after `prefix_rewrite` / `regex_rewrite`, or `None`
    /// when the path stays as it is.
    pub fn rewrite_path(&self, path_and_query: &str) -> Option<String> {
        self.path_rewrite.as_ref()?.apply(path_and_query)
    }

    /// The upstream Host from a literal, header or path-regex rewrite, with
    /// the weighted cluster's `host_rewrite_literal` taking precedence.
    /// `None`: keep the Host (or, for [`HostRewrite::Auto`], the caller uses
    /// the upstream host's name).
    pub fn rewritten_host<'a>(
        &'a self,
        req: &'a Parts,
        weighted: Option<&'a WeightedClusterEntry>,
    ) -> Option<Cow<'a, str>> {
        if let Some(host) = weighted.and_then(|w| w.host_rewrite_literal.as_deref()) {
            return Some(Cow::Borrowed(host));
        }
        let host = match &self.host_rewrite {
            HostRewrite::None | HostRewrite::Auto => return None,
            HostRewrite::Literal(host) => Cow::Borrowed(host.as_str()),
            HostRewrite::Header(header) => Cow::Borrowed(request::first_header(req, header)?),
            HostRewrite::PathRegex(sub) => Cow::Owned(sub.replace_all(request::path_only(req))),
        };
        (!host.is_empty()).then_some(host)
    }

    pub fn auto_host_rewrite(&self) -> bool {
        matches!(self.host_rewrite, HostRewrite::Auto)
    }

    pub fn compute_hash(&self, req: &Parts, source_ip: Option<IpAddr>) -> Option<u64> {
        self.hash_policy.compute(req, source_ip)
    }

    /// [`Self::compute_hash`] that also generates missing `ttl` hash
    /// cookies; their `Set-Cookie` values go to `set_cookies` for the
    /// response. Needed when [`HashPolicy::generates_cookies`].
    pub fn compute_hash_setting_cookies(
        &self,
        req: &Parts,
        remote: SocketAddr,
        local: SocketAddr,
        set_cookies: &mut Vec<String>,
    ) -> Option<u64> {
        self.hash_policy
            .compute_setting_cookies(req, remote, local, set_cookies)
    }

    /// Every cluster named statically (not read from a header).
    pub fn static_cluster_names(&self) -> impl Iterator<Item = &str> {
        let targets: Box<dyn Iterator<Item = &ClusterTarget>> = match &self.cluster {
            ClusterSpecifier::Target(target) => Box::new(std::iter::once(target)),
            ClusterSpecifier::Weighted(w) => Box::new(w.clusters.iter().map(|c| &c.target)),
        };
        targets.filter_map(|target| match target {
            ClusterTarget::Named(name) => Some(name.as_str()),
            ClusterTarget::Header(_) => None,
        })
    }
}

fn cluster_header(name: &str, field: &str) -> Result<HeaderName, ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    if name.starts_with(':') {
        return Err(ConfigError::new(
            field,
            format!("pseudo-header \"{name}\" cannot name a cluster"),
        ));
    }
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ConfigError::new(field, format!("invalid header name \"{name}\"")))
}

fn compile_cluster_specifier(
    config: Option<&ClusterSpecifierConfig>,
) -> Result<ClusterSpecifier, ConfigErrors> {
    match config {
        None => Err(ConfigError::new(
            "",
            "one of cluster, cluster_header or weighted_clusters is required",
        )
        .into()),
        Some(ClusterSpecifierConfig::Cluster(name)) if name.is_empty() => {
            Err(ConfigError::new("cluster", "must not be empty").into())
        }
        Some(ClusterSpecifierConfig::Cluster(name)) => {
            Ok(ClusterSpecifier::Target(ClusterTarget::Named(name.clone())))
        }
        Some(ClusterSpecifierConfig::ClusterHeader(name)) => Ok(ClusterSpecifier::Target(
            ClusterTarget::Header(cluster_header(name, "cluster_header")?),
        )),
        Some(ClusterSpecifierConfig::WeightedClusters(weighted)) => compile_weighted(weighted)
            .map_err(|errors| {
                let mut under = ConfigErrors::default();
                under.extend_under("weighted_clusters", errors);
                under
            }),
        Some(ClusterSpecifierConfig::ClusterSpecifierPlugin(_)) => Err(ConfigError::new(
            "cluster_specifier_plugin",
            "field 'cluster_specifier_plugin' is not supported by Sluice",
        )
        .into()),
        Some(ClusterSpecifierConfig::InlineClusterSpecifierPlugin(_)) => Err(ConfigError::new(
            "inline_cluster_specifier_plugin",
            "field 'inline_cluster_specifier_plugin' is not supported by Sluice",
        )
        .into()),
    }
}

fn compile_weighted(config: &WeightedCluster) -> Result<ClusterSpecifier, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    if config.clusters.is_empty() {
        errors.push(ConfigError::new(
            "clusters",
            "must have at least one cluster",
        ));
    }
    let random_header = match &config.random_value_specifier {
        None => None,
        Some(RandomValueSpecifier::HeaderName(name)) => match cluster_header(name, "header_name") {
            Ok(header) => Some(header),
            Err(error) => {
                errors.push(error);
                None
            }
        },
        Some(RandomValueSpecifier::UseHashPolicy(_)) => {
            errors.push(ConfigError::new(
                "use_hash_policy",
                "field 'use_hash_policy' is not supported by Sluice",
            ));
            None
        }
    };
    let mut clusters = Vec::with_capacity(config.clusters.len());
    for (i, entry) in config.clusters.iter().enumerate() {
        match compile_weighted_entry(entry) {
            Ok(entry) => clusters.push(entry),
            Err(more) => errors.extend_under(&format!("clusters[{i}]"), more),
        }
    }
    let total: u64 = clusters.iter().map(|c| u64::from(c.weight)).sum();
    if errors.is_empty() && total == 0 {
        errors.push(ConfigError::new(
            "clusters",
            "the sum of the weights must be greater than 0",
        ));
    }
    // The deprecated `total_weight` is ignored, as Envoy 1.40 ignores it:
    // picks are made over the sum of the weights.
    errors.into_result(ClusterSpecifier::Weighted(WeightedClusters {
        clusters,
        total_weight: total,
        random_header,
    }))
}

fn compile_weighted_entry(config: &ClusterWeight) -> Result<WeightedClusterEntry, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let target = match (config.name.is_empty(), config.cluster_header.is_empty()) {
        (false, true) => Some(ClusterTarget::Named(config.name.clone())),
        (true, false) => match cluster_header(&config.cluster_header, "cluster_header") {
            Ok(header) => Some(ClusterTarget::Header(header)),
            Err(error) => {
                errors.push(error);
                None
            }
        },
        (true, true) => {
            errors.push(ConfigError::new(
                "name",
                "one of name or cluster_header is required",
            ));
            None
        }
        (false, false) => {
            errors.push(ConfigError::new(
                "name",
                "only one of name or cluster_header can be set",
            ));
            None
        }
    };
    for (field, set) in [
        ("metadata_match", config.metadata_match.is_some()),
        (
            "typed_per_filter_config",
            !config.typed_per_filter_config.is_empty(),
        ),
    ] {
        if set {
            errors.push(ConfigError::new(
                field,
                format!("field '{field}' is not supported by Sluice"),
            ));
        }
    }
    let request_headers = HeaderMutations::compile(
        &config.request_headers_to_add,
        "request_headers_to_add",
        &config.request_headers_to_remove,
        "request_headers_to_remove",
    )
    .unwrap_or_else(|more| {
        errors.extend_under("", more);
        HeaderMutations::default()
    });
    let response_headers = HeaderMutations::compile(
        &config.response_headers_to_add,
        "response_headers_to_add",
        &config.response_headers_to_remove,
        "response_headers_to_remove",
    )
    .unwrap_or_else(|more| {
        errors.extend_under("", more);
        HeaderMutations::default()
    });
    let host_rewrite_literal = match &config.host_rewrite_specifier {
        Some(cluster_weight::HostRewriteSpecifier::HostRewriteLiteral(host))
            if !host.is_empty() =>
        {
            Some(host.clone())
        }
        _ => None,
    };
    match target {
        Some(target) if errors.is_empty() => Ok(WeightedClusterEntry {
            target,
            weight: config.weight.as_ref().map_or(0, |w| w.value),
            request_headers,
            response_headers,
            host_rewrite_literal,
        }),
        _ => Err(errors),
    }
}

fn compile_path_rewrite(
    config: &RouteActionConfig,
    path: &PathMatch,
) -> Result<Option<PathRewrite>, ConfigError> {
    let configured = [
        !config.prefix_rewrite.is_empty(),
        config.regex_rewrite.is_some(),
        !config.path_rewrite.is_empty(),
        config.path_rewrite_policy.is_some(),
    ];
    if configured.iter().filter(|set| **set).count() > 1 {
        return Err(ConfigError::new(
            "",
            "specify only one of prefix_rewrite, regex_rewrite, path_rewrite or path_rewrite_policy",
        ));
    }
    if !config.path_rewrite.is_empty() {
        return Err(ConfigError::new(
            "path_rewrite",
            "field 'path_rewrite' is not supported by Sluice",
        ));
    }
    if config.path_rewrite_policy.is_some() {
        return Err(ConfigError::new(
            "path_rewrite_policy",
            "field 'path_rewrite_policy' is not supported by Sluice",
        ));
    }
    PathRewrite::compile(&config.prefix_rewrite, config.regex_rewrite.as_ref(), path)
}

fn compile_host_rewrite(config: Option<&HostRewriteSpecifier>) -> Result<HostRewrite, ConfigError> {
    Ok(match config {
        None => HostRewrite::None,
        Some(HostRewriteSpecifier::HostRewriteLiteral(host)) if host.is_empty() => {
            HostRewrite::None
        }
        Some(HostRewriteSpecifier::HostRewriteLiteral(host)) => {
            if host.contains(['\0', '\r', '\n']) {
                return Err(ConfigError::new(
                    "host_rewrite_literal",
                    "must not contain NUL, CR or LF",
                ));
            }
            HostRewrite::Literal(host.clone())
        }
        Some(HostRewriteSpecifier::AutoHostRewrite(flag)) if flag.value => HostRewrite::Auto,
        Some(HostRewriteSpecifier::AutoHostRewrite(_)) => HostRewrite::None,
        Some(HostRewriteSpecifier::HostRewriteHeader(name)) => {
            HostRewrite::Header(cluster_header(name, "host_rewrite_header")?)
        }
        Some(HostRewriteSpecifier::HostRewritePathRegex(sub)) => HostRewrite::PathRegex(
            RegexSubstitution::compile(sub).map_err(|e| e.under("host_rewrite_path_regex"))?,
        ),
        Some(HostRewriteSpecifier::HostRewrite(_)) => {
            return Err(ConfigError::new(
                "host_rewrite",
                "field 'host_rewrite' is not supported by Sluice",
            ))
        }
    })
}
