//! The route prefix index keeps Envoy's first-match order: tricky orders of
//! broad and narrow matchers, case-insensitive prefixes, regex alternation,
//! regexes without a literal prefix, header-only matches, and a seeded random
//! comparison against the plain in-order scan.

use super::*;
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, HeaderMatcher,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn matched(path: PathSpecifier, case_sensitive: bool, cluster: &str) -> RouteConfig {
    RouteConfig {
        name: cluster.into(),
        r#match: Some(RouteMatchConfig {
            path_specifier: Some(path),
            case_sensitive: Some(BoolValue {
                value: case_sensitive,
            }),
            ..Default::default()
        }),
        action: Some(Action::Route(forward(cluster))),
        ..Default::default()
    }
}

fn prefix(p: &str, cluster: &str) -> RouteConfig {
    matched(PathSpecifier::Prefix(p.into()), true, cluster)
}

fn exact(p: &str, cluster: &str) -> RouteConfig {
    matched(PathSpecifier::Path(p.into()), true, cluster)
}

fn regex(pattern: &str, cluster: &str) -> RouteConfig {
    let regex = RegexMatcher {
        regex: pattern.into(),
        ..Default::default()
    };
    matched(PathSpecifier::SafeRegex(regex), true, cluster)
}

fn with_header(mut route: RouteConfig, name: &str, value: &str) -> RouteConfig {
    let m = route.r#match.as_mut().unwrap();
    m.headers.push(HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
            match_pattern: Some(MatchPattern::Exact(value.into())),
            ..Default::default()
        })),
        ..Default::default()
    });
    route
}

/// `routes` then unrelated padding, so the virtual host is indexed.
fn indexed(mut routes: Vec<RouteConfig>) -> RouteTable {
    for i in 0..10 {
        routes.push(prefix(&format!("/padding{i}"), "padding"));
    }
    let t = table(vec![vhost("v", &["*"], routes)]);
    assert!(t.virtual_hosts()[0].is_indexed());
    t
}

/// The route name the table picks, checked against the in-order scan.
fn pick(t: &RouteTable, path: &str, headers: &[(&str, &str)]) -> Option<String> {
    let mut all = vec![("host", "h")];
    all.extend_from_slice(headers);
    let r = req(path, &all);
    let by_index = t.find(&r).map(|m| m.route.name.clone());
    let plain = path.split('?').next().unwrap();
    let linear = t.virtual_hosts()[0]
        .first_match_linear(&r, plain, 0)
        .map(|route| route.name.clone());
    assert_eq!(by_index, linear, "index and scan disagree on {path}");
    by_index
}

#[test]
fn an_earlier_broad_prefix_wins_over_a_later_exact_path() {
    let t = indexed(vec![prefix("/api", "broad"), exact("/api/users", "exact")]);
    assert_eq!(pick(&t, "/api/users", &[]).as_deref(), Some("broad"));
    let t = indexed(vec![exact("/api/users", "exact"), prefix("/api", "broad")]);
    assert_eq!(pick(&t, "/api/users", &[]).as_deref(), Some("exact"));
    assert_eq!(pick(&t, "/api/users/1", &[]).as_deref(), Some("broad"));
    assert_eq!(pick(&t, "/ap", &[]), None);
}

#[test]
fn case_insensitive_prefixes_match_any_case_in_order() {
    let t = indexed(vec![
        prefix("/Foo", "sensitive"),
        matched(PathSpecifier::Prefix("/FOO".into()), false, "insensitive"),
        prefix("/foo", "lower"),
    ]);
    assert_eq!(pick(&t, "/Foo/x", &[]).as_deref(), Some("sensitive"));
    assert_eq!(pick(&t, "/foo/x", &[]).as_deref(), Some("insensitive"));
    assert_eq!(pick(&t, "/fOO", &[]).as_deref(), Some("insensitive"));
    let t = indexed(vec![matched(
        PathSpecifier::Path("/Exact".into()),
        false,
        "exact",
    )]);
    assert_eq!(pick(&t, "/eXACT", &[]).as_deref(), Some("exact"));
    assert_eq!(pick(&t, "/eXACT/", &[]), None);
}

#[test]
fn regex_alternation_and_regexes_without_literal_prefix_keep_their_place() {
    let t = indexed(vec![
        regex("/(abc|xyz)/[0-9]+", "alternation"),
        prefix("/xyz", "xyz"),
        regex(".*\\.png", "png"),
        regex("(?i)/IMG/.*", "img"),
        prefix("/img", "img-prefix"),
    ]);
    assert_eq!(pick(&t, "/xyz/12", &[]).as_deref(), Some("alternation"));
    assert_eq!(pick(&t, "/abc/12", &[]).as_deref(), Some("alternation"));
    assert_eq!(pick(&t, "/xyz/ab", &[]).as_deref(), Some("xyz"));
    assert_eq!(pick(&t, "/xyz/a.png", &[]).as_deref(), Some("xyz"));
    assert_eq!(pick(&t, "/img/a.png", &[]).as_deref(), Some("png"));
    assert_eq!(pick(&t, "/Img/a.gif", &[]).as_deref(), Some("img"));
    assert_eq!(pick(&t, "/img", &[]).as_deref(), Some("img-prefix"));
    assert_eq!(pick(&t, "/abc/12?q=1", &[]).as_deref(), Some("alternation"));
}

#[test]
fn header_only_matches_are_tried_in_order() {
    let t = indexed(vec![
        with_header(prefix("/", "header"), "x-a", "1"),
        exact("/p", "exact"),
        with_header(prefix("/p", "later-header"), "x-b", "1"),
        prefix("/", "catch-all"),
    ]);
    assert_eq!(pick(&t, "/p", &[("x-a", "1")]).as_deref(), Some("header"));
    assert_eq!(pick(&t, "/p", &[]).as_deref(), Some("exact"));
    assert_eq!(
        pick(&t, "/pq", &[("x-b", "1")]).as_deref(),
        Some("later-header")
    );
    assert_eq!(pick(&t, "/pq", &[]).as_deref(), Some("catch-all"));
    assert_eq!(pick(&t, "/zzz", &[("x-a", "1")]).as_deref(), Some("header"));
}

#[test]
fn the_bench_shape_matches_only_its_route() {
    let mut routes: Vec<RouteConfig> = (0..200)
        .map(|i| {
            let r = regex(
                &format!("/api/v1/service{i}/[a-z]+/[0-9]+"),
                &format!("r{i}"),
            );
            with_header(r, "x-tenant", &format!("tenant-{i}"))
        })
        .collect();
    routes.push(prefix("/", "catch-all"));
    let t = indexed(routes);
    let tenant = [("x-tenant", "tenant-197")];
    assert_eq!(
        pick(&t, "/api/v1/service197/items/42", &tenant).as_deref(),
        Some("r197")
    );
    assert_eq!(
        pick(&t, "/api/v1/service19/items/42", &tenant).as_deref(),
        Some("catch-all")
    );
}

#[test]
fn random_tables_agree_with_the_in_order_scan() {
    const WORDS: [&str; 6] = ["a", "b", "A", "ab", "x", ""];
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let segment = |rng: &mut StdRng| WORDS[rng.random_range(0..WORDS.len())];
    let path = |rng: &mut StdRng| {
        let n = rng.random_range(0..4);
        (0..n)
            .map(|_| format!("/{}", segment(rng)))
            .collect::<String>()
    };
    for _ in 0..200 {
        let mut routes = Vec::new();
        for i in 0..rng.random_range(1..16) {
            let p = path(&mut rng);
            let name = format!("r{i}");
            let mut route = match rng.random_range(0..5) {
                0 => matched(PathSpecifier::Prefix(p), rng.random(), &name),
                1 => matched(PathSpecifier::Path(p.clone() + "/"), rng.random(), &name),
                2 => regex(&format!("{p}/(a|x)[a-b]*"), &name),
                3 => regex(&format!("(?i){p}.*"), &name),
                _ => regex(&format!(".*{p}"), &name),
            };
            if rng.random_ratio(1, 4) {
                route = with_header(route, "x-h", "1");
            }
            routes.push(route);
        }
        let t = indexed(routes);
        for _ in 0..20 {
            let p = path(&mut rng) + "/";
            let headers: &[(&str, &str)] = if rng.random() { &[("x-h", "1")] } else { &[] };
            pick(&t, &p, headers);
        }
    }
}
