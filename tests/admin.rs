//! The admin API, black-box, on Envoy's paths, methods and shapes: `/ready`,
//! `/server_info`, `/stats` (text, `filter`, `format=json`) with Envoy's stat
//! names and values after real traffic, `/stats/prometheus` (parsed),
//! `/clusters`, `/listeners`, `/config_dump`, the POST-only commands,
//! `/runtime_modify`, `/logging`, unknown paths, a config without `admin:`,
//! and two instances side by side with different `--base-id`.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::{get, Backend, Sluice};

const CONFIG: &str = r#"
node: { id: node-from-config, cluster: edge }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: ${ADMIN} } }
layered_runtime:
  layers:
  - name: static
    static_layer: { from.config: "on" }
  - name: admin
    admin_layer: {}
static_resources:
  listeners:
  - name: ingress
    address: { socket_address: { address: 127.0.0.1, port_value: ${HTTP} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            name: main-routes
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/dead" }
                route: { cluster: dead }
              - match: { prefix: "/pair" }
                route: { cluster: pair }
              - match: { prefix: "/" }
                route: { cluster: svc }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: svc
    connect_timeout: 1s
    load_assignment:
      cluster_name: svc
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${SVC} } } } }] }]
  - name: pair
    connect_timeout: 1s
    load_assignment:
      cluster_name: pair
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${SVC} } } }
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${OTHER} } } }
  - name: dead
    connect_timeout: 1s
    load_assignment:
      cluster_name: dead
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${DEAD} } } } }] }]
"#;

struct World {
    sluice: Sluice,
    svc: Backend,
    _other: Backend,
}

async fn world_with_args(args: &[&str]) -> World {
    let svc = Backend::start("svc").await;
    let other = Backend::start("other").await;
    let dead = support::free_port();
    let sluice = Sluice::start_with_args(
        CONFIG,
        &[("SVC", svc.port()), ("OTHER", other.port()), ("DEAD", dead)],
        args,
    )
    .await;
    World {
        sluice,
        svc,
        _other: other,
    }
}

async fn world() -> World {
    world_with_args(&[]).await
}

/// Three 200s and one 404 through `svc`, each on a fresh connection.
async fn send_traffic(w: &World) {
    let http = w.sluice.addr("HTTP");
    for _ in 0..3 {
        assert_eq!(get(http, "x", "/ok").await.status, 200);
    }
    assert_eq!(get(http, "x", "/status/404").await.status, 404);
}

fn json(reply: &support::Reply) -> Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.text()))
}

#[tokio::test]
async fn ready_says_live() {
    let w = world().await;
    let reply = w.sluice.admin_get("/ready").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "LIVE\n");
    assert!(reply
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
}

#[tokio::test]
async fn server_info_has_envoys_shape() {
    let w = world().await;
    let reply = w.sluice.admin_get("/server_info").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let info = json(&reply);
    assert_eq!(info["state"], "LIVE");
    assert_eq!(info["command_line_options"]["concurrency"], 2);
    assert_eq!(info["command_line_options"]["drain_time"], "2s");
    assert_eq!(info["node"]["id"], "node-from-config");
    assert_eq!(info["node"]["cluster"], "edge");
    assert!(info["uptime_current_epoch"]
        .as_str()
        .is_some_and(|u| u.ends_with('s')));
    // Envoy's version is `<revision>/<version>/<status>/<build type>/<ssl>`,
    // which tools split on '/'.
    let version = info["version"].as_str().expect("version is a string");
    let fields: Vec<&str> = version.split('/').collect();
    assert_eq!(fields.len(), 5, "version {version:?}");
    assert_eq!(fields[1], env!("CARGO_PKG_VERSION"), "version {version:?}");
    assert!(
        !fields[0].is_empty() && !fields[0].contains(char::is_whitespace),
        "the revision field is one token, got {version:?}"
    );
    assert_eq!(&fields[2..4], ["Clean", "RELEASE"], "version {version:?}");
}

#[tokio::test]
async fn service_node_flag_overrides_the_config_node_id() {
    let w = world_with_args(&["--service-node", "node-from-flag"]).await;
    let info = json(&w.sluice.admin_get("/server_info").await);
    assert_eq!(info["node"]["id"], "node-from-flag");
    assert_eq!(info["node"]["cluster"], "edge", "other node fields stay");
    assert_eq!(
        info["command_line_options"]["service_node"],
        "node-from-flag"
    );
}

#[tokio::test]
async fn stats_after_traffic_have_envoys_names_and_values() {
    let w = world().await;
    send_traffic(&w).await;
    let s = &w.sluice;
    let port = s.port("HTTP");
    let expected = [
        ("http.ingress.downstream_rq_total", 4),
        ("http.ingress.downstream_rq_2xx", 3),
        ("http.ingress.downstream_rq_4xx", 1),
        ("http.ingress.downstream_rq_5xx", 0),
        ("cluster.svc.upstream_rq_total", 4),
        ("cluster.svc.upstream_rq_200", 3),
        ("cluster.svc.upstream_rq_404", 1),
        ("cluster.svc.upstream_rq_2xx", 3),
        ("cluster.svc.upstream_rq_4xx", 1),
        ("cluster.svc.membership_healthy", 1),
        ("cluster.svc.membership_total", 1),
        ("cluster.pair.membership_healthy", 2),
        ("cluster.pair.membership_total", 2),
        ("cluster.pair.upstream_rq_total", 0),
        ("server.live", 1),
        ("server.concurrency", 2),
    ];
    for (name, value) in expected {
        assert_eq!(s.wait_stat(name, value).await, Some(value), "{name}");
    }
    let listener = format!("listener.127.0.0.1_{port}.downstream_cx_total");
    assert_eq!(s.wait_stat(&listener, 4).await, Some(4), "{listener}");
    // Upstream connections are pooled: whatever the pools opened, the
    // stat is what the backend accepted.
    let opened = w.svc.connections.load(std::sync::atomic::Ordering::SeqCst) as i64;
    assert!(
        (1..=4).contains(&opened),
        "backend saw {opened} connections"
    );
    assert_eq!(s.stat("cluster.svc.upstream_cx_total").await, Some(opened));
}

#[tokio::test]
async fn failed_connect_is_not_an_upstream_request() {
    let w = world().await;
    let reply = get(w.sluice.addr("HTTP"), "x", "/dead").await;
    assert_eq!(reply.status, 503);
    let s = &w.sluice;
    assert_eq!(
        s.wait_stat("cluster.dead.upstream_cx_connect_fail", 1)
            .await,
        Some(1)
    );
    assert_eq!(
        s.wait_stat("cluster.dead.upstream_rq_503", 1).await,
        Some(1)
    );
    // Envoy counts upstream_rq_total when a request is attached to an
    // upstream connection; this one never was.
    assert_eq!(s.stat("cluster.dead.upstream_rq_total").await, Some(0));
}

#[tokio::test]
async fn stats_filter_selects_by_regex_and_rejects_bad_regex() {
    let w = world().await;
    send_traffic(&w).await;
    let reply = w
        .sluice
        .admin_get("/stats?filter=%5Ecluster%5C.svc%5C.upstream_rq_")
        .await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(line.starts_with("cluster.svc.upstream_rq_"), "{line}");
    }
    assert!(
        lines.contains(&"cluster.svc.upstream_rq_total: 4"),
        "{text}"
    );
    assert!(!text.contains("cluster.pair."));

    let reply = w.sluice.admin_get("/stats?filter=%28").await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply.text().contains("Invalid re2 regex"),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn stats_json_has_envoys_shape() {
    let w = world().await;
    send_traffic(&w).await;
    w.sluice.wait_stat("cluster.svc.upstream_rq_total", 4).await;
    let reply = w.sluice.admin_get("/stats?format=json").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = json(&reply);
    let stats = body["stats"].as_array().expect("stats is an array");
    let value_of = |name: &str| {
        stats
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["value"].clone())
    };
    assert_eq!(value_of("cluster.svc.upstream_rq_total"), Some(4.into()));
    assert_eq!(value_of("server.concurrency"), Some(2.into()));
    let histograms = stats
        .iter()
        .find_map(|s| s.get("histograms"))
        .expect("a histograms entry");
    let supported = histograms["supported_quantiles"].as_array().unwrap();
    assert_eq!(supported.first(), Some(&Value::from(0)));
    assert_eq!(supported.last(), Some(&Value::from(100)));
    let computed = histograms["computed_quantiles"].as_array().unwrap();
    let rq_time = computed
        .iter()
        .find(|h| h["name"] == "cluster.svc.upstream_rq_time")
        .expect("cluster.svc.upstream_rq_time in computed_quantiles");
    let values = rq_time["values"].as_array().unwrap();
    assert_eq!(values.len(), supported.len());
    assert!(values[values.len() - 1]["cumulative"].is_number());
}

#[tokio::test]
async fn prometheus_exposition_parses_with_envoys_names() {
    use prometheus_parse::{Scrape, Value as PromValue};
    let w = world().await;
    send_traffic(&w).await;
    w.sluice.wait_stat("cluster.svc.upstream_rq_total", 4).await;
    let reply = w.sluice.admin_get("/stats/prometheus").await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    assert!(text.contains("# TYPE envoy_cluster_upstream_rq_total counter\n"));
    assert!(text.contains("# TYPE envoy_server_live gauge\n"));
    assert!(text.contains("# TYPE envoy_cluster_upstream_rq_time histogram\n"));
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let find = |metric: &str, cluster: Option<&str>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get("envoy_cluster_name") == cluster)
            .unwrap_or_else(|| panic!("{metric} {cluster:?} missing:\n{text}"))
    };
    assert_eq!(
        find("envoy_cluster_upstream_rq_total", Some("svc")).value,
        PromValue::Counter(4.0)
    );
    assert_eq!(
        find("envoy_cluster_upstream_rq_total", Some("pair")).value,
        PromValue::Counter(0.0)
    );
    assert_eq!(
        find("envoy_http_downstream_rq_xx", None)
            .labels
            .get("envoy_http_conn_manager_prefix"),
        Some("ingress")
    );
    assert_eq!(find("envoy_server_live", None).value, PromValue::Gauge(1.0));
    assert_eq!(
        find("envoy_server_concurrency", None).value,
        PromValue::Gauge(2.0)
    );
    let PromValue::Histogram(buckets) = &find("envoy_cluster_upstream_rq_time", Some("svc")).value
    else {
        panic!("upstream_rq_time is not a histogram");
    };
    assert!(buckets.len() > 10, "Envoy's bucket bounds: {buckets:?}");
    assert_eq!(buckets.first().map(|b| b.less_than), Some(0.5));
    let last = buckets.last().unwrap();
    assert!(last.less_than.is_infinite());
    assert_eq!(last.count, 4.0, "every request is in the +Inf bucket");
    assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
    let count = find("envoy_cluster_upstream_rq_time_count", Some("svc"));
    assert_eq!(count.value, PromValue::Untyped(4.0));
}

#[tokio::test]
async fn clusters_lists_hosts_with_stats_and_health() {
    let w = world().await;
    send_traffic(&w).await;
    w.sluice.wait_stat("cluster.svc.upstream_rq_total", 4).await;
    let host = format!("svc::127.0.0.1:{}", w.svc.port());
    let reply = w.sluice.admin_get("/clusters").await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    let lines: BTreeSet<&str> = text.lines().collect();
    for line in [
        format!("{host}::rq_total::4"),
        format!("{host}::rq_success::4"),
        format!("{host}::health_flags::healthy"),
        format!("{host}::weight::1"),
        "svc::added_via_api::false".to_string(),
        "pair::observability_name::pair".to_string(),
    ] {
        assert!(lines.contains(line.as_str()), "missing {line}:\n{text}");
    }
    let dead_hosts = text
        .lines()
        .filter(|l| l.starts_with("dead::127.0.0.1:") && l.ends_with("::health_flags::healthy"))
        .count();
    assert_eq!(dead_hosts, 1, "{text}");

    let body = json(&w.sluice.admin_get("/clusters?format=json").await);
    let statuses = body["cluster_statuses"]
        .as_array()
        .expect("cluster_statuses");
    let svc = statuses
        .iter()
        .find(|c| c["name"] == "svc")
        .expect("svc status");
    let hosts = svc["host_statuses"].as_array().unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(
        hosts[0]["address"]["socket_address"]["port_value"],
        w.svc.port()
    );
    let rq_total = hosts[0]["stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "rq_total")
        .expect("rq_total host stat");
    // proto3 JSON prints uint64 as a string.
    assert_eq!(rq_total["value"], "4");
    let pair = statuses.iter().find(|c| c["name"] == "pair").unwrap();
    assert_eq!(pair["host_statuses"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn listeners_show_bound_addresses() {
    let w = world().await;
    let port = w.sluice.port("HTTP");
    let reply = w.sluice.admin_get("/listeners").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), format!("ingress::127.0.0.1:{port}\n"));
    let body = json(&w.sluice.admin_get("/listeners?format=json").await);
    let statuses = body["listener_statuses"].as_array().unwrap();
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0]["name"], "ingress");
    let address = &statuses[0]["local_address"]["socket_address"];
    assert_eq!(address["address"], "127.0.0.1");
    assert_eq!(address["port_value"], port);
}

#[tokio::test]
async fn config_dump_has_envoys_four_config_types() {
    let w = world().await;
    let reply = w.sluice.admin_get("/config_dump").await;
    assert_eq!(reply.status, 200);
    let dump = json(&reply);
    let configs = dump["configs"].as_array().expect("configs");
    let of_type = |name: &str| {
        let type_url = format!("type.googleapis.com/envoy.admin.v3.{name}");
        configs
            .iter()
            .find(|c| c["@type"] == type_url.as_str())
            .unwrap_or_else(|| panic!("no {name} in config_dump"))
    };
    let bootstrap = &of_type("BootstrapConfigDump")["bootstrap"];
    assert_eq!(bootstrap["node"]["id"], "node-from-config");
    let clusters = of_type("ClustersConfigDump")["static_clusters"]
        .as_array()
        .expect("static_clusters");
    let names: Vec<&str> = clusters
        .iter()
        .map(|c| c["cluster"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["svc", "pair", "dead"]);
    assert_eq!(clusters[0]["cluster"]["connect_timeout"], "1s");
    let listeners = of_type("ListenersConfigDump")["static_listeners"]
        .as_array()
        .unwrap();
    assert_eq!(listeners[0]["listener"]["name"], "ingress");
    let routes = of_type("RoutesConfigDump")["static_route_configs"]
        .as_array()
        .unwrap();
    assert_eq!(routes[0]["route_config"]["name"], "main-routes");

    let reply = w
        .sluice
        .admin_get("/config_dump?resource=static_clusters")
        .await;
    assert_eq!(reply.status, 200);
    let dump = json(&reply);
    let configs = dump["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 3);
    for config in configs {
        assert_eq!(
            config["@type"],
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.StaticCluster"
        );
    }
    assert_eq!(configs[2]["cluster"]["name"], "dead");

    let reply = w.sluice.admin_get("/config_dump?resource=bogus").await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn mutating_endpoints_refuse_get() {
    let w = world().await;
    for path in [
        "/quitquitquit",
        "/healthcheck/fail",
        "/healthcheck/ok",
        "/logging",
        "/drain_listeners",
        "/runtime_modify?a=b",
    ] {
        let reply = w.sluice.admin_get(path).await;
        assert_eq!(reply.status, 405, "GET {path}");
        assert_eq!(
            reply.text(),
            "Method GET not allowed, POST required.",
            "GET {path}"
        );
    }
    // None of them took effect.
    assert_eq!(w.sluice.admin_get("/ready").await.status, 200);
    assert_eq!(get(w.sluice.addr("HTTP"), "x", "/ok").await.status, 200);
    let runtime = json(&w.sluice.admin_get("/runtime").await);
    assert!(runtime["entries"].get("a").is_none(), "{runtime}");
}

#[tokio::test]
async fn runtime_modify_then_runtime_shows_the_value() {
    let w = world().await;
    let before = json(&w.sluice.admin_get("/runtime").await);
    assert_eq!(before["layers"], serde_json::json!(["static", "admin"]));
    assert_eq!(before["entries"]["from.config"]["final_value"], "on");

    let reply = w
        .sluice
        .admin_post("/runtime_modify?my.key=42&from.config=off")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let after = json(&w.sluice.admin_get("/runtime").await);
    let entry = &after["entries"]["my.key"];
    assert_eq!(entry["final_value"], "42");
    assert_eq!(entry["layer_values"], serde_json::json!(["", "42"]));
    let overridden = &after["entries"]["from.config"];
    assert_eq!(overridden["final_value"], "off");
    assert_eq!(overridden["layer_values"], serde_json::json!(["on", "off"]));
}

#[tokio::test]
async fn logging_level_change_shows_in_the_listing() {
    let w = world().await;
    let listing = w.sluice.admin_post("/logging").await;
    assert_eq!(listing.status, 200);
    let text = listing.text();
    assert!(text.starts_with("active loggers:\n"), "{text}");
    assert!(text.contains("  admin: info\n"), "{text}");

    let reply = w.sluice.admin_post("/logging?level=debug").await;
    assert_eq!(reply.status, 200);
    let text = w.sluice.admin_post("/logging").await.text();
    let levels: Vec<&str> = text
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.rsplit(": ").next().unwrap())
        .collect();
    assert!(!levels.is_empty());
    assert!(levels.iter().all(|l| *l == "debug"), "{text}");

    let reply = w.sluice.admin_post("/logging?admin=trace").await;
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("  admin: trace\n"));
    let reply = w.sluice.admin_post("/logging?level=loud").await;
    assert_eq!(reply.status, 400);
    assert!(reply.text().contains("unknown logger level"));
}

#[tokio::test]
async fn unknown_admin_path_is_404_with_help() {
    let w = world().await;
    let reply = w.sluice.admin_get("/no/such/thing").await;
    assert_eq!(reply.status, 404);
    assert!(reply
        .text()
        .starts_with("invalid path. admin commands are:\n"));
    assert!(reply.text().contains("  /stats: print server stats\n"));
}

const NO_ADMIN: &str = r#"
static_resources:
  listeners:
  - name: ingress
    address: { socket_address: { address: 127.0.0.1, port_value: ${HTTP} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: svc }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: svc
    connect_timeout: 1s
    load_assignment:
      cluster_name: svc
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${SVC} } } } }] }]
"#;

#[tokio::test]
async fn without_admin_config_there_is_no_admin_listener() {
    let svc = Backend::start("svc").await;
    let sluice =
        Sluice::start_waiting_for_port(NO_ADMIN, &[("SVC", svc.port())], &[], "HTTP").await;
    let reply = get(sluice.addr("HTTP"), "x", "/ok").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echo().backend, "svc");
    // The only sockets it listens on are the traffic listener's.
    assert_eq!(
        sluice.listening_ports(),
        BTreeSet::from([sluice.port("HTTP")]),
        "{}",
        sluice.log()
    );
    assert!(
        tokio::net::TcpStream::connect(sluice.admin).await.is_err(),
        "nothing on the reserved admin port"
    );
}

#[tokio::test]
async fn two_instances_with_different_base_ids_run_side_by_side() {
    let svc = Backend::start("svc").await;
    let other = Backend::start("other").await;
    let known = [
        ("SVC", svc.port()),
        ("OTHER", other.port()),
        ("DEAD", support::free_port()),
    ];
    let first = Sluice::start_with_args(CONFIG, &known, &["--base-id", "1"]).await;
    let second = Sluice::start_with_args(CONFIG, &known, &["--base-id", "2"]).await;
    for (sluice, base_id) in [(&first, "1"), (&second, "2")] {
        let reply = get(sluice.addr("HTTP"), "x", "/ok").await;
        assert_eq!(reply.status, 200);
        let info = json(&sluice.admin_get("/server_info").await);
        assert_eq!(info["command_line_options"]["base_id"], base_id);
        assert_eq!(info["state"], "LIVE");
        assert_eq!(
            sluice.wait_stat("cluster.svc.upstream_rq_total", 1).await,
            Some(1)
        );
    }
}
