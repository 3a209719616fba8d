//! Tests of redirect `Location` building and direct responses.

use super::*;
use envoy_types::pb::envoy::config::core::v3::DataSource;
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatchAndSubstitute, RegexMatcher};

fn req(uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut builder = http::Request::builder().uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

fn prefix_route(prefix: &str) -> PathMatch {
    PathMatch::Prefix {
        prefix: prefix.into(),
        case_sensitive: true,
    }
}

fn redirect(config: RedirectActionConfig) -> RedirectAction {
    RedirectAction::compile(&config, &prefix_route("/old")).unwrap()
}

fn https() -> Option<SchemeRewriteSpecifier> {
    Some(SchemeRewriteSpecifier::HttpsRedirect(true))
}

#[test]
fn location_combines_each_redirect_field_like_envoy() {
    struct Case {
        config: RedirectActionConfig,
        uri: &'static str,
        host: &'static str,
        scheme: &'static str,
        forwarded_proto: Option<&'static str>,
        want: &'static str,
    }
    let case = |config, uri, host, want| Case {
        config,
        uri,
        host,
        scheme: "http",
        forwarded_proto: None,
        want,
    };
    let path = |p: &str| Some(PathRewriteSpecifier::PathRedirect(p.into()));
    let cases = vec![
        // Nothing set: same URL.
        case(
            Default::default(),
            "/old/a?x=1",
            "h.com",
            "http://h.com/old/a?x=1",
        ),
        // https_redirect drops the http default port, keeps others.
        case(
            RedirectActionConfig {
                scheme_rewrite_specifier: https(),
                ..Default::default()
            },
            "/a?x=1",
            "h.com:80",
            "https://h.com/a?x=1",
        ),
        case(
            RedirectActionConfig {
                scheme_rewrite_specifier: https(),
                ..Default::default()
            },
            "/a",
            "h.com:8080",
            "https://h.com:8080/a",
        ),
        case(
            RedirectActionConfig {
                scheme_rewrite_specifier: https(),
                ..Default::default()
            },
            "/a",
            "[::1]:80",
            "https://[::1]/a",
        ),
        case(
            RedirectActionConfig {
                scheme_rewrite_specifier: Some(SchemeRewriteSpecifier::SchemeRedirect("ws".into())),
                ..Default::default()
            },
            "/a",
            "h.com",
            "ws://h.com/a",
        ),
        // port_redirect replaces the request's port.
        case(
            RedirectActionConfig {
                port_redirect: 8443,
                ..Default::default()
            },
            "/a",
            "h.com:80",
            "http://h.com:8443/a",
        ),
        case(
            RedirectActionConfig {
                port_redirect: 8443,
                ..Default::default()
            },
            "/a",
            "[2001:db8::1]:80",
            "http://[2001:db8::1]:8443/a",
        ),
        // host_redirect replaces host and port; port_redirect appends.
        case(
            RedirectActionConfig {
                host_redirect: "new.com".into(),
                ..Default::default()
            },
            "/a",
            "h.com:9000",
            "http://new.com/a",
        ),
        case(
            RedirectActionConfig {
                host_redirect: "new.com".into(),
                port_redirect: 81,
                scheme_rewrite_specifier: https(),
                ..Default::default()
            },
            "/a?q",
            "h.com",
            "https://new.com:81/a?q",
        ),
        // path_redirect keeps the request's query unless strip_query.
        case(
            RedirectActionConfig {
                path_rewrite_specifier: path("/new"),
                ..Default::default()
            },
            "/old/a?x=1",
            "h.com",
            "http://h.com/new?x=1",
        ),
        case(
            RedirectActionConfig {
                path_rewrite_specifier: path("/new"),
                strip_query: true,
                ..Default::default()
            },
            "/old/a?x=1",
            "h.com",
            "http://h.com/new",
        ),
        // A query in path_redirect wins and is never stripped.
        case(
            RedirectActionConfig {
                path_rewrite_specifier: path("/new?y=2"),
                strip_query: true,
                ..Default::default()
            },
            "/old/a?x=1",
            "h.com",
            "http://h.com/new?y=2",
        ),
        case(
            RedirectActionConfig {
                path_rewrite_specifier: path("relative"),
                ..Default::default()
            },
            "/a",
            "h.com",
            "http://h.com/relative",
        ),
        case(
            RedirectActionConfig {
                strip_query: true,
                ..Default::default()
            },
            "/a?x=1",
            "h.com",
            "http://h.com/a",
        ),
        // prefix_rewrite replaces the matched prefix.
        case(
            RedirectActionConfig {
                path_rewrite_specifier: Some(PathRewriteSpecifier::PrefixRewrite("/new".into())),
                ..Default::default()
            },
            "/old/a?x=1",
            "h.com",
            "http://h.com/new/a?x=1",
        ),
        case(
            RedirectActionConfig {
                path_rewrite_specifier: Some(PathRewriteSpecifier::RegexRewrite(
                    RegexMatchAndSubstitute {
                        pattern: Some(RegexMatcher {
                            regex: "^/old/(.*)$".into(),
                            ..Default::default()
                        }),
                        substitution: "/v2/\\1".into(),
                    },
                )),
                strip_query: true,
                ..Default::default()
            },
            "/old/a/b?x=1",
            "h.com",
            "http://h.com/v2/a/b",
        ),
    ];
    let mut more = vec![
        // On TLS (scheme https), an http→https redirect keeps :443 as-is;
        // going to http drops the https default port.
        Case {
            config: RedirectActionConfig {
                scheme_rewrite_specifier: Some(SchemeRewriteSpecifier::SchemeRedirect(
                    "http".into(),
                )),
                ..Default::default()
            },
            uri: "/a",
            host: "h.com:443",
            scheme: "https",
            forwarded_proto: None,
            want: "http://h.com/a",
        },
        Case {
            config: RedirectActionConfig {
                scheme_rewrite_specifier: https(),
                ..Default::default()
            },
            uri: "/a",
            host: "h.com:443",
            scheme: "https",
            forwarded_proto: None,
            want: "https://h.com:443/a",
        },
        // x-forwarded-proto decides which default port is dropped.
        Case {
            config: RedirectActionConfig {
                scheme_rewrite_specifier: https(),
                ..Default::default()
            },
            uri: "/a",
            host: "h.com:80",
            scheme: "https",
            forwarded_proto: Some("http"),
            want: "https://h.com/a",
        },
    ];
    let mut all = cases;
    all.append(&mut more);
    for case in all {
        let mut headers = vec![("host", case.host)];
        if let Some(proto) = case.forwarded_proto {
            headers.push(("x-forwarded-proto", proto));
        }
        let action = redirect(case.config.clone());
        assert_eq!(
            action.location(&req(case.uri, &headers), case.scheme),
            case.want,
            "{:?} {} {}",
            case.config,
            case.uri,
            case.host
        );
    }
}

#[test]
fn response_codes_map_to_envoy_defaults() {
    let code = |value: RedirectResponseCode| {
        redirect(RedirectActionConfig {
            response_code: value as i32,
            ..Default::default()
        })
        .response_code
    };
    assert_eq!(
        redirect(Default::default()).response_code,
        StatusCode::MOVED_PERMANENTLY
    );
    assert_eq!(code(RedirectResponseCode::Found), StatusCode::FOUND);
    assert_eq!(code(RedirectResponseCode::SeeOther), StatusCode::SEE_OTHER);
    assert_eq!(
        code(RedirectResponseCode::TemporaryRedirect),
        StatusCode::TEMPORARY_REDIRECT
    );
    assert_eq!(
        code(RedirectResponseCode::PermanentRedirect),
        StatusCode::PERMANENT_REDIRECT
    );
}

#[test]
fn bad_redirects_are_rejected_with_paths() {
    let errors = RedirectAction::compile(
        &RedirectActionConfig {
            port_redirect: 70000,
            response_code: 9,
            host_redirect: "a/b".into(),
            scheme_rewrite_specifier: Some(SchemeRewriteSpecifier::SchemeRedirect("ht tp".into())),
            ..Default::default()
        },
        &prefix_route("/"),
    )
    .unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "scheme_redirect",
            "host_redirect",
            "port_redirect",
            "response_code"
        ]
    );
}

fn body(specifier: DataSourceSpecifier) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(specifier),
        ..Default::default()
    })
}

#[test]
fn direct_responses_carry_status_and_inline_body() {
    let compile = |status, body| {
        DirectResponse::compile(
            &DirectResponseAction {
                status,
                body,
                ..Default::default()
            },
            DEFAULT_MAX_DIRECT_RESPONSE_BODY_BYTES,
        )
    };
    let ok = compile(200, body(DataSourceSpecifier::InlineString("hello".into()))).unwrap();
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body.as_deref(), Some(&b"hello"[..]));
    let bytes = compile(503, body(DataSourceSpecifier::InlineBytes(vec![0, 1]))).unwrap();
    assert_eq!(bytes.body.as_deref(), Some(&[0u8, 1][..]));
    assert!(compile(404, None).unwrap().body.is_none());
}

#[test]
fn bad_direct_responses_are_rejected() {
    let error = |status, body, max| {
        DirectResponse::compile(
            &DirectResponseAction {
                status,
                body,
                ..Default::default()
            },
            max,
        )
        .unwrap_err()
        .0[0]
            .clone()
    };
    assert_eq!(error(199, None, 4096).path, "status");
    assert_eq!(error(600, None, 4096).path, "status");
    let file = error(
        200,
        body(DataSourceSpecifier::Filename("/etc/x".into())),
        4096,
    );
    assert_eq!(file.path, "body.filename");
    assert!(file.message.contains("not supported by Sluice"));
    let big = error(
        200,
        body(DataSourceSpecifier::InlineString("x".repeat(11))),
        10,
    );
    assert_eq!(big.path, "body");
    assert!(big.message.contains("maximum is 10"));
    let env = error(
        200,
        body(DataSourceSpecifier::EnvironmentVariable(
            "SLUICE_TEST_SURELY_UNSET_VAR".into(),
        )),
        4096,
    );
    assert_eq!(env.path, "body.environment_variable");
}
