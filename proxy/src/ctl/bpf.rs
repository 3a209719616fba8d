//! `sluicectl bpf status|services|backends|counters|denylist|dump MAP`: reads the
//! maps and links a daemon pinned under `--pin-dir`, prints text or JSON
//! (`-o json`). The same maps are what `bpftool map dump pinned` shows.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use clap::Subcommand;
use serde_json::{json, Value};
use sluice_ebpf::common::{
    map_names, Lb4ServiceKey, MODE_REDIRECT, MODE_SOCKET_LB, PROTO_TCP, PROTO_UDP,
};
use sluice_ebpf::maps::LbMaps;
use sluice_ebpf::Hook;

use super::bpf_lb_rows as rows;
use super::bpf_xdp::{self, DenylistAction};
use super::Output;

#[derive(Debug, Clone, Subcommand)]
pub enum BpfCommand {
    /// Programs attached (pinned links) and map sizes.
    Status,
    /// Service VIP:port → backends, as the kernel resolves them.
    Services,
    /// Every backend the services use, with its counter id.
    Backends,
    /// Kernel counters (connects per service and per backend, XDP, sockmap).
    Counters,
    /// The XDP source deny list (CIDRs dropped before the stack).
    Denylist {
        #[command(subcommand)]
        action: DenylistAction,
    },
    /// Every entry of one map (e.g. LB4_SERVICES).
    Dump {
        #[arg(value_name = "MAP")]
        map: String,
    },
}

pub fn run(command: &BpfCommand, pin_dir: &Path, output: Output) -> Result<String, String> {
    if let BpfCommand::Status = command {
        return Ok(render(output, status(pin_dir), status_text));
    }
    if let BpfCommand::Denylist { action } = command {
        let value = bpf_xdp::denylist(action, pin_dir)?;
        return Ok(render(output, value, bpf_xdp::denylist_text));
    }
    if let BpfCommand::Dump { map } = command {
        if !dumpable_maps().contains(&map.as_str()) {
            return Err(format!(
                "unknown map '{map}'; sluicectl dumps {}",
                dumpable_maps().join(", ")
            ));
        }
    }
    let maps = LbMaps::open_pinned(pin_dir).map_err(|e| {
        format!(
            "{e} (is a Sluice daemon with --datapath running with --datapath-pin-dir {}?)",
            pin_dir.display()
        )
    })?;
    let value = match command {
        BpfCommand::Status | BpfCommand::Denylist { .. } => unreachable!("handled above"),
        BpfCommand::Services => return Ok(render(output, services(&maps)?, services_text)),
        BpfCommand::Backends => return Ok(render(output, backends(&maps)?, backends_text)),
        BpfCommand::Counters => {
            let mut value = counters(&maps)?;
            if let Value::Object(counters) = &mut value {
                bpf_xdp::interface_counters(pin_dir, counters)?;
                super::bpf_sockmap::counters(pin_dir, counters)?;
            }
            value
        }
        BpfCommand::Dump { map } => dump(&maps, map, pin_dir)?,
    };
    Ok(render(output, value, generic_text))
}

fn render(output: Output, value: Value, text: fn(&Value) -> String) -> String {
    match output {
        Output::Json => format!("{}\n", serde_json::to_string_pretty(&value).expect("JSON")),
        Output::Text => text(&value),
    }
}

fn ip(network_order: u32) -> String {
    Ipv4Addr::from(u32::from_be(network_order)).to_string()
}

pub(super) fn protocol_name(protocol: u8) -> String {
    match protocol {
        PROTO_TCP => "tcp".into(),
        PROTO_UDP => "udp".into(),
        other => other.to_string(),
    }
}

fn status(pin_dir: &Path) -> Value {
    let hooks = sluice_ebpf::pinned_hooks(pin_dir);
    let hooks: Vec<Value> = Hook::ALL
        .iter()
        .map(|hook| match hooks.iter().find(|h| h.hook == *hook) {
            Some(pinned) => json!({"hook": hook.attach_point(), "program": hook.program_name(), "attached": true, "link_id": pinned.link_id, "program_id": pinned.program_id}),
            None => json!({"hook": hook.attach_point(), "program": hook.program_name(), "attached": false}),
        })
        .collect();
    let maps: Vec<Value> = map_names::ALL
        .iter()
        .map(|name| json!({"map": name, "pinned": pin_dir.join(name).exists()}))
        .collect();
    let xdp = sluice_ebpf::pinned_xdp_interfaces(pin_dir);
    json!({"pin_dir": pin_dir.display().to_string(), "hooks": hooks, "xdp_interfaces": xdp, "xdp": bpf_xdp::status(pin_dir), "sockmap": super::bpf_sockmap::status(pin_dir), "maps": maps})
}

fn status_text(value: &Value) -> String {
    let mut text = format!("pin dir: {}\n", value["pin_dir"].as_str().unwrap_or(""));
    for hook in value["hooks"].as_array().into_iter().flatten() {
        if hook["attached"] == true {
            text += &format!(
                "{:<22} attached  link {} program {}\n",
                hook["hook"].as_str().unwrap_or(""),
                hook["link_id"],
                hook["program_id"]
            );
        } else {
            text += &format!("{:<22} not attached\n", hook["hook"].as_str().unwrap_or(""));
        }
    }
    for xdp in value["xdp"].as_array().into_iter().flatten() {
        text += &format!(
            "xdp                    attached to {} ({})\n",
            xdp["interface"].as_str().unwrap_or(""),
            xdp["mode"].as_str().unwrap_or("")
        );
    }
    text += &super::bpf_sockmap::status_text(&value["sockmap"]);
    for map in value["maps"].as_array().into_iter().flatten() {
        let state = if map["pinned"] == true {
            "pinned"
        } else {
            "missing"
        };
        text += &format!("{:<22} {state}\n", map["map"].as_str().unwrap_or(""));
    }
    text
}

/// The backends of a service's active slot.
fn mode_name(mode: u32) -> &'static str {
    match mode {
        MODE_SOCKET_LB => "socket-lb",
        MODE_REDIRECT => "redirect",
        _ => "unknown",
    }
}

fn services(maps: &LbMaps) -> Result<Value, String> {
    let backend_rows = rows::backend_rows(maps)?;
    let backends: BTreeMap<_, _> = backend_rows.iter().map(|row| (row.key, row)).collect();
    let mut list = Vec::new();
    for row in rows::service_rows(maps)? {
        let info = maps
            .service_info(row.service.service_id)
            .map_err(|e| e.to_string())?;
        let backends: Vec<Value> = rows::active_backends(&row.service, &backends)
            .iter()
            .map(|b| json!({"address": b.address.to_string(), "port": b.port}))
            .collect();
        list.push(json!({
            "vip": row.vip.to_string(),
            "port": row.port,
            "protocol": protocol_name(row.protocol),
            "mode": mode_name(info.mode),
            "backends": backends,
            "listener": info.listener_name(),
        }));
    }
    Ok(Value::Array(list))
}

fn services_text(value: &Value) -> String {
    let mut text = String::new();
    for service in value.as_array().into_iter().flatten() {
        let backends: Vec<String> = service["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                let address = b["address"].as_str().unwrap_or("");
                format!("{}:{}", super::bpf_lb6::bracketed(address), b["port"])
            })
            .collect();
        let backends = if backends.is_empty() {
            "(no backend)".to_string()
        } else {
            backends.join(", ")
        };
        text += &format!(
            "{}:{}/{} {} [{}] -> {}\n",
            super::bpf_lb6::bracketed(service["vip"].as_str().unwrap_or("")),
            service["port"],
            service["protocol"].as_str().unwrap_or(""),
            service["mode"].as_str().unwrap_or(""),
            service["listener"].as_str().unwrap_or(""),
            backends
        );
    }
    if text.is_empty() {
        text = "no services\n".into();
    }
    text
}

fn backends(maps: &LbMaps) -> Result<Value, String> {
    let active: BTreeMap<u32, u32> = rows::service_rows(maps)?
        .into_iter()
        .map(|row| (row.service.service_id, row.service.slot))
        .collect();
    let list = rows::backend_rows(maps)?
        .into_iter()
        .map(|row| {
            json!({
                "backend_id": row.backend_id,
                "address": row.address.to_string(),
                "port": row.port,
                "service_id": row.key.service_id,
                "slot": row.key.slot,
                "index": row.key.index,
                "active": active.get(&row.key.service_id) == Some(&row.key.slot),
            })
        })
        .collect();
    Ok(Value::Array(list))
}

fn backends_text(value: &Value) -> String {
    let mut text = String::new();
    for b in value.as_array().into_iter().flatten() {
        text += &format!(
            "{}:{} id {} service {} slot {} index {}{}\n",
            b["address"].as_str().unwrap_or(""),
            b["port"],
            b["backend_id"],
            b["service_id"],
            b["slot"],
            b["index"],
            if b["active"] == true {
                ""
            } else {
                " (previous list)"
            }
        );
    }
    if text.is_empty() {
        text = "no backends\n".into();
    }
    text
}

/// Named counters: `datapath.lb4.service.<vip>:<port>/<proto>.connects|no_backend|redirects`
/// (`datapath.lb6.service.[<vip>]:<port>/<proto>.*` for IPv6),
/// `datapath.xdp.service.<vip>:<port>/<proto>.packets|bytes` (XDP counts
/// IPv4 services) and `datapath.lb4|lb6.backend.<address>:<port>.connects`.
fn counters(maps: &LbMaps) -> Result<Value, String> {
    let mut counters = serde_json::Map::new();
    for row in rows::service_rows(maps)? {
        let service = format!("{}/{}", row.address(), protocol_name(row.protocol));
        let name = format!("datapath.{}.service.{service}", row.family());
        let c = maps
            .service_counters(row.service.service_id)
            .map_err(|e| e.to_string())?;
        counters.insert(format!("{name}.connects"), json!(c.connects));
        counters.insert(format!("{name}.no_backend"), json!(c.no_backend));
        counters.insert(format!("{name}.redirects"), json!(c.redirects));
        if row.vip.is_ipv4() {
            let xdp = maps
                .xdp_service_counters(row.service.service_id)
                .map_err(|e| e.to_string())?;
            let name = format!("datapath.xdp.service.{service}");
            counters.insert(format!("{name}.packets"), json!(xdp.packets));
            counters.insert(format!("{name}.bytes"), json!(xdp.bytes));
        }
    }
    for row in rows::backend_rows(maps)? {
        let name = format!(
            "datapath.{}.backend.{}.connects",
            row.family(),
            row.socket_address()
        );
        let c = maps
            .backend_counters(row.backend_id)
            .map_err(|e| e.to_string())?;
        counters.insert(name, json!(c.connects));
    }
    Ok(Value::Object(counters))
}

fn service_key_json(key: &Lb4ServiceKey) -> Value {
    json!({"address": ip(key.address), "port": u16::from_be(key.port), "protocol": protocol_name(key.protocol)})
}

fn dump(maps: &LbMaps, map: &str, pin_dir: &Path) -> Result<Value, String> {
    if let Some(entries) = super::bpf_lb6::dump(maps, map) {
        return entries.map(Value::Array);
    }
    if let Some(entries) = bpf_xdp::dump(maps, map, pin_dir) {
        return entries.map(Value::Array);
    }
    if let Some(entries) = super::bpf_socket_maps::dump(map, pin_dir) {
        return entries.map(Value::Array);
    }
    let entries: Vec<Value> = match map {
        map_names::LB4_SERVICES => maps
            .service_entries()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|(key, s)| json!({"key": service_key_json(key), "value": {"service_id": s.service_id, "backend_count": s.backend_count, "slot": s.slot, "flags": s.flags}}))
            .collect(),
        map_names::LB4_BACKENDS => maps
            .backend_entries()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|(k, b)| json!({"key": {"service_id": k.service_id, "slot": k.slot, "index": k.index}, "value": {"address": ip(b.address), "port": u16::from_be(b.port), "backend_id": b.backend_id}}))
            .collect(),
        map_names::LB4_SERVICE_COUNTERS | map_names::LB4_SERVICE_INFO => {
            let mut entries = Vec::new();
            for (_, service) in maps.service_entries().map_err(|e| e.to_string())? {
                let id = service.service_id;
                let value = if map == map_names::LB4_SERVICE_INFO {
                    let info = maps.service_info(id).map_err(|e| e.to_string())?;
                    json!({"mode": info.mode, "listener": info.listener_name()})
                } else {
                    let c = maps.service_counters(id).map_err(|e| e.to_string())?;
                    json!({"connects": c.connects, "no_backend": c.no_backend, "redirects": c.redirects})
                };
                entries.push(json!({"key": id, "value": value}));
            }
            entries
        }
        map_names::LB4_BACKEND_COUNTERS => {
            let mut ids: Vec<u32> = maps
                .backend_entries()
                .map_err(|e| e.to_string())?
                .iter()
                .map(|(_, b)| b.backend_id)
                .collect();
            ids.sort();
            ids.dedup();
            let mut entries = Vec::new();
            for id in ids {
                let c = maps.backend_counters(id).map_err(|e| e.to_string())?;
                entries.push(json!({"key": id, "value": {"connects": c.connects}}));
            }
            entries
        }
        other => return Err(format!("unknown map '{other}'")),
    };
    Ok(Value::Array(entries))
}

/// Every map `sluicectl bpf dump` knows: all the object defines.
fn dumpable_maps() -> Vec<&'static str> {
    map_names::ALL
        .into_iter()
        .chain(sluice_ebpf::common::sockmap::map_names::ALL)
        .collect()
}

fn generic_text(value: &Value) -> String {
    match value {
        Value::Object(counters) => counters
            .iter()
            .map(|(name, value)| format!("{name}: {value}\n"))
            .collect(),
        Value::Array(entries) => entries
            .iter()
            .map(|entry| format!("{} => {}\n", entry["key"], entry["value"]))
            .collect(),
        other => format!("{other}\n"),
    }
}
