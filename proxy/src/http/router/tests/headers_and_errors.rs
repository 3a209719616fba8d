//! Header mutation precedence across levels, and configuration errors.

use super::*;

fn add(key: &str, value: &str, action: HeaderAppendAction) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.into(),
            value: value.into(),
            raw_value: vec![],
        }),
        append_action: action as i32,
        ..Default::default()
    }
}

fn layered(most_specific_wins: bool) -> RouteTable {
    let overwrite = HeaderAppendAction::OverwriteIfExistsOrAdd;
    let append = HeaderAppendAction::AppendIfExistsOrAdd;
    let mut r = route("/", forward("a"));
    r.request_headers_to_add = vec![
        add("x-level", "route", overwrite),
        add("x-trace", "route", append),
    ];
    r.response_headers_to_add = vec![add("x-level", "route", overwrite)];
    let mut v = vhost("v", &["*"], vec![r]);
    v.request_headers_to_add = vec![
        add("x-level", "vhost", overwrite),
        add("x-trace", "vhost", append),
    ];
    v.response_headers_to_add = vec![add("x-level", "vhost", overwrite)];
    v.response_headers_to_remove = vec!["server".into()];
    RouteTable::compile(&RouteConfiguration {
        most_specific_header_mutations_wins: most_specific_wins,
        request_headers_to_add: vec![
            add("x-level", "global", overwrite),
            add("x-trace", "global", append),
        ],
        response_headers_to_add: vec![add("x-level", "global", overwrite)],
        virtual_hosts: vec![v],
        ..Default::default()
    })
    .unwrap()
}

fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[test]
fn header_levels_apply_in_envoy_order() {
    let info = StreamInfo::new(None, None);
    let r = at("h", "/");
    for (most_specific, winner, order) in [
        (false, "global", ["route", "vhost", "global"]),
        (true, "route", ["global", "vhost", "route"]),
    ] {
        let t = layered(most_specific);
        let m = t.find(&r).unwrap();
        let mut request = HeaderMap::new();
        t.apply_request_headers(&m, None, &mut request, &info);
        assert_eq!(
            values(&request, "x-level"),
            [winner],
            "most_specific={most_specific}"
        );
        assert_eq!(
            values(&request, "x-trace"),
            order,
            "most_specific={most_specific}"
        );
        let mut response = HeaderMap::new();
        response.insert("server", "upstream".parse().unwrap());
        t.apply_response_headers(&m, None, &mut response, &info);
        assert_eq!(values(&response, "x-level"), [winner]);
        assert!(!response.contains_key("server"));
    }
}

#[test]
fn weighted_cluster_headers_apply_first() {
    let mut action = weighted(&[("a", 1)], None);
    if let Some(Spec::WeightedClusters(w)) = &mut action.cluster_specifier {
        w.clusters[0].request_headers_to_add = vec![add(
            "x-level",
            "cluster",
            HeaderAppendAction::OverwriteIfExistsOrAdd,
        )];
    }
    let mut r = route("/", action);
    r.request_headers_to_add = vec![add(
        "x-level",
        "route",
        HeaderAppendAction::AppendIfExistsOrAdd,
    )];
    let t = table(vec![vhost("v", &["*"], vec![r])]);
    let request = at("h", "/");
    let m = t.find(&request).unwrap();
    let choice = forward_of(&m).cluster_for(&request, 0);
    let mut headers = HeaderMap::new();
    t.apply_request_headers(
        &m,
        choice.weighted,
        &mut headers,
        &StreamInfo::new(None, None),
    );
    assert_eq!(values(&headers, "x-level"), ["cluster", "route"]);
}

#[test]
fn configuration_errors_name_exact_paths() {
    let mut bad_regex = route("/", forward("a"));
    bad_regex.r#match = Some(RouteMatchConfig {
        path_specifier: Some(PathSpecifier::SafeRegex(RegexMatcher {
            regex: "[".into(),
            ..Default::default()
        })),
        ..Default::default()
    });
    let mut bad_header = route("/x", forward("a"));
    bad_header.request_headers_to_add = vec![add(
        ":path",
        "/evil",
        HeaderAppendAction::AppendIfExistsOrAdd,
    )];
    bad_header.response_headers_to_remove = vec!["bad name".into()];
    let mut no_action = route("/y", forward("a"));
    no_action.action = None;
    let config = RouteConfiguration {
        virtual_hosts: vec![
            vhost(
                "a",
                &["a.com", "*"],
                vec![route("/", forward("ok")), bad_regex, bad_header, no_action],
            ),
            vhost("b", &["A.com", "a.COM"], vec![route("/", forward(""))]),
            vhost("", &[], vec![]),
        ],
        request_headers_to_remove: vec!["host".into()],
        ..Default::default()
    };
    let errors = RouteTable::compile(&config).unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "request_headers_to_remove[0]",
            "virtual_hosts[0].routes[1].match.safe_regex.regex",
            "virtual_hosts[0].routes[2].request_headers_to_add[0].header.key",
            "virtual_hosts[0].routes[2].response_headers_to_remove[0]",
            "virtual_hosts[0].routes[3]",
            "virtual_hosts[1].domains[0]",
            "virtual_hosts[1].domains[1]",
            "virtual_hosts[1].routes[0].route.cluster",
            "virtual_hosts[2].domains",
            "virtual_hosts[2].name",
        ],
        "{errors}"
    );
    let text = errors.to_string();
    assert!(
        text.contains("virtual_hosts[0].routes[1].match.safe_regex.regex: invalid regex \"[\""),
        "{text}"
    );
    assert!(
        text.contains("duplicate domain \"a.com\": already used by virtual host \"a\""),
        "{text}"
    );
}

#[test]
fn unsupported_fields_are_rejected() {
    let mut action = forward("a");
    action.cluster_specifier = Some(Spec::ClusterSpecifierPlugin("p".into()));
    let mut r = route("/", action);
    r.request_headers_to_add = vec![];
    let errors = RouteTable::compile(&RouteConfiguration {
        vhds: Some(Default::default()),
        virtual_hosts: vec![vhost("v", &["*"], vec![r])],
        ..Default::default()
    })
    .unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "vhds",
            "virtual_hosts[0].routes[0].route.cluster_specifier_plugin"
        ]
    );
    assert!(errors
        .0
        .iter()
        .all(|e| e.message.contains("not supported by Sluice")));
}
