//! Tests of route matching: every path kind, header and query-parameter
//! matcher, `grpc`, and the configuration errors each can raise.

use super::*;
use envoy_types::pb::envoy::config::route::v3::route_match::GrpcRouteMatchOptions;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    string_matcher::MatchPattern, RegexMatcher, StringMatcher,
};
use envoy_types::pb::envoy::r#type::v3::Int64Range;
use envoy_types::pb::google::protobuf::BoolValue;

fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

fn get(uri: &str) -> Parts {
    req("GET", uri, &[])
}

fn route_match(path: PathSpecifier) -> RouteMatchConfig {
    RouteMatchConfig {
        path_specifier: Some(path),
        ..Default::default()
    }
}

fn compile(config: &RouteMatchConfig) -> RouteMatcher {
    RouteMatcher::compile(config).unwrap()
}

fn matches(matcher: &RouteMatcher, req: &Parts) -> bool {
    matcher.matches(req, req.uri.path(), 0)
}

fn regex(pattern: &str) -> RegexMatcher {
    RegexMatcher {
        regex: pattern.into(),
        ..Default::default()
    }
}

#[test]
fn path_kinds_match_the_path_without_query() {
    let prefix = PathSpecifier::Prefix("/api".into());
    let exact = PathSpecifier::Path("/api".into());
    let re = PathSpecifier::SafeRegex(regex("/users/[0-9]+"));
    let sep = PathSpecifier::PathSeparatedPrefix("/api".into());
    let cases: &[(&PathSpecifier, &str, bool)] = &[
        (&prefix, "/api", true),
        (&prefix, "/apix", true),
        (&prefix, "/api/v1?x=1", true),
        (&prefix, "/ap", false),
        (&prefix, "/API", false),
        (&exact, "/api", true),
        (&exact, "/api?q=1", true),
        (&exact, "/api/", false),
        (&exact, "/apii", false),
        (&re, "/users/42", true),
        (&re, "/users/42?x", true),
        (&re, "/users/42/x", false),
        (&re, "/v/users/42", false),
        (&sep, "/api", true),
        (&sep, "/api/", true),
        (&sep, "/api/x/y", true),
        (&sep, "/api?x=1", true),
        (&sep, "/apix", false),
        (&sep, "/ap", false),
        (&sep, "/API/x", false),
    ];
    for (path, uri, want) in cases {
        let m = compile(&route_match((*path).clone()));
        assert_eq!(matches(&m, &get(uri)), *want, "{path:?} on {uri}");
    }
    // The empty prefix matches everything.
    let m = compile(&route_match(PathSpecifier::Prefix(String::new())));
    assert!(matches(&m, &get("/anything")));
}

#[test]
fn case_sensitive_false_applies_to_prefix_path_and_separated_prefix_only() {
    let insensitive = |path: PathSpecifier| {
        compile(&RouteMatchConfig {
            case_sensitive: Some(BoolValue { value: false }),
            ..route_match(path)
        })
    };
    assert!(matches(
        &insensitive(PathSpecifier::Prefix("/API".into())),
        &get("/api/x")
    ));
    assert!(matches(
        &insensitive(PathSpecifier::Path("/Api".into())),
        &get("/aPI")
    ));
    assert!(matches(
        &insensitive(PathSpecifier::PathSeparatedPrefix("/Api".into())),
        &get("/API/x")
    ));
    assert!(!matches(
        &insensitive(PathSpecifier::PathSeparatedPrefix("/Api".into())),
        &get("/APIx")
    ));
    // Regexes are unaffected by case_sensitive, as in Envoy.
    assert!(!matches(
        &insensitive(PathSpecifier::SafeRegex(regex("/api"))),
        &get("/API")
    ));
    // Explicit true is the default.
    let sensitive = compile(&RouteMatchConfig {
        case_sensitive: Some(BoolValue { value: true }),
        ..route_match(PathSpecifier::Prefix("/API".into()))
    });
    assert!(!matches(&sensitive, &get("/api")));
}

#[test]
fn invalid_path_separated_prefixes_are_rejected() {
    for bad in ["", "/", "/api/", "/a?b", "/a#b", "a"] {
        let errors =
            RouteMatcher::compile(&route_match(PathSpecifier::PathSeparatedPrefix(bad.into())))
                .unwrap_err();
        assert_eq!(errors.0[0].path, "path_separated_prefix", "{bad:?}");
    }
}

fn header(name: &str, spec: Option<HeaderMatchSpecifier>) -> HeaderMatcherConfig {
    HeaderMatcherConfig {
        name: name.into(),
        header_match_specifier: spec,
        ..Default::default()
    }
}

fn string_match(pattern: MatchPattern, ignore_case: bool) -> HeaderMatchSpecifier {
    HeaderMatchSpecifier::StringMatch(StringMatcher {
        ignore_case,
        match_pattern: Some(pattern),
    })
}

fn with_headers(headers: Vec<HeaderMatcherConfig>) -> RouteMatcher {
    compile(&RouteMatchConfig {
        headers,
        ..route_match(PathSpecifier::Prefix("/".into()))
    })
}

#[test]
#[allow(deprecated)]
fn header_matchers_cover_every_kind() {
    use HeaderMatchSpecifier as S;
    let r = req(
        "POST",
        "https://svc.example:8443/p?q=1",
        &[
            ("x-v", "Hello-World"),
            ("x-multi", "a"),
            ("x-multi", "b"),
            ("x-num", "42"),
        ],
    );
    let cases: Vec<(HeaderMatcherConfig, bool)> = vec![
        (
            header("x-v", Some(S::ExactMatch("Hello-World".into()))),
            true,
        ),
        (
            header("x-v", Some(S::ExactMatch("hello-world".into()))),
            false,
        ),
        (header("x-v", Some(S::PrefixMatch("Hello".into()))), true),
        (header("x-v", Some(S::SuffixMatch("World".into()))), true),
        (header("x-v", Some(S::ContainsMatch("o-W".into()))), true),
        (header("x-v", Some(S::SafeRegexMatch(regex("H.*d")))), true),
        (header("x-v", Some(S::SafeRegexMatch(regex("ello")))), false),
        (
            header(
                "x-v",
                Some(string_match(
                    MatchPattern::Exact("hello-world".into()),
                    true,
                )),
            ),
            true,
        ),
        (
            header(
                "x-v",
                Some(string_match(MatchPattern::Prefix("HELLO".into()), true)),
            ),
            true,
        ),
        (
            header(
                "x-v",
                Some(string_match(MatchPattern::Suffix("xyz".into()), false)),
            ),
            false,
        ),
        (
            header(
                "x-v",
                Some(string_match(MatchPattern::Contains("LO-w".into()), true)),
            ),
            true,
        ),
        (header("x-v", None), true),
        (header("x-missing", None), false),
        (header("x-v", Some(S::PresentMatch(true))), true),
        (header("x-v", Some(S::PresentMatch(false))), false),
        (header("x-missing", Some(S::PresentMatch(false))), true),
        (header("x-missing", Some(S::PresentMatch(true))), false),
        (
            header("x-missing", Some(S::ExactMatch(String::new()))),
            false,
        ),
        // Each value of a repeated header is matched on its own (Envoy 1.40).
        (header("x-multi", Some(S::ExactMatch("a,b".into()))), false),
        (header("x-multi", Some(S::ExactMatch("a".into()))), true),
        (header("x-multi", Some(S::ExactMatch("b".into()))), true),
        (header("x-multi", Some(S::PrefixMatch("a,".into()))), false),
        (
            header(
                "x-num",
                Some(S::RangeMatch(Int64Range { start: 40, end: 43 })),
            ),
            true,
        ),
        (
            header(
                "x-num",
                Some(S::RangeMatch(Int64Range { start: 43, end: 50 })),
            ),
            false,
        ),
        (
            header("x-v", Some(S::RangeMatch(Int64Range { start: 0, end: 50 }))),
            false,
        ),
        // Pseudo-headers.
        (header(":method", Some(S::ExactMatch("POST".into()))), true),
        (header(":path", Some(S::ExactMatch("/p?q=1".into()))), true),
        (
            header(":authority", Some(S::ExactMatch("svc.example:8443".into()))),
            true,
        ),
        (header("host", Some(S::PrefixMatch("svc.".into()))), true),
        (header(":scheme", Some(S::ExactMatch("https".into()))), true),
    ];
    for (config, want) in cases {
        let m = with_headers(vec![config.clone()]);
        assert_eq!(matches(&m, &r), want, "{config:?}");
    }
}

#[test]
#[allow(deprecated)]
fn invert_and_treat_missing_as_empty_follow_envoy() {
    use HeaderMatchSpecifier as S;
    let present = req("GET", "/", &[("x-v", "abc")]);
    let absent = get("/");
    let build = |spec: S, invert: bool, missing_empty: bool| {
        with_headers(vec![HeaderMatcherConfig {
            invert_match: invert,
            treat_missing_header_as_empty: missing_empty,
            ..header("x-v", Some(spec))
        }])
    };
    let cases: &[(S, bool, bool, bool, bool)] = &[
        // spec, invert, missing-as-empty, on present "abc", on absent
        (S::ExactMatch("abc".into()), false, false, true, false),
        (S::ExactMatch("abc".into()), true, false, false, false),
        (S::ExactMatch("zzz".into()), true, false, true, false),
        (S::ExactMatch("".into()), false, true, false, true),
        (S::ExactMatch("abc".into()), true, true, false, true),
        (S::PresentMatch(true), true, false, false, true),
        (S::PresentMatch(false), true, false, true, false),
        (S::PresentMatch(true), false, true, true, true),
    ];
    for (spec, invert, missing_empty, on_present, on_absent) in cases {
        let m = build(spec.clone(), *invert, *missing_empty);
        assert_eq!(
            matches(&m, &present),
            *on_present,
            "{spec:?} invert={invert} empty={missing_empty} present"
        );
        assert_eq!(
            matches(&m, &absent),
            *on_absent,
            "{spec:?} invert={invert} empty={missing_empty} absent"
        );
    }
}

#[test]
#[allow(deprecated)]
fn repeated_headers_match_any_value_and_invert_requires_none() {
    use HeaderMatchSpecifier as S;
    let m = |spec: S, invert: bool| {
        with_headers(vec![HeaderMatcherConfig {
            invert_match: invert,
            ..header("x-multi", Some(spec))
        }])
    };
    let two = |a: &str, b: &str| req("GET", "/", &[("x-multi", a), ("x-multi", b)]);
    // Observed with Envoy 1.40.
    assert!(!matches(
        &m(S::ExactMatch("a".into()), true),
        &two("a", "b")
    ));
    assert!(matches(&m(S::ExactMatch("a".into()), true), &two("b", "c")));
    assert!(matches(
        &m(S::RangeMatch(Int64Range { start: 1, end: 3 }), false),
        &two("5", "2")
    ));
    assert!(matches(
        &m(S::SafeRegexMatch(regex("b")), false),
        &two("a", "b")
    ));
    // One header line holding a comma is one value.
    let one = req("GET", "/", &[("x-multi", "a,b")]);
    assert!(matches(&m(S::ExactMatch("a,b".into()), false), &one));
}

#[test]
#[allow(deprecated)]
fn scheme_falls_back_to_x_forwarded_proto_for_http1() {
    let m = with_headers(vec![header(
        ":scheme",
        Some(HeaderMatchSpecifier::ExactMatch("http".into())),
    )]);
    assert!(matches(
        &m,
        &req("GET", "/", &[("x-forwarded-proto", "http")])
    ));
    assert!(!matches(
        &m,
        &req("GET", "/", &[("x-forwarded-proto", "https")])
    ));
    assert!(!matches(&m, &get("/")));
}

#[test]
fn all_header_matchers_must_match() {
    let m = with_headers(vec![header("x-a", None), header("x-b", None)]);
    assert!(matches(&m, &req("GET", "/", &[("x-a", "1"), ("x-b", "2")])));
    assert!(!matches(&m, &req("GET", "/", &[("x-a", "1")])));
}

#[test]
fn query_parameters_match_raw_first_values() {
    let build = |name: &str, spec: Option<QueryParameterMatchSpecifier>| {
        compile(&RouteMatchConfig {
            query_parameters: vec![QueryParameterMatcherConfig {
                name: name.into(),
                query_parameter_match_specifier: spec,
            }],
            ..route_match(PathSpecifier::Prefix("/".into()))
        })
    };
    let exact = |v: &str| {
        Some(QueryParameterMatchSpecifier::StringMatch(StringMatcher {
            ignore_case: false,
            match_pattern: Some(MatchPattern::Exact(v.into())),
        }))
    };
    let present = Some(QueryParameterMatchSpecifier::PresentMatch(true));
    let cases: &[(&str, Option<QueryParameterMatchSpecifier>, &str, bool)] = &[
        ("debug", present.clone(), "/?debug", true),
        ("debug", present.clone(), "/?debug=1", true),
        ("debug", present.clone(), "/?debugx=1", false),
        ("debug", present.clone(), "/", false),
        ("debug", None, "/?a=1&debug=", true),
        // present_match: false requires absence (observed with Envoy 1.40).
        (
            "debug",
            Some(QueryParameterMatchSpecifier::PresentMatch(false)),
            "/?debug=1",
            false,
        ),
        (
            "debug",
            Some(QueryParameterMatchSpecifier::PresentMatch(false)),
            "/?x=1",
            true,
        ),
        (
            "debug",
            Some(QueryParameterMatchSpecifier::PresentMatch(false)),
            "/",
            true,
        ),
        ("v", exact("2"), "/?v=2", true),
        ("v", exact("2"), "/?v=2&v=3", true),
        ("v", exact("3"), "/?v=2&v=3", false),
        ("v", exact("a b"), "/?v=a%20b", false),
        ("v", exact("a%20b"), "/?v=a%20b", true),
        ("v", exact(""), "/?v", true),
    ];
    for (name, spec, uri, want) in cases {
        let m = build(name, spec.clone());
        assert_eq!(matches(&m, &get(uri)), *want, "{name} {spec:?} on {uri}");
    }
}

#[test]
fn grpc_requires_a_grpc_content_type() {
    let m = compile(&RouteMatchConfig {
        grpc: Some(GrpcRouteMatchOptions {}),
        ..route_match(PathSpecifier::Prefix("/".into()))
    });
    let with_type = |t: &str| req("POST", "/svc/Method", &[("content-type", t)]);
    assert!(matches(&m, &with_type("application/grpc")));
    assert!(matches(&m, &with_type("application/grpc+proto")));
    assert!(!matches(&m, &with_type("application/grpc-web")));
    assert!(!matches(&m, &with_type("application/json")));
    assert!(!matches(&m, &get("/svc/Method")));
}

#[test]
#[allow(deprecated)]
fn bad_matchers_are_rejected_with_paths() {
    let config = RouteMatchConfig {
        headers: vec![
            header("x-ok", None),
            header("bad header", None),
            header(":status", None),
            header("x", Some(HeaderMatchSpecifier::SafeRegexMatch(regex("(")))),
            header("x", Some(HeaderMatchSpecifier::PrefixMatch(String::new()))),
            header(
                "x",
                Some(HeaderMatchSpecifier::RangeMatch(Int64Range {
                    start: 5,
                    end: 5,
                })),
            ),
        ],
        query_parameters: vec![QueryParameterMatcherConfig {
            name: String::new(),
            query_parameter_match_specifier: None,
        }],
        ..route_match(PathSpecifier::SafeRegex(regex("*")))
    };
    let errors = RouteMatcher::compile(&config).unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "safe_regex.regex",
            "headers[1].name",
            "headers[2].name",
            "headers[3].safe_regex_match.regex",
            "headers[4].prefix_match",
            "headers[5].range_match",
            "query_parameters[0].name"
        ]
    );
    assert!(errors.0[0].message.starts_with("invalid regex \"*\""));
}

#[test]
fn unsupported_match_fields_are_rejected_not_ignored() {
    let config = RouteMatchConfig {
        dynamic_metadata: vec![Default::default()],
        tls_context: Some(Default::default()),
        ..route_match(PathSpecifier::Prefix("/".into()))
    };
    let errors = RouteMatcher::compile(&config).unwrap_err();
    assert_eq!(errors.0.len(), 2);
    assert!(errors
        .0
        .iter()
        .all(|e| e.message.contains("not supported by Sluice")));
    let errors = RouteMatcher::compile(&RouteMatchConfig::default()).unwrap_err();
    assert!(errors.0[0].message.contains("one of prefix, path"));
    let errors = RouteMatcher::compile(&route_match(PathSpecifier::ConnectMatcher(
        Default::default(),
    )))
    .unwrap_err();
    assert_eq!(errors.0[0].path, "connect_matcher");
}

#[test]
fn runtime_fraction_uses_the_default_value_and_the_random_draw() {
    use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
    use envoy_types::pb::envoy::r#type::v3::FractionalPercent;
    let m = compile(&RouteMatchConfig {
        runtime_fraction: Some(RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator: 25,
                denominator: DenominatorType::Hundred as i32,
            }),
            runtime_key: "routing.canary".into(),
        }),
        ..route_match(PathSpecifier::Prefix("/".into()))
    });
    assert!(m.uses_random());
    let r = get("/");
    assert!(m.matches(&r, "/", 24));
    assert!(!m.matches(&r, "/", 25));
    assert!(m.matches(&r, "/", 124));
    let missing = RouteMatcher::compile(&RouteMatchConfig {
        runtime_fraction: Some(RuntimeFractionalPercent::default()),
        ..route_match(PathSpecifier::Prefix("/".into()))
    })
    .unwrap_err();
    assert_eq!(missing.0[0].path, "runtime_fraction.default_value");
}

#[test]
fn cookie_matchers_match_values_and_invert_on_absence() {
    let build = |invert: bool| {
        compile(&RouteMatchConfig {
            cookies: vec![CookieMatcherConfig {
                name: "session".into(),
                string_match: Some(StringMatcher {
                    ignore_case: false,
                    match_pattern: Some(MatchPattern::Prefix("beta-".into())),
                }),
                invert_match: invert,
            }],
            ..route_match(PathSpecifier::Prefix("/".into()))
        })
    };
    let with = |cookie: &str| req("GET", "/", &[("cookie", cookie)]);
    let plain = build(false);
    assert!(matches(&plain, &with("a=1; session=beta-7")));
    assert!(!matches(&plain, &with("session=prod-1")));
    assert!(!matches(&plain, &get("/")));
    let inverted = build(true);
    assert!(!matches(&inverted, &with("session=beta-7")));
    assert!(matches(&inverted, &with("session=prod-1")));
    assert!(matches(&inverted, &get("/")));
    let missing = RouteMatcher::compile(&RouteMatchConfig {
        cookies: vec![CookieMatcherConfig {
            name: "c".into(),
            ..Default::default()
        }],
        ..route_match(PathSpecifier::Prefix("/".into()))
    })
    .unwrap_err();
    assert_eq!(missing.0[0].path, "cookies[0].string_match");
}
