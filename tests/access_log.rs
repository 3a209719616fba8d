//! Access logs, black-box: file loggers (`envoy.access_loggers.file`) in the
//! test's temporary directory with Envoy's default format, a custom
//! `text_format_source` (headers, response code and flags UH/UF/NR, upstream
//! host, downstream address), `json_format` with typed values, a tcp_proxy
//! log line per connection, and an unopenable log path failing the config.
//! Writes are asynchronous, so every read polls the file with a deadline.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use regex::Regex;
use serde_json::Value;
use support::{get, raw_exchange, run_until_exit, Backend, Sluice};

const CONFIG: &str = r#"
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: ${ADMIN} } }
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
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: "@DIR@/default.log"
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: "@DIR@/custom.log"
              log_format:
                text_format_source:
                  inline_string: "%REQ(X-TEST)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_HOST% %DOWNSTREAM_REMOTE_ADDRESS%\n"
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: "@DIR@/json.log"
              log_format:
                json_format:
                  code: "%RESPONSE_CODE%"
                  bytes_sent: "%BYTES_SENT%"
                  bytes_received: "%BYTES_RECEIVED%"
                  duration: "%DURATION%"
                  method: "%REQ(:METHOD)%"
                  path: "%REQ(:PATH)%"
                  protocol: "%PROTOCOL%"
                  flags: "%RESPONSE_FLAGS%"
                  upstream: "%UPSTREAM_HOST%"
                  test: "%REQ(X-TEST)%"
                  start: "%START_TIME%"
                  fixed: "literal"
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/empty" }
                route: { cluster: empty }
              - match: { prefix: "/dead" }
                route: { cluster: dead }
              - match: { prefix: "/svc" }
                route: { cluster: svc }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  - name: tcp
    address: { socket_address: { address: 127.0.0.1, port_value: ${TCP} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: svc
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: "@DIR@/tcp.log"
  clusters:
  - name: svc
    connect_timeout: 1s
    load_assignment:
      cluster_name: svc
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${SVC} } } } }] }]
  - name: dead
    connect_timeout: 1s
    load_assignment:
      cluster_name: dead
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${DEAD} } } } }] }]
  - name: empty
    connect_timeout: 1s
    load_assignment: { cluster_name: empty }
"#;

struct World {
    sluice: Sluice,
    svc: Backend,
    dead: u16,
    logs: tempfile::TempDir,
}

impl World {
    fn log_path(&self, name: &str) -> PathBuf {
        self.logs.path().join(name)
    }
}

async fn world() -> World {
    let svc = Backend::start("svc").await;
    let dead = support::free_port();
    let logs = tempfile::tempdir().unwrap();
    let config = CONFIG.replace("@DIR@", logs.path().to_str().unwrap());
    let sluice = Sluice::start(&config, &[("SVC", svc.port()), ("DEAD", dead)]).await;
    World {
        sluice,
        svc,
        dead,
        logs,
    }
}

/// Polls `path` (bounded, 10 s) until it has at least `count` lines; returns
/// the lines (panics with what it has otherwise).
async fn wait_lines(path: &Path, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // A line counts once its newline is written.
        let complete = text.rfind('\n').map(|end| &text[..end]).unwrap_or("");
        let lines: Vec<String> = if complete.is_empty() && !text.ends_with('\n') {
            Vec::new()
        } else {
            complete.split('\n').map(str::to_string).collect()
        };
        if lines.len() >= count {
            return lines;
        }
        if Instant::now() >= deadline {
            panic!(
                "{} has {} lines, expected {count}:\n{text}",
                path.display(),
                lines.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get_with_test_header(world: &World, path: &str, value: &str) -> support::Reply {
    let request = hyper::Request::get(path)
        .header("host", "logs.test")
        .header("x-test", value)
        .body(Full::new(Bytes::new()))
        .unwrap();
    support::request(world.sluice.addr("HTTP"), request, false).await
}

#[tokio::test]
async fn default_format_writes_one_envoy_line_per_request() {
    let w = world().await;
    let reply = get(w.sluice.addr("HTTP"), "logs.test", "/svc/a?b=c").await;
    assert_eq!(reply.status, 200);
    let request_id = reply.echo().headers["x-request-id"].clone();
    let reply2 = get(w.sluice.addr("HTTP"), "logs.test", "/svc/second").await;
    assert_eq!(reply2.status, 200);

    let lines = wait_lines(&w.log_path("default.log"), 2).await;
    assert_eq!(lines.len(), 2, "one line per request: {lines:#?}");
    // [START_TIME] "METHOD PATH PROTOCOL" CODE FLAGS RX TX DURATION
    // UPSTREAM-SERVICE-TIME "XFF" "USER-AGENT" "REQUEST-ID" "AUTHORITY" "UPSTREAM_HOST"
    let pattern = Regex::new(
        r#"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\] "GET (\S+) HTTP/1\.1" (\d{3}) (\S+) (\d+) (\d+) (\d+) (\d+|-) "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)"$"#,
    )
    .unwrap();
    for line in &lines {
        assert!(
            pattern.is_match(line),
            "not Envoy's default format: {line:?}"
        );
    }
    // Requests on different workers may be logged in either order.
    let first = lines
        .iter()
        .find(|l| l.contains("/svc/a?b=c"))
        .expect("a line for the first request");
    let caps = pattern.captures(first).unwrap();
    assert_eq!(&caps[2], "/svc/a?b=c");
    assert_eq!(&caps[3], "200");
    assert_eq!(&caps[4], "-", "no response flags");
    assert_eq!(&caps[5], "0", "no request body");
    assert_eq!(
        caps[6].parse::<usize>().unwrap(),
        reply.body.len(),
        "bytes sent"
    );
    assert_ne!(&caps[8], "-", "x-envoy-upstream-service-time is set");
    assert_eq!(&caps[9], "-", "no x-forwarded-for");
    assert_eq!(&caps[10], "-", "no user-agent");
    assert_eq!(&caps[11], request_id, "the id the backend saw");
    assert_eq!(&caps[12], "logs.test");
    assert_eq!(&caps[13], format!("127.0.0.1:{}", w.svc.port()));
    assert!(lines
        .iter()
        .any(|l| l.contains("\"GET /svc/second HTTP/1.1\" 200")));
}

#[tokio::test]
async fn custom_text_format_gives_fields_and_failure_flags() {
    let w = world().await;
    assert_eq!(
        get_with_test_header(&w, "/svc/ok", "hello").await.status,
        200
    );
    let reply = get_with_test_header(&w, "/empty", "uh").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.text(), "no healthy upstream");
    assert_eq!(get_with_test_header(&w, "/dead", "uf").await.status, 503);
    assert_eq!(
        get_with_test_header(&w, "/no-route", "nr").await.status,
        404
    );
    assert_eq!(
        get(w.sluice.addr("HTTP"), "x", "/svc/no-header")
            .await
            .status,
        200
    );

    let lines = wait_lines(&w.log_path("custom.log"), 5).await;
    assert_eq!(lines.len(), 5, "{lines:#?}");
    let client = r"127\.0\.0\.1:\d+";
    let expected = [
        format!(r"hello 200 - 127\.0\.0\.1:{} {client}", w.svc.port()),
        format!(r"uh 503 UH - {client}"),
        format!(r"uf 503 UF 127\.0\.0\.1:{} {client}", w.dead),
        format!(r"nr 404 NR - {client}"),
        format!(r"- 200 - 127\.0\.0\.1:{} {client}", w.svc.port()),
    ];
    // Requests on different workers may be logged in either order.
    for pattern in expected {
        let re = Regex::new(&format!("^{pattern}$")).unwrap();
        let matching = lines.iter().filter(|l| re.is_match(l)).count();
        assert_eq!(matching, 1, "one line like {pattern:?} in {lines:#?}");
    }
}

#[tokio::test]
async fn json_format_is_parseable_with_typed_values() {
    let w = world().await;
    let reply = get_with_test_header(&w, "/svc/json", "j").await;
    assert_eq!(reply.status, 200);
    assert_eq!(get(w.sluice.addr("HTTP"), "x", "/dead").await.status, 503);

    let lines = wait_lines(&w.log_path("json.log"), 2).await;
    let entries: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let by_path = |path: &str| {
        entries
            .iter()
            .find(|e| e["path"] == path)
            .unwrap_or_else(|| panic!("no entry for {path}: {entries:#?}"))
            .clone()
    };
    let ok = by_path("/svc/json");
    assert_eq!(ok["code"], 200, "numbers stay numbers: {ok}");
    assert_eq!(ok["bytes_sent"], reply.body.len() as u64, "{ok}");
    assert_eq!(ok["bytes_received"], 0, "{ok}");
    assert!(ok["duration"].is_u64(), "{ok}");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/svc/json");
    assert_eq!(ok["protocol"], "HTTP/1.1");
    assert_eq!(ok["upstream"], format!("127.0.0.1:{}", w.svc.port()));
    assert_eq!(ok["test"], "j");
    assert_eq!(ok["fixed"], "literal");
    assert_eq!(ok["flags"], "-", "Envoy prints \"-\" for no flags: {ok}");
    assert!(ok["start"]
        .as_str()
        .is_some_and(|s| s.len() == 24 && s.ends_with('Z')));

    let failed = by_path("/dead");
    assert_eq!(failed["code"], 503);
    assert_eq!(failed["flags"], "UF");
    assert_eq!(failed["test"], Value::Null, "a missing header is null");
    assert_eq!(failed["upstream"], format!("127.0.0.1:{}", w.dead));
}

#[tokio::test]
async fn tcp_proxy_logs_one_line_per_connection_with_bytes() {
    let w = world().await;
    let tcp = w.sluice.addr("TCP");
    let mut sent = Vec::new();
    let mut answers = Vec::new();
    for path in ["/one", "/second"] {
        let request = format!("GET {path} HTTP/1.1\r\nhost: tcp.test\r\nconnection: close\r\n\r\n");
        let answer = raw_exchange(tcp, request.as_bytes(), Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        sent.push(request.len());
        answers.push(answer.len());
    }
    let lines = wait_lines(&w.log_path("tcp.log"), 2).await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let pattern = Regex::new(
        r#"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "- - -" 0 - (\d+) (\d+) (\d+) - "-" "-" "-" "-" "([^"]+)"$"#,
    )
    .unwrap();
    let mut logged = Vec::new();
    for line in &lines {
        let caps = pattern
            .captures(line)
            .unwrap_or_else(|| panic!("not Envoy's tcp default format: {line:?}"));
        assert_eq!(&caps[4], format!("127.0.0.1:{}", w.svc.port()));
        let received: usize = caps[1].parse().unwrap();
        let sent: usize = caps[2].parse().unwrap();
        logged.push((received, sent));
    }
    // (bytes received, bytes sent) per connection, in either order.
    let mut expected: Vec<(usize, usize)> = sent.into_iter().zip(answers).collect();
    expected.sort();
    logged.sort();
    assert_eq!(logged, expected, "{lines:#?}");
}

#[test]
fn unopenable_log_path_fails_the_config_naming_it() {
    let logs = tempfile::tempdir().unwrap();
    let missing = logs.path().join("no-such-dir").join("access.log");
    let config = format!(
        r#"
static_resources:
  listeners:
  - name: tcp
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: svc
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: "{path}"
  clusters:
  - name: svc
    connect_timeout: 1s
    load_assignment:
      cluster_name: svc
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 9 }} }} }} }}] }}]
"#,
        port = support::free_port(),
        path = missing.display()
    );
    let exited = run_until_exit(&config, &[], Duration::from_secs(15));
    assert_eq!(exited.status.code(), Some(1), "{exited:?}");
    let stderr = &exited.stderr;
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("access_log[0].typed_config.path"),
        "{stderr}"
    );
    assert!(stderr.contains("No such file or directory"), "{stderr}");
}
