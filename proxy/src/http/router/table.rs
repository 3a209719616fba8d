//! The compiled route table: virtual hosts, their routes in order, and the
//! header mutations of the three configuration levels, with Envoy's
//! precedence between them.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::route::v3::{
    route::Action, virtual_host::TlsRequirementType, Route as RouteConfig, RouteConfiguration,
    VirtualHost as VirtualHostConfig,
};
use http::request::Parts;
use http::{HeaderMap, HeaderName};

use super::domains::DomainIndex;
use super::forward::{ClusterSpecifier, ForwardAction, WeightedClusterEntry};
use super::header_mutation::HeaderMutations;
use super::redirect::{DirectResponse, RedirectAction, DEFAULT_MAX_DIRECT_RESPONSE_BODY_BYTES};
use super::request;
use super::route_index::{RouteIndex, INDEX_MIN_ROUTES};
use super::route_match::RouteMatcher;
use crate::config::{ConfigError, ConfigErrors};
use crate::stream_info::StreamInfo;

/// What a matched route does.
#[derive(Debug, Clone)]
pub enum RouteAction {
    Forward(ForwardAction),
    Redirect(RedirectAction),
    DirectResponse(DirectResponse),
}

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    matcher: RouteMatcher,
    pub action: RouteAction,
    pub request_headers: HeaderMutations,
    pub response_headers: HeaderMutations,
}

/// One compiled virtual host.
#[derive(Debug, Clone)]
pub struct VirtualHost {
    pub name: String,
    pub routes: Vec<Route>,
    /// Candidate routes by literal path prefix; `None` for short route lists,
    /// which are scanned in order.
    route_index: Option<RouteIndex>,
    /// `require_tls`: requests that do not meet it get [`Self::tls_redirect`].
    pub require_tls: TlsRequirementType,
    /// The route [`RouteTable::find`] returns when `require_tls` is not met:
    /// a 301 to the same URL over `https`.
    pub tls_redirect: Option<Route>,
    pub request_headers: HeaderMutations,
    pub response_headers: HeaderMutations,
}

/// The result of a successful lookup.
#[derive(Debug, Clone, Copy)]
pub struct RouteMatch<'a> {
    pub virtual_host: &'a VirtualHost,
    pub route: &'a Route,
}

/// A compiled, immutable `RouteConfiguration`.
#[derive(Debug, Clone)]
pub struct RouteTable {
    name: String,
    virtual_hosts: Vec<VirtualHost>,
    domains: DomainIndex,
    /// `vhost_header`: select virtual hosts by this header instead of Host.
    vhost_header: Option<HeaderName>,
    ignore_port_in_host_matching: bool,
    ignore_path_parameters_in_path_matching: bool,
    /// Some route has a `runtime_fraction`, so [`Self::find`] draws a random value.
    uses_random: bool,
    most_specific_header_mutations_wins: bool,
    validate_clusters: Option<bool>,
    request_headers: HeaderMutations,
    response_headers: HeaderMutations,
    cluster_names: Vec<String>,
    /// Some header mutation reads request headers (`%REQ(...)%`).
    reads_request_headers: bool,
}

impl RouteTable {
    /// Compiles `config`; every error is reported, with paths relative to
    /// the `RouteConfiguration`.
    pub fn compile(config: &RouteConfiguration) -> Result<RouteTable, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        for (field, set) in [
            ("vhds", config.vhds.is_some()),
            (
                "cluster_specifier_plugins",
                !config.cluster_specifier_plugins.is_empty(),
            ),
        ] {
            if set {
                errors.push(ConfigError::new(
                    field,
                    format!("field '{field}' is not supported by Sluice"),
                ));
            }
        }
        let vhost_header = if config.vhost_header.is_empty() {
            None
        } else {
            match HeaderName::from_bytes(config.vhost_header.as_bytes()) {
                Ok(name) => Some(name),
                Err(_) => {
                    errors.push(ConfigError::new(
                        "vhost_header",
                        format!("invalid header name \"{}\"", config.vhost_header),
                    ));
                    None
                }
            }
        };
        let max_body = config
            .max_direct_response_body_size_bytes
            .as_ref()
            .map_or(DEFAULT_MAX_DIRECT_RESPONSE_BODY_BYTES, |v| v.value);
        let (request_headers, response_headers) = compile_mutations(
            &mut errors,
            "",
            (
                &config.request_headers_to_add,
                &config.request_headers_to_remove,
            ),
            (
                &config.response_headers_to_add,
                &config.response_headers_to_remove,
            ),
        );

        let mut virtual_hosts = Vec::with_capacity(config.virtual_hosts.len());
        let mut domains = DomainIndex::default();
        for (i, vhost) in config.virtual_hosts.iter().enumerate() {
            let path = format!("virtual_hosts[{i}]");
            if vhost.domains.is_empty() {
                errors.push(ConfigError::new(
                    format!("{path}.domains"),
                    "must have at least one domain",
                ));
            }
            for (j, domain) in vhost.domains.iter().enumerate() {
                let owner = |other: usize| format!("\"{}\"", config.virtual_hosts[other].name);
                if let Err(error) = domains.insert(domain, i, owner) {
                    errors.push(error.under(&format!("{path}.domains[{j}]")));
                }
            }
            match compile_virtual_host(vhost, max_body) {
                Ok(compiled) => virtual_hosts.push(compiled),
                Err(more) => errors.extend_under(&path, more),
            }
        }

        let mut cluster_names = BTreeSet::new();
        for route in virtual_hosts.iter().flat_map(|v| &v.routes) {
            if let RouteAction::Forward(forward) = &route.action {
                cluster_names.extend(forward.static_cluster_names().map(str::to_string));
            }
        }
        let uses_random = virtual_hosts
            .iter()
            .flat_map(|v| &v.routes)
            .any(|route| route.matcher.uses_random());
        let mut levels: Vec<&HeaderMutations> = vec![&request_headers, &response_headers];
        for vhost in &virtual_hosts {
            levels.extend([&vhost.request_headers, &vhost.response_headers]);
            for route in &vhost.routes {
                levels.extend([&route.request_headers, &route.response_headers]);
                if let RouteAction::Forward(forward) = &route.action {
                    if let ClusterSpecifier::Weighted(weighted) = &forward.cluster {
                        for entry in &weighted.clusters {
                            levels.extend([&entry.request_headers, &entry.response_headers]);
                        }
                    }
                }
            }
        }
        let reads_request_headers = levels.iter().any(|l| l.reads_request_headers());
        errors.into_result(RouteTable {
            name: config.name.clone(),
            uses_random,
            virtual_hosts,
            domains,
            vhost_header,
            ignore_port_in_host_matching: config.ignore_port_in_host_matching,
            ignore_path_parameters_in_path_matching: config.ignore_path_parameters_in_path_matching,
            most_specific_header_mutations_wins: config.most_specific_header_mutations_wins,
            validate_clusters: config.validate_clusters.as_ref().map(|v| v.value),
            request_headers,
            response_headers,
            cluster_names: cluster_names.into_iter().collect(),
            reads_request_headers,
        })
    }

    /// True when a header mutation reads request headers, so each stream
    /// must keep them in its `StreamInfo`.
    pub fn reads_request_headers(&self) -> bool {
        self.reads_request_headers
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every statically named cluster, sorted and without duplicates.
    pub fn cluster_names(&self) -> impl Iterator<Item = &str> {
        self.cluster_names.iter().map(String::as_str)
    }

    /// `validate_clusters` as configured (Envoy defaults it to true for a
    /// static route configuration and false for RDS).
    pub fn validate_clusters(&self) -> Option<bool> {
        self.validate_clusters
    }

    pub fn virtual_hosts(&self) -> &[VirtualHost] {
        &self.virtual_hosts
    }

    /// The virtual host for the request's Host (or `vhost_header`).
    pub fn find_virtual_host(&self, req: &Parts) -> Option<&VirtualHost> {
        let host = match &self.vhost_header {
            Some(header) => request::first_header(req, header),
            None => request::authority(req),
        };
        let index = match host {
            Some(host) if self.ignore_port_in_host_matching => {
                self.domains.find(request::strip_port(host))
            }
            Some(host) => self.domains.find(host),
            // Without a Host only a table of nothing but `*` can answer.
            None => self.domains.find_default_only(),
        }?;
        Some(&self.virtual_hosts[index])
    }

    /// The virtual host, then its first route that matches the request.
    /// A route with `runtime_fraction` is decided by a fresh random draw.
    pub fn find(&self, req: &Parts) -> Option<RouteMatch<'_>> {
        let random = if self.uses_random { rand::random() } else { 0 };
        self.find_with_random(req, random)
    }

    /// [`Self::find`] with the stream's random value (Envoy uses the same
    /// value for `runtime_fraction` and the weighted cluster pick).
    pub fn find_with_random(&self, req: &Parts, random: u64) -> Option<RouteMatch<'_>> {
        let virtual_host = self.find_virtual_host(req)?;
        if let Some(route) = &virtual_host.tls_redirect {
            if needs_tls_redirect(virtual_host.require_tls, req) {
                return Some(RouteMatch {
                    virtual_host,
                    route,
                });
            }
        }
        let mut path = request::path_only(req);
        if self.ignore_path_parameters_in_path_matching {
            path = path.split(';').next().unwrap_or(path);
        }
        let route = virtual_host.first_match(req, path, random)?;
        Some(RouteMatch {
            virtual_host,
            route,
        })
    }

    /// Applies request header mutations: the weighted cluster's first, then
    /// route, virtual host and route configuration — so the outermost level
    /// wins an overwrite — or, with `most_specific_header_mutations_wins`,
    /// route configuration, virtual host, route.
    pub fn apply_request_headers(
        &self,
        m: &RouteMatch<'_>,
        weighted: Option<&WeightedClusterEntry>,
        headers: &mut HeaderMap,
        info: &StreamInfo,
    ) {
        let weighted = weighted.map(|cluster| &cluster.request_headers);
        let levels = self.levels(
            &m.route.request_headers,
            &m.virtual_host.request_headers,
            &self.request_headers,
        );
        apply_levels(weighted, levels, headers, info);
    }

    /// The response-side counterpart of [`Self::apply_request_headers`].
    pub fn apply_response_headers(
        &self,
        m: &RouteMatch<'_>,
        weighted: Option<&WeightedClusterEntry>,
        headers: &mut HeaderMap,
        info: &StreamInfo,
    ) {
        let weighted = weighted.map(|cluster| &cluster.response_headers);
        let levels = self.levels(
            &m.route.response_headers,
            &m.virtual_host.response_headers,
            &self.response_headers,
        );
        apply_levels(weighted, levels, headers, info);
    }

    fn levels<'a>(
        &self,
        route: &'a HeaderMutations,
        vhost: &'a HeaderMutations,
        global: &'a HeaderMutations,
    ) -> [&'a HeaderMutations; 3] {
        if self.most_specific_header_mutations_wins {
            [global, vhost, route]
        } else {
            [route, vhost, global]
        }
    }
}

/// Envoy decides by `x-forwarded-proto`, which the connection manager sets
/// from the connection before routing; a request without it counts as
/// plain HTTP unless its URI says `https`. `EXTERNAL_ONLY` exempts requests
/// marked `x-envoy-internal: true`.
fn needs_tls_redirect(requirement: TlsRequirementType, req: &Parts) -> bool {
    let proto = req
        .headers
        .get("x-forwarded-proto")
        .map(|v| v.as_bytes())
        .or_else(|| req.uri.scheme_str().map(str::as_bytes));
    let secure = proto.is_some_and(|p| p.eq_ignore_ascii_case(b"https"));
    match requirement {
        TlsRequirementType::None => false,
        TlsRequirementType::All => !secure,
        TlsRequirementType::ExternalOnly => {
            let internal = req
                .headers
                .get("x-envoy-internal")
                .is_some_and(|v| v.as_bytes() == b"true");
            !secure && !internal
        }
    }
}

impl VirtualHost {
    /// The first route, in configuration order, that matches the request
    /// (`path` without query, as [`RouteMatcher::matches`] takes it).
    fn first_match(&self, req: &Parts, path: &str, random: u64) -> Option<&Route> {
        let matches = |route: &Route| route.matcher.matches(req, path, random);
        match &self.route_index {
            Some(index) => index
                .first_match(path, |i| matches(&self.routes[i]))
                .map(|i| &self.routes[i]),
            None => self.routes.iter().find(|route| matches(route)),
        }
    }

    /// [`Self::first_match`] by trying every route in order, without the
    /// index: the reference the index must agree with.
    #[cfg(test)]
    pub(super) fn first_match_linear(
        &self,
        req: &Parts,
        path: &str,
        random: u64,
    ) -> Option<&Route> {
        self.routes
            .iter()
            .find(|route| route.matcher.matches(req, path, random))
    }

    /// True when lookups go through the prefix index.
    #[cfg(test)]
    pub(super) fn is_indexed(&self) -> bool {
        self.route_index.is_some()
    }
}

impl Route {
    /// For a redirect route, the `Location` to answer with; `scheme` is the
    /// request's scheme (`https` on a TLS connection).
    pub fn redirect_location(&self, req: &Parts, scheme: &str) -> Option<String> {
        match &self.action {
            RouteAction::Redirect(redirect) => Some(redirect.location(req, scheme)),
            _ => None,
        }
    }
}

/// The weighted cluster's mutations first, then the three levels in order.
fn apply_levels(
    weighted: Option<&HeaderMutations>,
    levels: [&HeaderMutations; 3],
    headers: &mut HeaderMap,
    info: &StreamInfo,
) {
    for mutations in weighted.into_iter().chain(levels) {
        mutations.apply(headers, info);
    }
}

fn compile_mutations(
    errors: &mut ConfigErrors,
    path: &str,
    request: (
        &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption],
        &[String],
    ),
    response: (
        &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption],
        &[String],
    ),
) -> (HeaderMutations, HeaderMutations) {
    let mut compile = |(add, remove), add_field, remove_field| {
        HeaderMutations::compile(add, add_field, remove, remove_field).unwrap_or_else(|more| {
            errors.extend_under(path, more);
            HeaderMutations::default()
        })
    };
    let request = compile(
        request,
        "request_headers_to_add",
        "request_headers_to_remove",
    );
    let response = compile(
        response,
        "response_headers_to_add",
        "response_headers_to_remove",
    );
    (request, response)
}

/// Error paths are relative to the `VirtualHost`.
fn compile_virtual_host(
    config: &VirtualHostConfig,
    max_body: u32,
) -> Result<VirtualHost, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    if config.name.is_empty() {
        errors.push(ConfigError::new("name", "must not be empty"));
    }
    if config.matcher.is_some() {
        errors.push(ConfigError::new(
            "matcher",
            "field 'matcher' is not supported by Sluice",
        ));
    }
    let require_tls = TlsRequirementType::try_from(config.require_tls).unwrap_or_else(|_| {
        errors.push(ConfigError::new(
            "require_tls",
            format!("unknown value {}", config.require_tls),
        ));
        TlsRequirementType::None
    });
    let (request_headers, response_headers) = compile_mutations(
        &mut errors,
        "",
        (
            &config.request_headers_to_add,
            &config.request_headers_to_remove,
        ),
        (
            &config.response_headers_to_add,
            &config.response_headers_to_remove,
        ),
    );
    let mut routes = Vec::with_capacity(config.routes.len());
    for (i, route) in config.routes.iter().enumerate() {
        match compile_route(route, max_body) {
            Ok(route) => routes.push(route),
            Err(more) => errors.extend_under(&format!("routes[{i}]"), more),
        }
    }
    let tls_redirect = (require_tls != TlsRequirementType::None).then(|| Route {
        name: String::new(),
        matcher: RouteMatcher::match_all(),
        action: RouteAction::Redirect(RedirectAction::require_tls()),
        request_headers: HeaderMutations::default(),
        response_headers: HeaderMutations::default(),
    });
    let route_index = (routes.len() >= INDEX_MIN_ROUTES)
        .then(|| RouteIndex::build(routes.iter().map(|route| &route.matcher.path)));
    errors.into_result(VirtualHost {
        name: config.name.clone(),
        routes,
        route_index,
        require_tls,
        tls_redirect,
        request_headers,
        response_headers,
    })
}

/// Error paths are relative to the `Route`.
fn compile_route(config: &RouteConfig, max_body: u32) -> Result<Route, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let matcher = match &config.r#match {
        None => {
            errors.push(ConfigError::new("match", "is required"));
            None
        }
        Some(m) => RouteMatcher::compile(m)
            .map_err(|more| errors.extend_under("match", more))
            .ok(),
    };
    let (request_headers, response_headers) = compile_mutations(
        &mut errors,
        "",
        (
            &config.request_headers_to_add,
            &config.request_headers_to_remove,
        ),
        (
            &config.response_headers_to_add,
            &config.response_headers_to_remove,
        ),
    );
    let action = match (&config.action, &matcher) {
        // Without a valid matcher the action's rewrite cannot be compiled.
        (_, None) => None,
        (None, _) => {
            errors.push(ConfigError::new(
                "",
                "one of route, redirect or direct_response is required",
            ));
            None
        }
        (Some(action), Some(matcher)) => compile_action(action, matcher, max_body)
            .map_err(|more| errors.extend_under("", more))
            .ok(),
    };
    match (matcher, action) {
        (Some(matcher), Some(action)) if errors.is_empty() => Ok(Route {
            name: config.name.clone(),
            matcher,
            action,
            request_headers,
            response_headers,
        }),
        _ => Err(errors),
    }
}

fn compile_action(
    action: &Action,
    matcher: &RouteMatcher,
    max_body: u32,
) -> Result<RouteAction, ConfigErrors> {
    let under = |field: &str, more: ConfigErrors| {
        let mut errors = ConfigErrors::default();
        errors.extend_under(field, more);
        errors
    };
    match action {
        Action::Route(route) => ForwardAction::compile(route, &matcher.path)
            .map(RouteAction::Forward)
            .map_err(|more| under("route", more)),
        Action::Redirect(redirect) => RedirectAction::compile(redirect, &matcher.path)
            .map(RouteAction::Redirect)
            .map_err(|more| under("redirect", more)),
        Action::DirectResponse(direct) => DirectResponse::compile(direct, max_body)
            .map(RouteAction::DirectResponse)
            .map_err(|more| under("direct_response", more)),
        Action::FilterAction(_) => Err(ConfigError::new(
            "filter_action",
            "field 'filter_action' is not supported by Sluice",
        )
        .into()),
        Action::NonForwardingAction(_) => Err(ConfigError::new(
            "non_forwarding_action",
            "field 'non_forwarding_action' is not supported by Sluice",
        )
        .into()),
    }
}
