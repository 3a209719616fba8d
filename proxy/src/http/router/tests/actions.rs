//! Cluster choice, timeouts, rewrites, hashing, redirect and direct responses.

use super::*;
use envoy_types::pb::envoy::config::route::v3::weighted_cluster::cluster_weight::HostRewriteSpecifier as WeightHostRewrite;

#[test]
fn weighted_clusters_pick_by_weight() {
    let t = table(vec![vhost(
        "v",
        &["*"],
        vec![route(
            "/",
            weighted(&[("a", 10), ("b", 0), ("c", 30)], None),
        )],
    )]);
    let r = at("h", "/");
    let m = t.find(&r).unwrap();
    let action = forward_of(&m);
    // Deterministic: random % 40 in [0,10) → a, [10,40) → c; b has no share.
    assert_eq!(action.cluster_for(&r, 9).name, Some("a"));
    assert_eq!(action.cluster_for(&r, 10).name, Some("c"));
    assert_eq!(action.cluster_for(&r, 49).name, Some("a"));
    assert!(action.cluster_for(&r, 10).weighted.is_some());
    // Distribution over random draws stays near 1:3.
    let draws = 20_000;
    let a = (0..draws)
        .filter(|_| action.cluster_for(&r, rand::random::<u64>()).name == Some("a"))
        .count();
    assert!((4_000..6_000).contains(&a), "a picked {a} of {draws}");
    assert_eq!(t.cluster_names().collect::<Vec<_>>(), ["a", "b", "c"]);
}

#[test]
fn weighted_random_value_can_come_from_a_header() {
    let mut action = weighted(&[("a", 1), ("b", 1)], None);
    if let Some(Spec::WeightedClusters(w)) = &mut action.cluster_specifier {
        w.random_value_specifier = Some(RandomValueSpecifier::HeaderName("x-rand".into()));
    }
    let t = table(vec![vhost("v", &["*"], vec![route("/", action)])]);
    let r = req("/", &[("host", "h"), ("x-rand", "1")]);
    let m = t.find(&r).unwrap();
    assert_eq!(forward_of(&m).cluster_for(&r, 0).name, Some("b"));
}

#[test]
fn bad_weights_are_rejected() {
    let error = |action| {
        RouteTable::compile(&RouteConfiguration {
            virtual_hosts: vec![vhost("v", &["*"], vec![route("/", action)])],
            ..Default::default()
        })
        .unwrap_err()
        .0[0]
            .clone()
    };
    let zero = error(weighted(&[("a", 0)], None));
    assert_eq!(
        zero.path,
        "virtual_hosts[0].routes[0].route.weighted_clusters.clusters"
    );
    // The deprecated total_weight is ignored, as in Envoy 1.40: picks use
    // the sum of the weights (observed: random 75 → a, 95 → b).
    let t = table(vec![vhost(
        "v",
        &["*"],
        vec![route("/", weighted(&[("a", 30), ("b", 30)], Some(100)))],
    )]);
    let r = at("h", "/");
    let m = t.find(&r).unwrap();
    assert_eq!(forward_of(&m).cluster_for(&r, 75).name, Some("a"));
    assert_eq!(forward_of(&m).cluster_for(&r, 95).name, Some("b"));
    let empty = error(weighted(&[], None));
    assert_eq!(
        empty.path,
        "virtual_hosts[0].routes[0].route.weighted_clusters.clusters"
    );
}

#[test]
fn cluster_header_reads_the_cluster_per_request() {
    let action = RouteActionConfig {
        cluster_specifier: Some(Spec::ClusterHeader("x-cluster".into())),
        cluster_not_found_response_code: 1,
        ..Default::default()
    };
    let t = table(vec![vhost("v", &["*"], vec![route("/", action)])]);
    let with = req("/", &[("host", "h"), ("x-cluster", "blue")]);
    let m = t.find(&with).unwrap();
    assert_eq!(forward_of(&m).cluster_for(&with, 0).name, Some("blue"));
    let without = at("h", "/");
    assert_eq!(forward_of(&m).cluster_for(&without, 0).name, None);
    assert_eq!(
        forward_of(&m).cluster_not_found_response_code,
        http::StatusCode::NOT_FOUND
    );
    assert_eq!(t.cluster_names().count(), 0);
}

#[test]
fn defaults_timeouts_and_not_found_code() {
    let t = table(vec![vhost(
        "v",
        &["*"],
        vec![
            route("/default", forward("a")),
            route(
                "/custom",
                RouteActionConfig {
                    timeout: Some(ProtoDuration {
                        seconds: 2,
                        nanos: 0,
                    }),
                    idle_timeout: Some(ProtoDuration {
                        seconds: 0,
                        nanos: 0,
                    }),
                    ..forward("a")
                },
            ),
            route(
                "/off",
                RouteActionConfig {
                    timeout: Some(ProtoDuration {
                        seconds: 0,
                        nanos: 0,
                    }),
                    ..forward("a")
                },
            ),
        ],
    )]);
    let action = |path: &str| forward_of(&t.find(&at("h", path)).unwrap()).clone();
    let default = action("/default");
    assert_eq!(default.timeout, Some(Duration::from_secs(15)));
    assert_eq!(default.idle_timeout, None);
    assert_eq!(
        default.cluster_not_found_response_code,
        http::StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(action("/custom").timeout, Some(Duration::from_secs(2)));
    assert_eq!(action("/custom").idle_timeout, Some(Duration::ZERO));
    assert_eq!(action("/off").timeout, None);
}

#[test]
fn rewrites_apply_to_the_matched_part() {
    let regex = RegexMatchAndSubstitute {
        pattern: Some(RegexMatcher {
            regex: "^/regex/(\\w+)".into(),
            ..Default::default()
        }),
        substitution: "/r/\\1".into(),
    };
    let t = table(vec![vhost(
        "v",
        &["*"],
        vec![
            route(
                "/prefix/",
                RouteActionConfig {
                    prefix_rewrite: "/".into(),
                    ..forward("a")
                },
            ),
            route(
                "/regex/",
                RouteActionConfig {
                    regex_rewrite: Some(regex),
                    ..forward("a")
                },
            ),
            route("/plain", forward("a")),
        ],
    )]);
    let rewrite = |pq: &str| forward_of(&t.find(&at("h", pq)).unwrap()).rewrite_path(pq);
    assert_eq!(rewrite("/prefix/x/y?q=1").as_deref(), Some("/x/y?q=1"));
    assert_eq!(rewrite("/regex/abc/def?q").as_deref(), Some("/r/abc/def?q"));
    assert_eq!(rewrite("/plain/x"), None);
}

#[test]
fn host_rewrites_each_kind() {
    let with_host = |spec| RouteActionConfig {
        host_rewrite_specifier: Some(spec),
        ..forward("a")
    };
    let t = table(vec![vhost(
        "v",
        &["*"],
        vec![
            route(
                "/literal",
                with_host(HostRewriteSpecifier::HostRewriteLiteral(
                    "up.internal".into(),
                )),
            ),
            route(
                "/auto",
                with_host(HostRewriteSpecifier::AutoHostRewrite(BoolValue {
                    value: true,
                })),
            ),
            route(
                "/header",
                with_host(HostRewriteSpecifier::HostRewriteHeader("x-host".into())),
            ),
            route(
                "/regex",
                with_host(HostRewriteSpecifier::HostRewritePathRegex(
                    RegexMatchAndSubstitute {
                        pattern: Some(RegexMatcher {
                            regex: "^/regex/([^/]+).*$".into(),
                            ..Default::default()
                        }),
                        substitution: "\\1.svc".into(),
                    },
                )),
            ),
        ],
    )]);
    let host = |path: &str, headers: &[(&str, &str)]| {
        let mut all = vec![("host", "orig")];
        all.extend_from_slice(headers);
        let r = req(path, &all);
        let m = t.find(&r).unwrap();
        let action = forward_of(&m);
        (
            action.rewritten_host(&r, None).map(|h| h.into_owned()),
            action.auto_host_rewrite(),
        )
    };
    assert_eq!(host("/literal", &[]), (Some("up.internal".into()), false));
    assert_eq!(host("/auto", &[]), (None, true));
    assert_eq!(
        host("/header", &[("x-host", "from-header")]),
        (Some("from-header".into()), false)
    );
    assert_eq!(host("/header", &[]), (None, false));
    assert_eq!(
        host("/regex/payments/x?q", &[]),
        (Some("payments.svc".into()), false)
    );
}

#[test]
fn route_hash_policy_is_reachable_from_the_match() {
    let action = RouteActionConfig {
        hash_policy: vec![HashPolicyConfig {
            terminal: false,
            policy_specifier: Some(PolicySpecifier::Header(HashHeader {
                header_name: "x-user".into(),
                regex_rewrite: None,
            })),
        }],
        ..forward("a")
    };
    let t = table(vec![vhost("v", &["*"], vec![route("/", action)])]);
    let hash = |user: &str| {
        let r = req("/", &[("host", "h"), ("x-user", user)]);
        forward_of(&t.find(&r).unwrap()).compute_hash(&r, None)
    };
    assert_eq!(hash("alice"), hash("alice"));
    assert_ne!(hash("alice"), hash("bob"));
    assert_eq!(hash("alice"), Some(xxhash_rust::xxh64::xxh64(b"alice", 0)));
}

#[test]
fn redirect_and_direct_response_routes_are_found() {
    use envoy_types::pb::envoy::config::core::v3::{data_source::Specifier, DataSource};
    use envoy_types::pb::envoy::config::route::v3::{
        DirectResponseAction, RedirectAction as RedirectConfig,
    };
    let mut redirect = route("/old", forward("unused"));
    redirect.action = Some(Action::Redirect(RedirectConfig {
        path_rewrite_specifier: Some(
            envoy_types::pb::envoy::config::route::v3::redirect_action::PathRewriteSpecifier::PrefixRewrite(
                "/new".into(),
            ),
        ),
        ..Default::default()
    }));
    let mut direct = route("/health", forward("unused"));
    direct.action = Some(Action::DirectResponse(DirectResponseAction {
        status: 200,
        body: Some(DataSource {
            specifier: Some(Specifier::InlineString("ok".into())),
            ..Default::default()
        }),
        ..Default::default()
    }));
    let t = table(vec![vhost("v", &["*"], vec![redirect, direct])]);
    let r = at("h.com", "/old/page?x=1");
    let m = t.find(&r).unwrap();
    assert_eq!(
        m.route.redirect_location(&r, "http").as_deref(),
        Some("http://h.com/new/page?x=1")
    );
    let m = t.find(&at("h", "/health")).unwrap();
    assert!(
        matches!(&m.route.action, RouteAction::DirectResponse(d) if d.body.as_deref() == Some(&b"ok"[..]))
    );
    assert_eq!(t.cluster_names().count(), 0);
}

#[test]
fn connection_manager_flow_borrows_cleanly() {
    // The order the connection manager follows: route, cluster, header
    // mutations (mutating the request), host rewrite, path rewrite.
    let mut action = weighted(&[("blue", 1)], None);
    if let Some(Spec::WeightedClusters(w)) = &mut action.cluster_specifier {
        w.clusters[0].host_rewrite_specifier = Some(WeightHostRewrite::HostRewriteLiteral(
            "blue.internal".into(),
        ));
    }
    let mut r = route(
        "/api/",
        RouteActionConfig {
            prefix_rewrite: "/".into(),
            ..action
        },
    );
    r.request_headers_to_add = vec![HeaderValueOption {
        header: Some(HeaderValue {
            key: "x-routed".into(),
            value: "yes".into(),
            raw_value: vec![],
        }),
        ..Default::default()
    }];
    let t = table(vec![vhost("v", &["*"], vec![r])]);
    let mut parts = at("front.example", "/api/items?page=2");
    let m = t.find(&parts).unwrap();
    let forward = forward_of(&m);
    let choice = forward.cluster_for(&parts, 7);
    let cluster = choice.name.map(str::to_string);
    let weighted = choice.weighted;
    t.apply_request_headers(
        &m,
        weighted,
        &mut parts.headers,
        &StreamInfo::new(None, None),
    );
    let host = forward
        .rewritten_host(&parts, weighted)
        .map(|h| h.into_owned());
    let path = forward.rewrite_path(parts.uri.path_and_query().unwrap().as_str());
    assert_eq!(cluster.as_deref(), Some("blue"));
    assert_eq!(parts.headers["x-routed"], "yes");
    assert_eq!(host.as_deref(), Some("blue.internal"));
    assert_eq!(path.as_deref(), Some("/items?page=2"));
}
