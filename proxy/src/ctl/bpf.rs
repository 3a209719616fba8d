//! `sluicectl bpf status|services|backends|counters|denylist|dump MAP`: reads the
//! maps and links a daemon pinned under `--pin-dir`, prints text or JSON
//! (`-o json`). The same maps are what `bpftool map dump pinned` shows.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use clap::Subcommand;
use serde_json::{json, Value};
use sluice_ebpf::common::{
    map_names, Lb4Backend, Lb4BackendKey, Lb4Service, Lb4ServiceKey, MODE_SOCKET_LB, PROTO_TCP,
    PROTO_UDP,
};
use sluice_ebpf::maps::{LbMaps, XdpMaps};
use sluice_ebpf::Hook;

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

#[derive(Debug, Clone, Subcommand)]
pub enum DenylistAction {
    /// Drop packets from this IPv4 CIDR (e.g. 192.0.2.0/24).
    Add { cidr: String },
    /// Stop dropping exactly this CIDR.
    Del { cidr: String },
    /// The CIDRs dropped.
    List,
}

/// Parses `a.b.c.d/len` (or a bare address, /32), masking host bits.
pub fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u32), String> {
    let (address, prefix_len) = match text.split_once('/') {
        Some((address, len)) => (
            address,
            len.parse::<u32>()
                .ok()
                .filter(|len| *len <= 32)
                .ok_or_else(|| format!("'{text}': prefix length must be 0..=32"))?,
        ),
        None => (text, 32),
    };
    let address: Ipv4Addr = address
        .parse()
        .map_err(|_| format!("'{text}' is not an IPv4 CIDR (IPv6 is not supported yet)"))?;
    let mask = if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - prefix_len)
    };
    Ok((Ipv4Addr::from(u32::from(address) & mask), prefix_len))
}

fn denylist(action: &DenylistAction, pin_dir: &Path) -> Result<Value, String> {
    // Bad input is reported before looking for the daemon's maps.
    let cidr = match action {
        DenylistAction::Add { cidr } | DenylistAction::Del { cidr } => Some(parse_cidr(cidr)?),
        DenylistAction::List => None,
    };
    let mut maps = XdpMaps::open_pinned(pin_dir).map_err(|e| e.to_string())?;
    match (action, cidr) {
        (DenylistAction::Add { .. }, Some((address, len))) => {
            maps.deny(address, len).map_err(|e| e.to_string())?;
        }
        (DenylistAction::Del { .. }, Some((address, len))) => {
            maps.allow(address, len)
                .map_err(|e| format!("{address}/{len} is not in the deny list ({e})"))?;
        }
        _ => {}
    }
    let list = maps.denied().map_err(|e| e.to_string())?;
    Ok(Value::Array(
        list.iter()
            .map(|(address, len)| json!(format!("{address}/{len}")))
            .collect(),
    ))
}

fn xdp_counters(
    pin_dir: &Path,
    counters: &mut serde_json::Map<String, Value>,
) -> Result<(), String> {
    let interfaces = sluice_ebpf::pinned_xdp_interfaces(pin_dir);
    if interfaces.is_empty() {
        return Ok(());
    }
    let maps = XdpMaps::open_pinned(pin_dir).map_err(|e| e.to_string())?;
    for interface in interfaces {
        let Ok(name) = std::ffi::CString::new(interface.clone()) else {
            continue;
        };
        // SAFETY: NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            continue; // the interface is gone
        }
        let c = maps
            .interface_counters(ifindex)
            .map_err(|e| e.to_string())?;
        let prefix = format!("datapath.xdp.{interface}");
        counters.insert(format!("{prefix}.packets"), json!(c.packets));
        counters.insert(format!("{prefix}.bytes"), json!(c.bytes));
        counters.insert(format!("{prefix}.dropped"), json!(c.dropped));
    }
    Ok(())
}

pub fn run(command: &BpfCommand, pin_dir: &Path, output: Output) -> Result<String, String> {
    if let BpfCommand::Status = command {
        return Ok(render(output, status(pin_dir), status_text));
    }
    if let BpfCommand::Denylist { action } = command {
        let value = denylist(action, pin_dir)?;
        return Ok(render(output, value, |v| {
            let lines: String = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|cidr| format!("{}\n", cidr.as_str().unwrap_or("")))
                .collect();
            if lines.is_empty() {
                "deny list is empty\n".into()
            } else {
                lines
            }
        }));
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
                xdp_counters(pin_dir, counters)?;
                super::bpf_sockmap::counters(pin_dir, counters)?;
            }
            value
        }
        BpfCommand::Dump { map } => dump(&maps, map)?,
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

fn protocol_name(protocol: u8) -> String {
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
    json!({"pin_dir": pin_dir.display().to_string(), "hooks": hooks, "xdp_interfaces": xdp, "sockmap": super::bpf_sockmap::status(pin_dir), "maps": maps})
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
    for interface in value["xdp_interfaces"].as_array().into_iter().flatten() {
        text += &format!(
            "xdp                    attached to {}\n",
            interface.as_str().unwrap_or("")
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
fn active_backends(
    service: &Lb4Service,
    backends: &BTreeMap<Lb4BackendKey, Lb4Backend>,
) -> Vec<Lb4Backend> {
    (0..service.backend_count)
        .filter_map(|index| {
            backends
                .get(&Lb4BackendKey {
                    service_id: service.service_id,
                    slot: service.slot,
                    index,
                })
                .copied()
        })
        .collect()
}

/// The JSON array of the Interface section: vip, port, protocol, mode,
/// backends, listener.
fn services(maps: &LbMaps) -> Result<Value, String> {
    let services = maps.service_entries().map_err(|e| e.to_string())?;
    let backends: BTreeMap<_, _> = maps
        .backend_entries()
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let mut list = Vec::new();
    for (key, service) in services {
        let info = maps
            .service_info(service.service_id)
            .map_err(|e| e.to_string())?;
        let mode = if info.mode == MODE_SOCKET_LB {
            "socket-lb"
        } else {
            "unknown"
        };
        let backends: Vec<Value> = active_backends(&service, &backends)
            .iter()
            .map(|b| json!({"address": ip(b.address), "port": u16::from_be(b.port)}))
            .collect();
        list.push(json!({
            "vip": ip(key.address),
            "port": u16::from_be(key.port),
            "protocol": protocol_name(key.protocol),
            "mode": mode,
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
            .map(|b| format!("{}:{}", b["address"].as_str().unwrap_or(""), b["port"]))
            .collect();
        let backends = if backends.is_empty() {
            "(no backend)".to_string()
        } else {
            backends.join(", ")
        };
        text += &format!(
            "{}:{}/{} {} [{}] -> {}\n",
            service["vip"].as_str().unwrap_or(""),
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
    let active: BTreeMap<u32, u32> = maps
        .service_entries()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(_, s)| (s.service_id, s.slot))
        .collect();
    let mut list = Vec::new();
    for (key, backend) in maps.backend_entries().map_err(|e| e.to_string())? {
        list.push(json!({
            "backend_id": backend.backend_id,
            "address": ip(backend.address),
            "port": u16::from_be(backend.port),
            "service_id": key.service_id,
            "slot": key.slot,
            "index": key.index,
            "active": active.get(&key.service_id) == Some(&key.slot),
        }));
    }
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

/// Named counters: `datapath.lb4.service.<vip>:<port>/<proto>.connects|no_backend`
/// and `datapath.lb4.backend.<address>:<port>.connects`.
fn counters(maps: &LbMaps) -> Result<Value, String> {
    let mut counters = serde_json::Map::new();
    for (key, service) in maps.service_entries().map_err(|e| e.to_string())? {
        let name = format!(
            "datapath.lb4.service.{}:{}/{}",
            ip(key.address),
            u16::from_be(key.port),
            protocol_name(key.protocol)
        );
        let c = maps
            .service_counters(service.service_id)
            .map_err(|e| e.to_string())?;
        counters.insert(format!("{name}.connects"), json!(c.connects));
        counters.insert(format!("{name}.no_backend"), json!(c.no_backend));
    }
    for (_, backend) in maps.backend_entries().map_err(|e| e.to_string())? {
        let name = format!(
            "datapath.lb4.backend.{}:{}.connects",
            ip(backend.address),
            u16::from_be(backend.port)
        );
        let c = maps
            .backend_counters(backend.backend_id)
            .map_err(|e| e.to_string())?;
        counters.insert(name, json!(c.connects));
    }
    Ok(Value::Object(counters))
}

fn service_key_json(key: &Lb4ServiceKey) -> Value {
    json!({"address": ip(key.address), "port": u16::from_be(key.port), "protocol": protocol_name(key.protocol)})
}

fn dump(maps: &LbMaps, map: &str) -> Result<Value, String> {
    let entries: Vec<Value> = match map {
        map_names::LB4_SERVICES => maps
            .service_entries()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|(key, s)| json!({"key": service_key_json(key), "value": {"service_id": s.service_id, "backend_count": s.backend_count, "slot": s.slot}}))
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
                    json!({"connects": c.connects, "no_backend": c.no_backend})
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
        other => {
            return Err(format!(
                "unknown map '{other}'; sluicectl dumps {} (for others use bpftool map dump pinned)",
                [
                    map_names::LB4_SERVICES,
                    map_names::LB4_BACKENDS,
                    map_names::LB4_SERVICE_COUNTERS,
                    map_names::LB4_BACKEND_COUNTERS,
                    map_names::LB4_SERVICE_INFO
                ]
                .join(", ")
            ))
        }
    };
    Ok(Value::Array(entries))
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

#[cfg(test)]
mod tests {
    use super::parse_cidr;

    #[test]
    fn cidrs_are_parsed_and_masked() {
        assert_eq!(
            parse_cidr("192.0.2.77/24"),
            Ok(("192.0.2.0".parse().unwrap(), 24))
        );
        assert_eq!(
            parse_cidr("192.0.2.7"),
            Ok(("192.0.2.7".parse().unwrap(), 32))
        );
        assert_eq!(
            parse_cidr("10.1.2.3/0"),
            Ok(("0.0.0.0".parse().unwrap(), 0))
        );
        assert!(parse_cidr("192.0.2.0/33").unwrap_err().contains("0..=32"));
        assert!(parse_cidr("fd00::/8")
            .unwrap_err()
            .contains("not an IPv4 CIDR"));
        assert!(parse_cidr("nonsense").is_err());
    }
}
