//! End-to-end tests: a real admin server on 127.0.0.1:0 with a fake
//! [`AdminContext`], driven over TCP with raw HTTP/1.1 requests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::{serve, AdminContext, ListenerInfo, Runtime};
use crate::logging::{LogHandle, LogLevel};
use crate::stats::Store;

struct FakeServer {
    stats: Store,
    runtime: Runtime,
    log: LogHandle,
    ready: AtomicBool,
    health_check_failed: AtomicBool,
    drains: Mutex<Vec<(bool, bool)>>,
    quits: AtomicUsize,
    logged: Mutex<Vec<u16>>,
}

impl FakeServer {
    fn new() -> Self {
        let stats = Store::new();
        stats.counter("cluster.backend.upstream_rq_total").add(5);
        stats.counter("http.ingress_http.downstream_rq_2xx").add(3);
        stats.gauge("server.live").set(1);
        stats
            .histogram("cluster.backend.upstream_rq_time")
            .record(4.0);
        FakeServer {
            stats,
            runtime: Runtime::default(),
            log: LogHandle::detached(LogLevel::Info),
            ready: AtomicBool::new(true),
            health_check_failed: AtomicBool::new(false),
            drains: Mutex::new(Vec::new()),
            quits: AtomicUsize::new(0),
            logged: Mutex::new(Vec::new()),
        }
    }
}

impl AdminContext for FakeServer {
    fn stats(&self) -> &Store {
        &self.stats
    }
    fn server_info(&self) -> Value {
        let state = if self.ready.load(Ordering::SeqCst) {
            "LIVE"
        } else {
            "PRE_INITIALIZING"
        };
        json!({"version": "sluice/test", "state": state, "uptime_current_epoch": "1s"})
    }
    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
    fn clusters_text(&self) -> String {
        "backend::10.0.0.1:80::cx_active::0\n".to_string()
    }
    fn clusters_json(&self) -> Value {
        json!({"cluster_statuses": [{"name": "backend"}]})
    }
    fn listeners(&self) -> Vec<ListenerInfo> {
        vec![ListenerInfo {
            name: "ingress".to_string(),
            local_address: "0.0.0.0:10000".parse().unwrap(),
        }]
    }
    fn config_dump(&self, resource: Option<&str>, include_eds: bool) -> Result<Value, String> {
        match resource {
            None if include_eds => Ok(json!({"configs": [{"endpoints": true}]})),
            None => Ok(json!({"configs": []})),
            Some("dynamic_listeners") => Ok(json!({"configs": [{"name": "ingress"}]})),
            Some(other) => Err(format!("unknown resource {other}")),
        }
    }
    fn drain_listeners(&self, graceful: bool, inbound_only: bool) {
        self.drains.lock().unwrap().push((graceful, inbound_only));
    }
    fn set_health_check_failed(&self, failed: bool) {
        self.health_check_failed.store(failed, Ordering::SeqCst);
    }
    fn quit(&self) {
        self.quits.fetch_add(1, Ordering::SeqCst);
    }
    fn runtime(&self) -> &Runtime {
        &self.runtime
    }
    fn log_handle(&self) -> &LogHandle {
        &self.log
    }
    fn log_request(&self, info: &crate::stream_info::StreamInfo) {
        self.logged
            .lock()
            .unwrap()
            .push(info.response_code.unwrap_or(0));
    }
}

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
    fn content_type(&self) -> String {
        self.headers
            .lines()
            .find_map(|l| l.strip_prefix("content-type: "))
            .unwrap_or("")
            .to_string()
    }
}

async fn start() -> (
    SocketAddr,
    Arc<FakeServer>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = Arc::new(FakeServer::new());
    let (stop, stopped) = oneshot::channel::<()>();
    let ctx: Arc<dyn AdminContext> = fake.clone();
    let task = tokio::spawn(serve(listener, ctx, async move {
        let _ = stopped.await;
    }));
    (addr, fake, stop, task)
}

async fn call(addr: SocketAddr, method: &str, target: &str) -> Reply {
    call_with_body(addr, method, target, None).await
}

async fn call_with_body(addr: SocketAddr, method: &str, target: &str, form: Option<&str>) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {target} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n");
    match form {
        Some(body) => request.push_str(&format!(
            "content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )),
        None => request.push_str("\r\n"),
    }
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("complete response");
    let status = head[9..12].parse().unwrap();
    Reply {
        status,
        headers: head.to_lowercase(),
        body: body.to_string(),
    }
}

#[tokio::test]
async fn stats_endpoints_render_envoy_formats() {
    let (addr, _fake, _stop, _task) = start().await;
    let reply = call(addr, "GET", "/stats").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type(), "text/plain; charset=utf-8");
    assert!(reply.body.starts_with(
        "cluster.backend.upstream_rq_total: 5\nhttp.ingress_http.downstream_rq_2xx: 3\nserver.live: 1\n\
         cluster.backend.upstream_rq_time: P0(nan,4) P25(nan,4)"
    ));

    let reply = call(addr, "GET", "/stats?filter=%5Eserver%5C.").await;
    assert_eq!(reply.body, "server.live: 1\n");

    let reply = call(addr, "GET", "/stats?filter=(").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (400, "Invalid re2 regex")
    );

    let reply = call(addr, "GET", "/stats?format=json&type=Counters").await;
    assert_eq!(reply.content_type(), "application/json");
    assert_eq!(
        reply.json(),
        json!({"stats": [
            {"name": "cluster.backend.upstream_rq_total", "value": 5},
            {"name": "http.ingress_http.downstream_rq_2xx", "value": 3},
        ]})
    );

    let reply = call(addr, "GET", "/stats/prometheus").await;
    assert_eq!(reply.status, 200);
    assert!(reply
        .body
        .contains("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"backend\"} 5\n"));
    assert!(reply.body.contains(
        "envoy_http_downstream_rq_xx{envoy_response_code_class=\"2\",envoy_http_conn_manager_prefix=\"ingress_http\"} 3\n"
    ));
    let reply = call(addr, "GET", "/stats?format=prometheus&filter=live").await;
    assert_eq!(
        reply.body,
        "# TYPE envoy_server_live gauge\nenvoy_server_live 1\n"
    );
    let reply = call(addr, "GET", "/stats/prometheus?filter=[").await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn unknown_paths_and_help() {
    let (addr, fake, _stop, _task) = start().await;
    let reply = call(addr, "GET", "/nope").await;
    assert_eq!(reply.status, 404);
    assert!(reply
        .body
        .starts_with("invalid path. admin commands are:\n  /: Admin home page\n"));
    let help = call(addr, "GET", "/help").await;
    assert_eq!(help.status, 200);
    assert_eq!(format!("invalid path. {}", help.body), reply.body);
    let home = call(addr, "GET", "/").await;
    assert_eq!(home.body, help.body);
    // Only the exact path matches, as in Envoy.
    assert_eq!(call(addr, "GET", "/stats/").await.status, 404);
    // Every admin request reaches the admin access log.
    assert_eq!(*fake.logged.lock().unwrap(), vec![404, 200, 200, 404]);
}

#[tokio::test]
async fn mutating_endpoints_require_post() {
    let (addr, fake, _stop, _task) = start().await;
    for path in [
        "/healthcheck/fail",
        "/healthcheck/ok",
        "/logging",
        "/drain_listeners",
        "/quitquitquit",
        "/runtime_modify?a=b",
    ] {
        let reply = call(addr, "GET", path).await;
        assert_eq!(reply.status, 405, "{path}");
        assert_eq!(
            reply.body, "Method GET not allowed, POST required.",
            "{path}"
        );
    }
    assert_eq!(fake.quits.load(Ordering::SeqCst), 0);
    assert!(fake.runtime.get("a").is_none());

    let reply = call(addr, "POST", "/healthcheck/fail").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "OK\n"));
    assert!(fake.health_check_failed.load(Ordering::SeqCst));
    call(addr, "POST", "/healthcheck/ok").await;
    assert!(!fake.health_check_failed.load(Ordering::SeqCst));

    call(addr, "POST", "/drain_listeners?graceful&inboundonly").await;
    call(addr, "POST", "/drain_listeners").await;
    assert_eq!(
        *fake.drains.lock().unwrap(),
        vec![(true, true), (false, false)]
    );
    let reply = call(addr, "POST", "/drain_listeners?graceful&skip_exit").await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn logging_lists_and_changes_levels() {
    let (addr, fake, _stop, _task) = start().await;
    let reply = call(addr, "POST", "/logging").await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.starts_with("active loggers:\n  admin: info\n"));
    assert!(reply.body.contains("  http: info\n"));

    let reply = call(addr, "POST", "/logging?paths=http:debug,upstream:warning").await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("  http: debug\n  listener: info\n"));
    assert!(reply.body.contains("  upstream: warning\n"));
    let reply = call(addr, "POST", "/logging?router=trace").await;
    assert!(reply.body.contains("  router: trace\n"));
    let listed = call(addr, "POST", "/logging").await;
    assert!(
        listed.body.contains("  http: debug\n"),
        "the change persists"
    );

    let reply = call(addr, "POST", "/logging?level=error").await;
    assert!(fake.log.levels().iter().all(|(_, l)| *l == LogLevel::Error));
    assert!(reply.body.contains("  main: error\n"));

    let reply = call(addr, "POST", "/logging?level=loud").await;
    assert_eq!(reply.status, 400);
    assert!(reply
        .body
        .starts_with("error: unknown logger level\n\nusage: /logging?<name>=<level>"));
    assert!(reply
        .body
        .contains("levels: trace debug info warning error critical off \n"));
    assert!(reply.body.contains("active loggers:\n"));
    let reply = call(addr, "POST", "/logging?nosuch=debug").await;
    assert!(reply.body.starts_with("error: unknown logger name\n"));
    let reply = call(addr, "POST", "/logging?paths=http:").await;
    assert!(reply
        .body
        .starts_with("error: empty logger name or empty logger level\n"));
    let reply = call(addr, "POST", "/logging?http=debug&admin=debug").await;
    assert!(reply
        .body
        .starts_with("error: invalid number of parameters\n"));
}

#[tokio::test]
async fn runtime_read_and_modify() {
    let (addr, _fake, _stop, _task) = start().await;
    let reply = call(
        addr,
        "POST",
        "/runtime_modify?health_check.min_interval=10&x=%20y",
    )
    .await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "OK\n"));
    let reply = call_with_body(addr, "POST", "/runtime_modify", Some("from_form=1")).await;
    assert_eq!(reply.status, 200);
    let reply = call(addr, "GET", "/runtime").await;
    assert_eq!(reply.content_type(), "application/json");
    let runtime = reply.json();
    assert_eq!(runtime["layers"], json!(["base", "admin"]));
    assert_eq!(
        runtime["entries"]["health_check.min_interval"],
        json!({"final_value": "10", "layer_values": ["", "10"]})
    );
    assert_eq!(runtime["entries"]["x"]["final_value"], " y");
    assert_eq!(runtime["entries"]["from_form"]["final_value"], "1");
    let reply = call(addr, "POST", "/runtime_modify").await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.starts_with("usage: /runtime_modify?key1=value1"));
}

#[tokio::test]
async fn server_state_listeners_clusters_and_config() {
    let (addr, fake, _stop, _task) = start().await;
    let reply = call(addr, "GET", "/ready").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "LIVE\n"));
    fake.ready.store(false, Ordering::SeqCst);
    let reply = call(addr, "GET", "/ready").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (503, "PRE_INITIALIZING\n")
    );

    let reply = call(addr, "GET", "/server_info").await;
    assert_eq!(reply.json()["version"], "sluice/test");

    let reply = call(addr, "GET", "/listeners").await;
    assert_eq!(reply.body, "ingress::0.0.0.0:10000\n");
    let reply = call(addr, "GET", "/listeners?format=json").await;
    assert_eq!(
        reply.json(),
        json!({"listener_statuses": [{"name": "ingress", "local_address":
            {"socket_address": {"address": "0.0.0.0", "port_value": 10000}}}]})
    );

    assert_eq!(
        call(addr, "GET", "/clusters").await.body,
        "backend::10.0.0.1:80::cx_active::0\n"
    );
    assert_eq!(
        call(addr, "GET", "/clusters?format=json").await.json()["cluster_statuses"][0]["name"],
        "backend"
    );

    assert_eq!(
        call(addr, "GET", "/config_dump").await.json(),
        json!({"configs": []})
    );
    let reply = call(addr, "GET", "/config_dump?resource=dynamic_listeners").await;
    assert_eq!(reply.json()["configs"][0]["name"], "ingress");
    let reply = call(addr, "GET", "/config_dump?resource=bogus").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (404, "unknown resource bogus")
    );
    let reply = call(addr, "GET", "/config_dump?mask=x").await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("not supported by Sluice"));
    assert_eq!(
        call(addr, "GET", "/config_dump?include_eds").await.json(),
        json!({"configs": [{"endpoints": true}]})
    );

    let reply = call(addr, "GET", "/memory").await;
    assert_eq!(reply.status, 200);
    assert!(reply.json()["allocated"].is_string());
}

#[tokio::test]
async fn quit_replies_and_shutdown_stops_the_server() {
    let (addr, fake, stop, task) = start().await;
    let reply = call(addr, "POST", "/quitquitquit").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "OK\n"));
    assert_eq!(fake.quits.load(Ordering::SeqCst), 1);

    // An idle keep-alive connection must not hold shutdown up.
    let idle = TcpStream::connect(addr).await.unwrap();
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(3), task)
        .await
        .expect("server stops promptly")
        .unwrap();
    drop(idle);
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}
