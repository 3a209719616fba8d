//! The admin endpoints: the table of paths (with Envoy's help texts and
//! parameters), method checks, and one handler per path. Handlers are plain
//! functions of the request, so they are tested without a socket.

use http::{header, HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Value};

use super::query::parse_query;
use super::AdminContext;
use crate::http::body::{full, Body};
use crate::logging::LogLevel;
use crate::stats::{render_json, render_prometheus, render_text, StatsParams};

const TEXT: &str = "text/plain; charset=UTF-8";
const JSON: &str = "application/json";

/// A decoded admin request.
struct AdminRequest {
    /// Query parameters, decoded, in order.
    query: Vec<(String, String)>,
    /// Form fields of an `application/x-www-form-urlencoded` body.
    form: Vec<(String, String)>,
}

impl AdminRequest {
    fn has(&self, key: &str) -> bool {
        self.query.iter().any(|(k, _)| k == key)
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

type Handler = fn(&dyn AdminContext, &AdminRequest) -> Response<Body>;

/// A query parameter as `/help` lists it.
struct Param {
    name: &'static str,
    help: &'static str,
    choices: &'static [&'static str],
}

const fn param(name: &'static str, help: &'static str) -> Param {
    Param {
        name,
        help,
        choices: &[],
    }
}

struct Endpoint {
    path: &'static str,
    help: &'static str,
    /// Envoy's "mutates server state": only POST is accepted.
    post_only: bool,
    params: &'static [Param],
    handler: Handler,
}

const FORMAT_TEXT_JSON: Param = Param {
    name: "format",
    help: "File format to use",
    choices: &["text", "json"],
};

/// Every endpoint, sorted by path (the order `/help` prints).
const ENDPOINTS: &[Endpoint] = &[
    Endpoint { path: "/", help: "Admin home page", post_only: false, params: &[], handler: help },
    Endpoint { path: "/clusters", help: "upstream cluster status", post_only: false, params: &[FORMAT_TEXT_JSON], handler: clusters },
    Endpoint {
        path: "/config_dump",
        help: "dump current Envoy configs (experimental)",
        post_only: false,
        params: &[param("resource", "The resource to dump")],
        handler: config_dump,
    },
    Endpoint {
        path: "/drain_listeners",
        help: "drain listeners",
        post_only: true,
        params: &[
            param("graceful", "When draining listeners, enter a graceful drain period prior to closing listeners. This behaviour and duration is configurable via server options or CLI"),
            param("inboundonly", "Drains all inbound listeners. traffic_direction field in envoy_v3_api_msg_config.listener.v3.Listener is used to determine whether a listener is inbound or outbound."),
        ],
        handler: drain_listeners,
    },
    Endpoint { path: "/healthcheck/fail", help: "cause the server to fail health checks", post_only: true, params: &[], handler: healthcheck_fail },
    Endpoint { path: "/healthcheck/ok", help: "cause the server to pass health checks", post_only: true, params: &[], handler: healthcheck_ok },
    Endpoint { path: "/help", help: "print out list of admin commands", post_only: false, params: &[], handler: help },
    Endpoint { path: "/listeners", help: "print listener info", post_only: false, params: &[FORMAT_TEXT_JSON], handler: listeners },
    Endpoint {
        path: "/logging",
        help: "query/change logging levels",
        post_only: true,
        params: &[
            param("paths", "Change multiple logging levels by setting to <logger_name1>:<desired_level1>,<logger_name2>:<desired_level2>."),
            Param {
                name: "level",
                help: "desired logging level, this will change all loggers's level",
                choices: &["", "trace", "debug", "info", "warning", "error", "critical", "off"],
            },
        ],
        handler: logging,
    },
    Endpoint { path: "/memory", help: "print current allocation/heap usage", post_only: false, params: &[], handler: memory },
    Endpoint { path: "/quitquitquit", help: "exit the server", post_only: true, params: &[], handler: quit },
    Endpoint { path: "/ready", help: "print server state, return 200 if LIVE, otherwise return 503", post_only: false, params: &[], handler: ready },
    Endpoint { path: "/runtime", help: "print runtime values", post_only: false, params: &[], handler: runtime },
    Endpoint {
        path: "/runtime_modify",
        help: "Adds or modifies runtime values as passed in query parameters. To delete a previously added key, use an empty string as the value. Note that deletion only applies to overrides added via this endpoint; values loaded from disk can be modified via override but not deleted. E.g. ?key1=value1&key2=value2...",
        post_only: true,
        params: &[],
        handler: runtime_modify,
    },
    Endpoint { path: "/server_info", help: "print server version/status information", post_only: false, params: &[], handler: server_info },
    Endpoint {
        path: "/stats",
        help: "print server stats",
        post_only: false,
        params: &[
            param("usedonly", "Only include stats that have been written by system since restart"),
            param("filter", "Regular expression (Google re2) for filtering stats"),
            Param { name: "format", help: "Format to use", choices: &["text", "json", "prometheus"] },
            Param { name: "type", help: "Stat types to include.", choices: &["All", "Counters", "Histograms", "Gauges", "TextReadouts"] },
            Param { name: "histogram_buckets", help: "Histogram bucket display mode", choices: &["summary"] },
        ],
        handler: stats,
    },
    Endpoint {
        path: "/stats/prometheus",
        help: "print server stats in prometheus format",
        post_only: false,
        params: &[
            param("usedonly", "Only include stats that have been written by system since restart"),
            param("filter", "Regular expression (Google re2) for filtering stats"),
        ],
        handler: stats_prometheus,
    },
];

/// Answers one admin request. `form_body` is the body of a request whose
/// content type is `application/x-www-form-urlencoded`.
pub fn handle(
    ctx: &dyn AdminContext,
    method: &Method,
    path_and_query: &str,
    form_body: Option<&str>,
) -> Response<Body> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let Some(endpoint) = ENDPOINTS.iter().find(|e| e.path == path) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("invalid path. {}", help_text()),
        );
    };
    if endpoint.post_only && method != Method::POST {
        tracing::error!(
            target: crate::logging::targets::ADMIN,
            "admin path \"{}\" mutates state, method={} rather than POST",
            endpoint.path,
            method
        );
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method {method} not allowed, POST required."),
        );
    }
    let request = AdminRequest {
        query: parse_query(query),
        form: form_body.map(parse_query).unwrap_or_default(),
    };
    (endpoint.handler)(ctx, &request)
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, max-age=0"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    respond(status, TEXT, body.into())
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let body = serde_json::to_string_pretty(value).unwrap_or_default();
    respond(status, JSON, body)
}

/// `admin commands are:` and one line per endpoint, as Envoy's `/help`.
fn help_text() -> String {
    let mut out = String::from("admin commands are:\n");
    for endpoint in ENDPOINTS {
        let post = if endpoint.post_only { " (POST)" } else { "" };
        out.push_str(&format!("  {}{post}: {}\n", endpoint.path, endpoint.help));
        for param in endpoint.params {
            out.push_str(&format!("      {}: {}", param.name, param.help));
            if !param.choices.is_empty() {
                out.push_str(&format!("; One of ({})", param.choices.join(", ")));
            }
            out.push('\n');
        }
    }
    out
}

fn help(_: &dyn AdminContext, _: &AdminRequest) -> Response<Body> {
    text(StatusCode::OK, help_text())
}

fn clusters(ctx: &dyn AdminContext, request: &AdminRequest) -> Response<Body> {
    match request.get("format") {
        Some("json") => json_response(StatusCode::OK, &ctx.clusters_json()),
        _ => text(StatusCode::OK, ctx.clusters_text()),
    }
}

fn config_dump(ctx: &dyn AdminContext, request: &AdminRequest) -> Response<Body> {
    for unsupported in ["mask", "name_regex"] {
        if request.has(unsupported) {
            return text(
                StatusCode::BAD_REQUEST,
                format!("/config_dump parameter '{unsupported}' is not supported by Sluice\n"),
            );
        }
    }
    match ctx.config_dump(request.get("resource"), request.has("include_eds")) {
        Ok(dump) => json_response(StatusCode::OK, &dump),
        Err(message) => text(StatusCode::NOT_FOUND, message),
    }
}

fn drain_listeners(ctx: &dyn AdminContext, request: &AdminRequest) -> Response<Body> {
    if request.has("skip_exit") {
        return text(
            StatusCode::BAD_REQUEST,
            "/drain_listeners parameter 'skip_exit' is not supported by Sluice\n",
        );
    }
    let inbound_only = request.has("inboundonly") || request.has("inbound_only");
    ctx.drain_listeners(request.has("graceful"), inbound_only);
    text(StatusCode::OK, "OK\n")
}

fn healthcheck_fail(ctx: &dyn AdminContext, _: &AdminRequest) -> Response<Body> {
    ctx.set_health_check_failed(true);
    text(StatusCode::OK, "OK\n")
}

fn healthcheck_ok(ctx: &dyn AdminContext, _: &AdminRequest) -> Response<Body> {
    ctx.set_health_check_failed(false);
    text(StatusCode::OK, "OK\n")
}

fn listeners(ctx: &dyn AdminContext, request: &AdminRequest) -> Response<Body> {
    let listeners = ctx.listeners();
    if request.get("format") == Some("json") {
        let statuses: Vec<Value> = listeners
            .iter()
            .map(|l| {
                json!({
                    "name": l.name,
                    "local_address": {"socket_address": {
                        "address": l.local_address.ip().to_string(),
                        "port_value": l.local_address.port(),
                    }},
                })
            })
            .collect();
        return json_response(StatusCode::OK, &json!({ "listener_statuses": statuses }));
    }
    let body: String = listeners
        .iter()
        .map(|l| format!("{}::{}\n", l.name, l.local_address))
        .collect();
    text(StatusCode::OK, body)
}

fn logging(ctx: &dyn AdminContext, request: &AdminRequest) -> Response<Body> {
    let handle = ctx.log_handle();
    let mut body = String::new();
    let mut status = StatusCode::OK;
    if !request.query.is_empty() {
        if let Err(message) = change_log_levels(ctx, &request.query) {
            status = StatusCode::BAD_REQUEST;
            body.push_str(&format!("error: {message}\n\n"));
            body.push_str("usage: /logging?<name>=<level> (change single level)\n");
            body.push_str(
                "usage: /logging?paths=name1:level1,name2:level2,... (change multiple levels)\n",
            );
            body.push_str("usage: /logging?level=<level> (change all levels)\n");
            body.push_str("levels: ");
            for level in LogLevel::ALL {
                body.push_str(&format!("{level} "));
            }
            body.push('\n');
        }
    }
    body.push_str(&handle.active_loggers_text());
    text(status, body)
}

fn parse_level(level: &str) -> Result<LogLevel, String> {
    level
        .parse()
        .map_err(|_| "unknown logger level".to_string())
}

fn change_log_levels(ctx: &dyn AdminContext, query: &[(String, String)]) -> Result<(), String> {
    let [(key, value)] = query else {
        return Err("invalid number of parameters".to_string());
    };
    let handle = ctx.log_handle();
    if key == "level" {
        return handle.set_all(parse_level(value)?);
    }
    let mut changes: Vec<(&str, LogLevel)> = Vec::new();
    if key == "paths" {
        for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, level) = pair.split_once(':').unwrap_or((pair, ""));
            let (name, level) = (name.trim(), level.trim());
            if name.is_empty() || level.is_empty() {
                return Err("empty logger name or empty logger level".to_string());
            }
            changes.push((name, parse_level(level)?));
        }
    } else {
        changes.push((key.as_str(), parse_level(value)?));
    }
    handle.set_levels(&changes)
}

fn memory(_: &dyn AdminContext, _: &AdminRequest) -> Response<Body> {
    match read_statm() {
        Ok(memory) => json_response(StatusCode::OK, &memory),
        Err(error) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read /proc/self/statm: {error}\n"),
        ),
    }
}

/// Process memory from `/proc/self/statm`, in Envoy's `/memory` field names
/// (uint64 as strings, as proto JSON prints them). Without allocator
/// introspection, `allocated` is the private resident memory (resident minus
/// shared pages), `heap_size` the data segment and `total_physical_bytes`
/// the resident set.
fn read_statm() -> std::io::Result<Value> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: Vec<u64> = statm
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    let page = |index: usize| pages.get(index).copied().unwrap_or(0) * page_size();
    let (resident, shared, data) = (page(1), page(2), page(5));
    Ok(json!({
        "allocated": resident.saturating_sub(shared).to_string(),
        "heap_size": data.to_string(),
        "total_physical_bytes": resident.to_string(),
    }))
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a process constant and has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

fn quit(ctx: &dyn AdminContext, _: &AdminRequest) -> Response<Body> {
    ctx.quit();
    text(StatusCode::OK, "OK\n")
}

fn ready(ctx: &dyn AdminContext, _: &AdminRequest) -> Response<Body> {
    let ready = ctx.is_ready();
    let mut state = ctx.server_state();
    if state.is_empty() {
        state = if ready { "LIVE" } else { "PRE_INITIALIZING" }.to_string();
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, format!("{state}\n"))
}

fn runtime(ctx: &dyn AdminContext, _: &AdminRequest) -> Response<Body> {
    json_response(StatusCode::OK, &ctx.runtime().to_json())
}

fn runtime_modify(ctx: &dyn AdminContext, request: &AdminRequest) -> Response<Body> {
    let overrides = if request.query.is_empty() {
        &request.form
    } else {
        &request.query
    };
    if overrides.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "usage: /runtime_modify?key1=value1&key2=value2&keyN=valueN\n       or send the parameters as form values\nuse an empty value to remove a previously added override",
        );
    }
    match ctx.runtime().merge_admin_values(overrides) {
        Ok(()) => text(StatusCode::OK, "OK\n"),
        Err(message) => text(StatusCode::SERVICE_UNAVAILABLE, message),
    }
}

fn server_info(ctx: &dyn AdminContext, _: &AdminRequest) -> Response<Body> {
    json_response(StatusCode::OK, &ctx.server_info())
}

fn stats(ctx: &dyn AdminContext, request: &AdminRequest) -> Response<Body> {
    let params = match StatsParams::parse(&request.query) {
        Ok(params) => params,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let store = ctx.stats();
    match params.format {
        crate::stats::StatsFormat::Text => text(StatusCode::OK, render_text(store, &params)),
        crate::stats::StatsFormat::Prometheus => {
            text(StatusCode::OK, render_prometheus(store, &params))
        }
        crate::stats::StatsFormat::Json => {
            let value = render_json(store, &params);
            let body = if request.has("pretty") {
                serde_json::to_string_pretty(&value)
            } else {
                serde_json::to_string(&value)
            };
            respond(StatusCode::OK, JSON, body.unwrap_or_default())
        }
    }
}

fn stats_prometheus(ctx: &dyn AdminContext, request: &AdminRequest) -> Response<Body> {
    match StatsParams::parse(&request.query) {
        Ok(params) => text(StatusCode::OK, render_prometheus(ctx.stats(), &params)),
        Err(message) => text(StatusCode::BAD_REQUEST, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_sorted_and_unique() {
        let paths: Vec<&str> = ENDPOINTS.iter().map(|e| e.path).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(paths, sorted);
    }

    #[test]
    fn help_lists_endpoints_like_envoy() {
        let help = help_text();
        assert!(help.starts_with("admin commands are:\n  /: Admin home page\n"));
        assert!(help.contains("  /quitquitquit (POST): exit the server\n"));
        assert!(help.contains("      format: File format to use; One of (text, json)\n"));
        assert!(help.contains(
            "      level: desired logging level, this will change all loggers's level; One of (, trace, debug, info, warning, error, critical, off)\n"
        ));
    }

    #[test]
    fn statm_memory_is_reported() {
        let memory = read_statm().unwrap();
        let resident: u64 = memory["total_physical_bytes"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(resident > 0);
    }
}
