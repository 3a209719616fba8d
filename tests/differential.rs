//! Differential tests against the real Envoy 1.40: the same Envoy v3 config
//! (tests/differential/routing.yaml) runs in Envoy and in Sluice, the same
//! requests go to both over HTTP/1.1 and h2c, and every field a user can see
//! is compared: status, which backend answered, the path, Host and headers
//! the backend saw, the response headers, `Location`, direct-response and
//! local-reply bodies. Afterwards a handful of stats both proxies keep are
//! compared, and `--mode validate` verdicts on good and bad configs.
//!
//! Each request is one row of [`cases`]; adding a case is one line. All
//! mismatches are reported together. Where Sluice knowingly differs, the row
//! says so with [`Case::known`] and the current Sluice value, so the test
//! still fails if that difference changes (or disappears).
//!
//! Envoy comes from `$SLUICE_ENVOY` (set by `cargo xtask test`), else
//! `target/envoy-venv/bin/envoy`, else `PATH`; without one these tests skip
//! with a message, except under `CI=true`, where they fail.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use support::{envoy_binary_or_skip, envoy_validate, Backend, EchoReply, Envoy, Reply, Sluice};

const ROUTING: &str = include_str!("differential/routing.yaml");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::H1 => "HTTP/1.1",
            Proto::H2 => "h2c",
        }
    }
}

/// A field where Sluice is known to differ from Envoy: the value Sluice
/// gives today (`None`: absent) and why it is accepted for now.
struct Known {
    field: &'static str,
    proto: Option<Proto>,
    sluice: Option<&'static str>,
    reason: &'static str,
}

/// One request, sent identically to Envoy and to Sluice.
struct Case {
    name: &'static str,
    listener: &'static str,
    method: &'static str,
    host: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    protos: &'static [Proto],
    known: Vec<Known>,
}

const BOTH: &[Proto] = &[Proto::H1, Proto::H2];

/// A GET to the HTTP listener over HTTP/1.1 and h2c.
fn get(name: &'static str, host: &'static str, path: &'static str) -> Case {
    Case {
        name,
        listener: "HTTP",
        method: "GET",
        host,
        path,
        headers: Vec::new(),
        protos: BOTH,
        known: Vec::new(),
    }
}

impl Case {
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }

    fn only(mut self, protos: &'static [Proto]) -> Self {
        self.protos = protos;
        self
    }

    fn listener(mut self, listener: &'static str) -> Self {
        self.listener = listener;
        self
    }

    /// Marks `field` as a known difference (for `proto`, or both when
    /// `None`); `sluice` is Sluice's current value.
    #[allow(dead_code)]
    fn known(
        mut self,
        field: &'static str,
        proto: Option<Proto>,
        sluice: Option<&'static str>,
        reason: &'static str,
    ) -> Self {
        self.known.push(Known {
            field,
            proto,
            sluice,
            reason,
        });
        self
    }
}

/// The table: request → everything a user sees is compared.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    vec![
        // Virtual hosts: exact, port, suffix/prefix wildcards, case, fallback.
        get("exact domain, prefix route", "exact.test", "/p/one"),
        get("domain match ignores case", "EXACT.Test", "/p/one"),
        get("exact domain with a port falls to *", "exact.test:9999", "/fallback/x"),
        get("domain with port", "ported.test:8080", "/any"),
        get("domain without its port falls to *", "ported.test", "/fallback/p"),
        get("suffix wildcard", "a.wild.test", "/x"),
        get("suffix wildcard, two labels", "a.b.wild.test", "/x"),
        get("longest suffix wildcard wins", "a.deep.wild.test", "/x"),
        get("suffix wildcard needs a label", "wild.test", "/fallback"),
        get("prefix wildcard", "wild-prefix.example", "/y"),
        get("no route in fallback vhost: 404", "nowhere.test", "/nothing"),
        get("no route in exact vhost: 404", "exact.test", "/not-routed"),
        // Path matching.
        get("path match", "exact.test", "/exact"),
        get("path match is exact", "exact.test", "/exact/more"),
        get("path match ignores the query", "exact.test", "/exact?a=b"),
        get("regex match", "exact.test", "/re/123"),
        get("regex must match the whole path", "exact.test", "/re/123x"),
        get("path_separated_prefix exact", "exact.test", "/sep"),
        get("path_separated_prefix with /", "exact.test", "/sep/child"),
        get("path_separated_prefix with query", "exact.test", "/sep?q=1"),
        get("path_separated_prefix is not a prefix", "exact.test", "/separate"),
        get("case-insensitive prefix", "exact.test", "/CI/Thing"),
        get("case-sensitive prefix does not match", "exact.test", "/P/one"),
        // Header and query matchers.
        get("header exact", "exact.test", "/hdr").header("x-test-sel", "yes"),
        get("header prefix + present", "exact.test", "/hdr").header("x-test-pfx", "abc")
            .header("x-test-present", ""),
        get("header prefix without present", "exact.test", "/hdr").header("x-test-pfx", "abc"),
        get("inverted header match, header absent", "exact.test", "/hdr"),
        get("inverted header match fails", "exact.test", "/hdr").header("x-test-not", "no"),
        get("query exact", "exact.test", "/query?q=1"),
        get("query exact mismatch", "exact.test", "/query?q=2"),
        get("query present", "exact.test", "/query?flag"),
        get("query present with value", "exact.test", "/query?a=1&flag=x"),
        get("no query", "exact.test", "/query"),
        // Weighted clusters (100/0 so the pick is deterministic).
        get("weighted 100/0", "exact.test", "/weighted-a"),
        get("weighted 0/100", "exact.test", "/weighted-b"),
        // Rewrites.
        get("prefix_rewrite", "exact.test", "/pre/deep/path?k=v"),
        get("prefix_rewrite to /", "exact.test", "/strip/x"),
        get("prefix_rewrite of the whole path to /", "exact.test", "/strip"),
        get("regex_rewrite", "exact.test", "/rx/one/two"),
        get("regex_rewrite without match", "exact.test", "/rx/one"),
        get("host_rewrite_literal", "exact.test", "/hostrw"),
        get("h2 upstream", "exact.test", "/h2/up"),
        // Header mutations at route, virtual host and route-config level.
        get("header mutations, no client headers", "exact.test", "/hdrs"),
        get("header mutations, with client headers", "exact.test", "/hdrs")
            .header("x-test-level", "client").header("x-test-absent", "client")
            .header("x-test-overwrite", "client").header("x-test-if-exists", "client")
            .header("x-test-remove-route", "1").header("x-test-remove-config", "1").header("x-test-in", "hello"),
        // Redirects of every kind.
        get("https_redirect", "exact.test", "/redir/https/a?b=c"),
        get("scheme_redirect", "exact.test", "/redir/scheme"),
        get("host_redirect", "exact.test", "/redir/host?q=1"),
        get("port_redirect", "exact.test", "/redir/port"),
        get("path_redirect 308", "exact.test", "/redir/path?keep=1"),
        get("path_redirect with query + strip", "exact.test", "/redir/pathq?drop=1"),
        get("prefix_rewrite redirect 302", "exact.test", "/redir/prefix/rest?x=y"),
        get("regex_rewrite redirect 303", "exact.test", "/redir/regex/a/b"),
        get("strip_query redirect 307", "exact.test", "/redir/strip?gone=1"),
        get("everything redirect", "exact.test", "/redir/all?q=1"),
        // Direct responses.
        get("direct response 200", "exact.test", "/direct/ok"),
        get("direct response 204 without body", "exact.test", "/direct/empty"),
        get("direct response 418", "exact.test", "/direct/teapot"),
        get("direct response 503", "exact.test", "/direct/unavailable"),
        get("direct response to HEAD", "exact.test", "/direct/ok").method("HEAD"),
        // Upstream failures and timeouts.
        get("dead endpoint: 503 connect failure", "exact.test", "/dead"),
        get("no endpoints: no healthy upstream", "exact.test", "/empty"),
        get("route timeout: 504", "exact.test", "/slow"),
        get("timeout 0s: no expected-timeout header", "exact.test", "/no-timeout"),
        get("upstream 500 passes through", "exact.test", "/status/500"),
        get("upstream 404 passes through", "exact.test", "/status/404"),
        get("upstream 503 passes through", "exact.test", "/status/503"),
        // Requests with a body and other methods.
        get("POST", "exact.test", "/p/post").method("POST"),
        get("HEAD to a backend", "exact.test", "/p/head").method("HEAD"),
        get("DELETE", "exact.test", "/p/delete").method("DELETE"),
        get("client XFF kept, XFP replaced", "exact.test", "/p/xff").header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-proto", "https"),
        get("edge x-request-id replaced", "exact.test", "/p/rid").header("x-request-id", "my-request-id"),
        get("edge x-envoy-* stripped", "exact.test", "/p/internal").header("x-envoy-internal", "true")
            .header("x-envoy-expected-rq-timeout-ms", "5").header("x-envoy-original-path", "/forged")
            .header("x-envoy-upstream-rq-timeout-ms", "1"),
        get("edge cannot set timeouts", "exact.test", "/delay/300").header("x-envoy-upstream-rq-timeout-ms", "50"),
        get("hop-by-hop not forwarded", "exact.test", "/p/hop").only(&[Proto::H1]).header("connection", "x-test-hop")
            .header("x-test-hop", "1").header("proxy-connection", "keep-alive"),
        // L4.
        get("tcp_proxy passes HTTP through untouched", "tcp.test", "/through/tcp").listener("TCP").only(&[Proto::H1]),
    ]
}

/// Everything a user sees of one response, as comparable strings.
type Observed = BTreeMap<String, String>;

const ABSENT: &str = "<absent>";

fn is_uuid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts.iter().all(|p| {
            p.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        })
}

/// Reduces a response to the fields compared. Values that are legitimately
/// different per process (dates, request ids, timings, echo body lengths)
/// are reduced to their form.
fn observe(reply: &Reply) -> Observed {
    let mut seen = Observed::new();
    seen.insert("status".into(), reply.status.to_string());
    let echo: Option<EchoReply> = serde_json::from_slice(&reply.body).ok();
    for name in reply.headers.keys() {
        let values: Vec<&str> = reply
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("<binary>"))
            .collect();
        let value = match name.as_str() {
            "date" => continue,
            "content-length" if echo.is_some() => continue,
            "x-envoy-upstream-service-time" => {
                if values.iter().all(|v| v.parse::<u64>().is_ok()) {
                    "<number>".to_string()
                } else {
                    values.join(" | ")
                }
            }
            _ => values.join(" | "),
        };
        seen.insert(format!("response {name}"), value);
    }
    match echo {
        Some(echo) => {
            seen.insert("backend".into(), echo.backend.clone());
            seen.insert("upstream method".into(), echo.method.clone());
            seen.insert("upstream path".into(), echo.path.clone());
            seen.insert("upstream version".into(), echo.version.clone());
            let host = echo
                .headers
                .get("host")
                .cloned()
                .or(echo.authority.clone())
                .unwrap_or_else(|| ABSENT.into());
            seen.insert("upstream host".into(), host);
            let mut headers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (name, value) in &echo.header_list {
                headers.entry(name).or_default().push(value);
            }
            for (name, values) in headers {
                let value = match name {
                    "host" => continue,
                    "x-request-id" if values.len() == 1 && is_uuid(values[0]) => {
                        "<uuid>".to_string()
                    }
                    _ => values.join(" | "),
                };
                seen.insert(format!("upstream {name}"), value);
            }
        }
        None => {
            let mut body = reply.text();
            // Compare the connect-failure text up to the OS-specific detail.
            const DETAIL: &str = "transport failure reason:";
            if let Some(at) = body.find(DETAIL) {
                body.truncate(at + DETAIL.len());
                body.push_str(" …");
            }
            seen.insert("body".into(), body);
        }
    }
    seen
}

async fn send(address: SocketAddr, case: &Case, proto: Proto) -> Reply {
    let mut builder = hyper::Request::builder().method(case.method);
    builder = match proto {
        Proto::H1 => builder.uri(case.path).header("host", case.host),
        Proto::H2 => builder.uri(format!("http://{}{}", case.host, case.path)),
    };
    for (name, value) in &case.headers {
        builder = builder.header(*name, *value);
    }
    let body = if case.method == "POST" {
        Bytes::from_static(b"a request body")
    } else {
        Bytes::new()
    };
    let request = builder.body(Full::new(body)).unwrap();
    support::request(address, request, proto == Proto::H2).await
}

/// Compares one case's observations and appends every problem to `report`.
fn compare(
    case: &Case,
    proto: Proto,
    envoy: &Observed,
    sluice: &Observed,
    report: &mut Vec<String>,
) {
    let label = format!(
        "[{}] {} {}{} ({})",
        proto.name(),
        case.method,
        case.host,
        case.path,
        case.name
    );
    let mut fields: Vec<&String> = envoy.keys().chain(sluice.keys()).collect();
    fields.sort();
    fields.dedup();
    for field in fields {
        let e = envoy.get(field).map(String::as_str);
        let s = sluice.get(field).map(String::as_str);
        let known = case
            .known
            .iter()
            .find(|k| k.field == field && k.proto.is_none_or(|p| p == proto));
        match known {
            None if e != s => report.push(format!(
                "{label}: {field}: envoy {} / sluice {}",
                e.unwrap_or(ABSENT),
                s.unwrap_or(ABSENT)
            )),
            None => {}
            Some(k) if e == s => report.push(format!(
                "{label}: {field}: known difference ({}) is gone, both give {}; remove it from the table",
                k.reason,
                s.unwrap_or(ABSENT)
            )),
            Some(k) if s != k.sluice => report.push(format!(
                "{label}: {field}: known difference ({}) changed: sluice now {} (table says {}), envoy {}",
                k.reason,
                s.unwrap_or(ABSENT),
                k.sluice.unwrap_or(ABSENT),
                e.unwrap_or(ABSENT)
            )),
            Some(_) => {}
        }
    }
    for k in &case.known {
        if k.proto.is_none_or(|p| p == proto)
            && !envoy.contains_key(k.field)
            && !sluice.contains_key(k.field)
        {
            report.push(format!(
                "{label}: known difference on {} matches no field",
                k.field
            ));
        }
    }
}

/// Stats both proxies keep, compared after the table's requests.
const STATS: &[&str] = &[
    "http.diff.downstream_rq_2xx",
    "http.diff.downstream_rq_3xx",
    "http.diff.downstream_rq_4xx",
    "http.diff.downstream_rq_5xx",
    "http.diff.downstream_rq_total",
    "cluster.alpha.upstream_rq_total",
    "cluster.beta.upstream_rq_total",
    "cluster.gamma.upstream_rq_total",
    "cluster.dead.upstream_rq_total",
    "cluster.dead.upstream_cx_connect_fail",
    "cluster.alpha.upstream_rq_timeout",
    "cluster.empty.upstream_cx_none_healthy",
    "cluster.alpha.upstream_rq_200",
    "cluster.alpha.upstream_rq_5xx",
    "tcp.diff_tcp.downstream_cx_total",
];

async fn stats(admin: SocketAddr) -> BTreeMap<&'static str, Option<i64>> {
    let text = support::get(admin, "admin", "/stats").await.text();
    STATS
        .iter()
        .map(|name| (*name, support::envoy::parse_stat(&text, name)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_requests_same_answers_as_envoy() {
    let Some(envoy_bin) = envoy_binary_or_skip() else {
        return;
    };
    let alpha = Backend::start("alpha").await;
    let beta = Backend::start("beta").await;
    let gamma = Backend::start("gamma").await;
    let dead = support::free_port();
    let ports = [
        ("ALPHA", alpha.port()),
        ("BETA", beta.port()),
        ("GAMMA", gamma.port()),
        ("DEAD", dead),
    ];
    let envoy = Envoy::start(&envoy_bin, ROUTING, &ports).await;
    let sluice = Sluice::start(ROUTING, &ports).await;

    let mut report = Vec::new();
    let mut compared = 0;
    for case in cases() {
        for &proto in case.protos {
            let from_envoy = observe(&send(envoy.addr(case.listener), &case, proto).await);
            let from_sluice = observe(&send(sluice.addr(case.listener), &case, proto).await);
            compare(&case, proto, &from_envoy, &from_sluice, &mut report);
            compared += 1;
        }
    }

    // Counters settle when each stream completes; poll (bounded) until they
    // agree, then report what still differs.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (from_envoy, from_sluice) = loop {
        let e = stats(envoy.admin).await;
        let s = stats(sluice.admin).await;
        if e == s || Instant::now() > deadline {
            break (e, s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for name in STATS {
        let (e, s) = (from_envoy[name], from_sluice[name]);
        if e != s {
            report.push(format!("stat {name}: envoy {e:?} / sluice {s:?}"));
        }
    }
    assert!(
        report.is_empty(),
        "{} differences from Envoy over {compared} exchanges:\n  {}",
        report.len(),
        report.join("\n  ")
    );
}

/// A listener with one HTTP connection manager whose route config is
/// `routes` (YAML, indented for `virtual_hosts[0]`), plus cluster `a`.
fn http_config(vhosts: &str, clusters: &str) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: http
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 10000 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: v
          route_config:
            virtual_hosts:
{vhosts}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: a
    connect_timeout: 1s
    load_assignment:
      cluster_name: a
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 10001 }} }} }} }}] }}]
{clusters}"#
    )
}

/// A single virtual host `*` with the given routes.
fn routes(routes: &str) -> String {
    http_config(
        &format!("            - name: all\n              domains: [\"*\"]\n              routes:\n{routes}"),
        "",
    )
}

fn cluster(extra: &str) -> String {
    http_config(
        "            - { name: all, domains: [\"*\"], routes: [{ match: { prefix: \"/\" }, route: { cluster: a } }] }",
        extra,
    )
}

/// [`cluster`]'s config plus a `tcp_proxy` listener `name` on `port` to `cluster`.
fn with_tcp_listener(name: &str, port: u16, cluster_name: &str) -> String {
    cluster("").replace(
        "  clusters:",
        &format!(
            "  - name: {name}\n    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}\n    \
             filter_chains: [{{ filters: [{{ name: envoy.filters.network.tcp_proxy, typed_config: {{ \
             \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, \
             stat_prefix: t, cluster: {cluster_name} }} }}] }}]\n  clusters:"
        ),
    )
}

/// `(name, config, valid)`: Envoy's verdict is `valid`, and Sluice's must
/// match, except for the names in [`VALIDATE_KNOWN`].
fn validate_cases() -> Vec<(&'static str, String, bool)> {
    let r = |m: &str| format!("              - {m}\n");
    vec![
        ("minimal http listener", routes(&r("{ match: { prefix: \"/\" }, route: { cluster: a } }")), true),
        ("differential routing config", support::proxy::render(ROUTING, &mut Default::default()), true),
        ("admin only", "admin:\n  address: { socket_address: { address: 127.0.0.1, port_value: 9901 } }\n".into(), true),
        ("route to unknown cluster", routes(&r("{ match: { prefix: \"/\" }, route: { cluster: nope } }")), false),
        ("invalid regex", routes(&r("{ match: { safe_regex: { regex: \"(\" } }, route: { cluster: a } }")), false),
        ("path and prefix both", routes(&r("{ match: { prefix: \"/\", path: \"/x\" }, route: { cluster: a } }")), false),
        ("weights all zero", routes(&r("{ match: { prefix: \"/\" }, route: { weighted_clusters: { clusters: [{ name: a, weight: 0 }] } } }")), false),
        ("direct response status 99", routes(&r("{ match: { prefix: \"/\" }, direct_response: { status: 99 } }")), false),
        ("negative route timeout", routes(&r("{ match: { prefix: \"/\" }, route: { cluster: a, timeout: -1s } }")), false),
        ("adding a pseudo-header", routes(&r("{ match: { prefix: \"/\" }, route: { cluster: a }, request_headers_to_add: [{ header: { key: \":path\", value: x } }] }")), false),
        ("redirect with regex_rewrite", routes(&r("{ match: { prefix: \"/\" }, redirect: { regex_rewrite: { pattern: { regex: \"^/(.*)$\" }, substitution: \"/x/\\\\1\" } } }")), true),
        ("duplicate domain", http_config(
            "            - { name: one, domains: [\"a.test\"], routes: [] }\n            - { name: two, domains: [\"a.test\"], routes: [] }",
            "",
        ), false),
        ("duplicate * domain", http_config(
            "            - { name: one, domains: [\"*\"], routes: [] }\n            - { name: two, domains: [\"*\"], routes: [] }",
            "",
        ), false),
        ("invalid duration", cluster("  - { name: b, connect_timeout: 5x, load_assignment: { cluster_name: b } }\n"), false),
        ("unknown field", cluster("  - { name: b, conect_timeout: 1s, load_assignment: { cluster_name: b } }\n"), false),
        ("duplicate cluster name", cluster("  - { name: a, connect_timeout: 1s, load_assignment: { cluster_name: a } }\n"), false),
        ("unknown lb_policy", cluster("  - { name: b, lb_policy: SOMETIMES, load_assignment: { cluster_name: b } }\n"), false),
        ("port out of range", cluster("  - name: b\n    load_assignment:\n      cluster_name: b\n      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 70000 } } } }] }]\n"), false),
        ("cluster without name", cluster("  - { connect_timeout: 1s }\n"), false),
        ("strict_dns cluster", cluster("  - name: b\n    type: STRICT_DNS\n    load_assignment:\n      cluster_name: b\n      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: localhost, port_value: 80 } } } }] }]\n"), true),
        ("unknown typed_config type", cluster("").replace(
            "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            "type.googleapis.com/envoy.extensions.filters.http.nope.v3.Nope",
        ), false),
        ("empty stat_prefix", cluster("").replace("stat_prefix: v", "stat_prefix: \"\""), false),
        ("duplicate listener name", with_tcp_listener("http", 10002, "a"), true),
        ("duplicate listener address", with_tcp_listener("tcp", 10000, "a"), false),
        ("tcp_proxy to an unknown cluster", with_tcp_listener("tcp", 10002, "later"), true),
    ]
}

/// Configs where Sluice's verdict knowingly differs from Envoy's, and why.
const VALIDATE_KNOWN: &[(&str, &str)] = &[(
    "duplicate listener name",
    "Envoy silently ignores the second static listener of a name (it never \
     listens on its port); Sluice rejects the config and names the duplicate",
)];

fn sluice_validate(config: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, config).unwrap();
    Command::new(support::proxy::binary())
        .args(["--mode", "validate", "-c"])
        .arg(&path)
        .output()
        .expect("run sluice --mode validate")
}

#[test]
fn validate_verdicts_match_envoy() {
    let Some(envoy_bin) = envoy_binary_or_skip() else {
        return;
    };
    let mut configs = validate_cases();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    for entry in std::fs::read_dir(&examples).expect("config/ folder") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name: &'static str = path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
                .leak();
            configs.push((name, std::fs::read_to_string(&path).unwrap(), true));
        }
    }
    let mut report = Vec::new();
    for (name, config, valid) in &configs {
        let envoy = envoy_validate(&envoy_bin, config);
        let sluice = sluice_validate(config);
        let (e, s) = (envoy.status.success(), sluice.status.success());
        let verdict = |ok: bool| if ok { "accepts" } else { "rejects" };
        if e != *valid {
            report.push(format!(
                "{name}: envoy {} (the table expects {}):\n{}",
                verdict(e),
                verdict(*valid),
                String::from_utf8_lossy(&envoy.stderr).trim()
            ));
        }
        let known = VALIDATE_KNOWN.iter().find(|(known, _)| known == name);
        if let Some((_, reason)) = known {
            if s == e {
                report.push(format!(
                    "{name}: known difference ({reason}) is gone, both {}; remove it from VALIDATE_KNOWN",
                    verdict(s)
                ));
            }
        } else if s != e {
            report.push(format!(
                "{name}: envoy {}, sluice {}:\n    envoy: {}\n    sluice: {}",
                verdict(e),
                verdict(s),
                last_line(&envoy.stderr),
                String::from_utf8_lossy(&sluice.stderr).trim()
            ));
        }
    }
    assert!(
        report.is_empty(),
        "{} validate verdicts differ:\n  {}",
        report.len(),
        report.join("\n  ")
    );
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}
