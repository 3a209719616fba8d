//! Virtual host selection and route order.

use super::*;

#[test]
fn virtual_hosts_are_chosen_by_domain_precedence_case_and_port() {
    let t = table(vec![
        vhost(
            "exact",
            &["www.example.com", "[::1]:8080"],
            vec![route("/", forward("exact"))],
        ),
        vhost(
            "suffix",
            &["*.example.com"],
            vec![route("/", forward("suffix"))],
        ),
        vhost("prefix", &["www.*"], vec![route("/", forward("prefix"))]),
        vhost(
            "ported",
            &["api.test:8080"],
            vec![route("/", forward("ported"))],
        ),
        vhost("any", &["*"], vec![route("/", forward("any"))]),
    ]);
    let cases: &[(&str, &str)] = &[
        ("www.example.com", "exact"),
        ("WWW.EXAMPLE.COM", "exact"),
        ("a.example.com", "suffix"),
        ("www.example.org", "prefix"),
        ("api.test:8080", "ported"),
        // Envoy keeps the port by default: it must match a domain with it.
        ("www.example.com:80", "prefix"),
        ("api.test", "any"),
        ("[::1]:8080", "exact"),
        ("nothing.here", "any"),
    ];
    for (host, want) in cases {
        assert_eq!(
            cluster_at(&t, &at(host, "/")).as_deref(),
            Some(*want),
            "{host}"
        );
    }
    // HTTP/2 style: the authority comes from the URI.
    assert_eq!(
        cluster_at(&t, &req("https://a.example.com/x", &[])).as_deref(),
        Some("suffix")
    );
    assert_eq!(
        t.find(&req("/", &[])).map(|m| m.virtual_host.name.clone()),
        None
    );
}

#[test]
fn ignore_port_in_host_matching_strips_ports_including_ipv6() {
    let t = RouteTable::compile(&RouteConfiguration {
        ignore_port_in_host_matching: true,
        virtual_hosts: vec![
            vhost("a", &["example.com"], vec![route("/", forward("a"))]),
            vhost("v6", &["[::1]"], vec![route("/", forward("v6"))]),
        ],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        cluster_at(&t, &at("example.com:8080", "/")).as_deref(),
        Some("a")
    );
    assert_eq!(
        cluster_at(&t, &at("Example.com", "/")).as_deref(),
        Some("a")
    );
    assert_eq!(cluster_at(&t, &at("[::1]:80", "/")).as_deref(), Some("v6"));
    assert!(t.find(&at("other:80", "/")).is_none());
}

#[test]
fn vhost_header_selects_by_another_header() {
    let t = RouteTable::compile(&RouteConfiguration {
        vhost_header: "x-vhost".into(),
        virtual_hosts: vec![vhost("a", &["a.svc"], vec![route("/", forward("a"))])],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        cluster_at(&t, &req("/", &[("host", "x"), ("x-vhost", "a.svc")])).as_deref(),
        Some("a")
    );
    assert!(t.find(&at("a.svc", "/")).is_none());
}

#[test]
fn only_a_catch_all_table_answers_requests_without_host() {
    let t = table(vec![vhost("any", &["*"], vec![route("/", forward("c"))])]);
    assert_eq!(cluster_at(&t, &req("/", &[])).as_deref(), Some("c"));
}

#[test]
fn the_first_matching_route_wins() {
    let t = table(vec![vhost(
        "v",
        &["*"],
        vec![
            route("/api/v2", forward("v2")),
            route("/api", forward("api")),
            route("/api/v2/special", forward("never")),
            route("/", forward("root")),
        ],
    )]);
    assert_eq!(
        cluster_at(&t, &at("h", "/api/v2/special")).as_deref(),
        Some("v2")
    );
    assert_eq!(cluster_at(&t, &at("h", "/api/v1")).as_deref(), Some("api"));
    assert_eq!(cluster_at(&t, &at("h", "/other")).as_deref(), Some("root"));
    let none = table(vec![vhost("v", &["*"], vec![route("/only", forward("x"))])]);
    assert!(none.find(&at("h", "/else")).is_none());
}

#[test]
fn ignore_path_parameters_strips_them_before_matching() {
    let t = RouteTable::compile(&RouteConfiguration {
        ignore_path_parameters_in_path_matching: true,
        virtual_hosts: vec![vhost(
            "v",
            &["*"],
            vec![RouteConfig {
                r#match: Some(RouteMatchConfig {
                    path_specifier: Some(PathSpecifier::Path("/a".into())),
                    ..Default::default()
                }),
                ..route("/", forward("a"))
            }],
        )],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        cluster_at(&t, &at("h", "/a;jsessionid=1")).as_deref(),
        Some("a")
    );
}

#[test]
fn require_tls_redirects_plain_requests_to_https() {
    use envoy_types::pb::envoy::config::route::v3::virtual_host::TlsRequirementType;
    let mut all = vhost(
        "all",
        &["all.com", "all.com:80"],
        vec![route("/", forward("a"))],
    );
    all.require_tls = TlsRequirementType::All as i32;
    let mut external = vhost("ext", &["ext.com"], vec![route("/", forward("e"))]);
    external.require_tls = TlsRequirementType::ExternalOnly as i32;
    let t = table(vec![all, external]);
    let location = |host: &str, headers: &[(&str, &str)]| {
        let mut all_headers = vec![("host", host)];
        all_headers.extend_from_slice(headers);
        let r = req("/p?q=1", &all_headers);
        let m = t.find(&r).unwrap();
        m.route.redirect_location(&r, "http")
    };
    assert_eq!(
        location("all.com:80", &[]).as_deref(),
        Some("https://all.com:80/p?q=1")
    );
    assert_eq!(
        location("all.com", &[("x-forwarded-proto", "http")]).as_deref(),
        Some("https://all.com/p?q=1")
    );
    assert_eq!(location("all.com", &[("x-forwarded-proto", "https")]), None);
    assert_eq!(
        location("all.com", &[("x-envoy-internal", "true")]).as_deref(),
        Some("https://all.com/p?q=1")
    );
    assert_eq!(
        location("ext.com", &[]).as_deref(),
        Some("https://ext.com/p?q=1")
    );
    assert_eq!(location("ext.com", &[("x-envoy-internal", "true")]), None);
    let m = t.find(&req("/", &[("host", "all.com")])).unwrap();
    assert!(
        matches!(&m.route.action, RouteAction::Redirect(r) if r.response_code == http::StatusCode::MOVED_PERMANENTLY)
    );
}

#[test]
fn a_compiled_table_can_be_shared_across_workers() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<RouteTable>();
}
