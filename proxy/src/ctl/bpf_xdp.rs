//! The XDP side of `sluicectl bpf`: source CIDR parsing (IPv4 and IPv6),
//! `denylist add|del|list` on `XDP_DENY4`/`XDP_DENY6`, the per-interface
//! counters of `bpf counters`, and the XDP part of `bpf status` (the mode
//! the kernel reports for each pinned interface).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use clap::Subcommand;
use serde_json::{json, Value};
use sluice_ebpf::common::map_names;
use sluice_ebpf::maps::{LbMaps, XdpMaps};

#[derive(Debug, Clone, Subcommand)]
pub enum DenylistAction {
    /// Drop packets from this source CIDR (IPv4 or IPv6, e.g. 192.0.2.0/24, 2001:db8::/32).
    Add { cidr: String },
    /// Stop dropping exactly this CIDR.
    Del { cidr: String },
    /// The CIDRs dropped.
    List,
}

/// Parses `address/len` (IPv4 or IPv6; a bare address is /32 or /128),
/// masking host bits.
pub fn parse_cidr(text: &str) -> Result<(IpAddr, u32), String> {
    let (address_text, len_text) = match text.split_once('/') {
        Some((address, len)) => (address, Some(len)),
        None => (text, None),
    };
    let address: IpAddr = address_text
        .parse()
        .map_err(|_| format!("'{text}' is not an IPv4 or IPv6 CIDR"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix_len = match len_text {
        None => max,
        Some(len) => len
            .parse::<u32>()
            .ok()
            .filter(|len| *len <= max)
            .ok_or_else(|| format!("'{text}': prefix length must be 0..={max}"))?,
    };
    let masked = match address {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - prefix_len).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - prefix_len).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    };
    Ok((masked, prefix_len))
}

/// Runs a deny-list action; returns the list afterwards as a JSON array.
pub fn denylist(action: &DenylistAction, pin_dir: &Path) -> Result<Value, String> {
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

pub fn denylist_text(value: &Value) -> String {
    let lines: String = value
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
}

/// Adds `datapath.xdp.<iface>.packets|bytes|dropped` for every interface
/// with a pinned XDP link.
pub fn interface_counters(
    pin_dir: &Path,
    counters: &mut serde_json::Map<String, Value>,
) -> Result<(), String> {
    let interfaces = sluice_ebpf::pinned_xdp_interfaces(pin_dir);
    if interfaces.is_empty() {
        return Ok(());
    }
    let maps = XdpMaps::open_pinned(pin_dir).map_err(|e| e.to_string())?;
    for interface in interfaces {
        let Some(ifindex) = sluice_ebpf::interface_index(&interface) else {
            continue; // the interface is gone
        };
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

/// `sluicectl bpf dump` of the XDP maps (`None` for another map): the deny
/// lists as CIDRs, the interface counters of every pinned XDP interface
/// (summed over CPUs, keyed by ifindex), and the per-service counters of
/// every service in the socket-LB maps (keyed by service id).
pub fn dump(lb: &LbMaps, map: &str, pin_dir: &Path) -> Option<Result<Vec<Value>, String>> {
    let wanted_family = match map {
        map_names::XDP_DENY4 => Some(true),
        map_names::XDP_DENY6 => Some(false),
        map_names::XDP_COUNTERS | map_names::XDP_SERVICE_COUNTERS => None,
        _ => return None,
    };
    let entries = || -> Result<Vec<Value>, String> {
        let error = |e: sluice_ebpf::DatapathError| e.to_string();
        if map == map_names::XDP_SERVICE_COUNTERS {
            let mut ids: Vec<u32> = lb
                .service_entries()
                .map_err(error)?
                .iter()
                .map(|(_, service)| service.service_id)
                .collect();
            ids.sort();
            let mut entries = Vec::new();
            for id in ids {
                let c = lb.xdp_service_counters(id).map_err(error)?;
                entries.push(json!({"key": id, "value": {"packets": c.packets, "bytes": c.bytes}}));
            }
            return Ok(entries);
        }
        let xdp = XdpMaps::open_pinned(pin_dir).map_err(error)?;
        if let Some(ipv4) = wanted_family {
            return Ok(xdp
                .denied()
                .map_err(error)?
                .iter()
                .filter(|(address, _)| address.is_ipv4() == ipv4)
                .map(|(address, len)| json!({"key": format!("{address}/{len}"), "value": 1}))
                .collect());
        }
        let mut entries = Vec::new();
        for interface in sluice_ebpf::pinned_xdp_interfaces(pin_dir) {
            let Some(ifindex) = sluice_ebpf::interface_index(&interface) else {
                continue; // the interface is gone
            };
            let c = xdp.interface_counters(ifindex).map_err(error)?;
            entries.push(json!({"key": ifindex, "interface": interface, "value": {"packets": c.packets, "bytes": c.bytes, "dropped": c.dropped}}));
        }
        Ok(entries)
    };
    Some(entries())
}

/// `[{"interface", "mode"}]` for every pinned XDP link; the mode is what
/// the kernel reports now (`gone` when the interface no longer exists).
pub fn status(pin_dir: &Path) -> Value {
    let interfaces: Vec<Value> = sluice_ebpf::pinned_xdp_interfaces(pin_dir)
        .into_iter()
        .map(|interface| {
            let mode = match sluice_ebpf::interface_index(&interface) {
                None => "gone".to_string(),
                Some(ifindex) => match sluice_ebpf::xdp_mode::attached_mode(ifindex) {
                    Ok(Some(mode)) => mode.as_str().to_string(),
                    Ok(None) => "not attached".to_string(),
                    Err(error) => format!("unknown ({error})"),
                },
            };
            json!({"interface": interface, "mode": mode})
        })
        .collect();
    Value::Array(interfaces)
}

#[cfg(test)]
mod tests {
    use super::parse_cidr;

    #[test]
    fn ipv4_cidrs_are_parsed_and_masked() {
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
        assert!(parse_cidr("nonsense").is_err());
        assert!(parse_cidr("10.0.0.0/-1").is_err());
        assert!(parse_cidr("10.0.0.0/").is_err());
    }

    #[test]
    fn ipv6_cidrs_are_parsed_and_masked() {
        assert_eq!(
            parse_cidr("fd00:1:2:3::9/64"),
            Ok(("fd00:1:2:3::".parse().unwrap(), 64))
        );
        assert_eq!(
            parse_cidr("2001:db8::1"),
            Ok(("2001:db8::1".parse().unwrap(), 128))
        );
        assert_eq!(parse_cidr("::1/0"), Ok(("::".parse().unwrap(), 0)));
        assert!(parse_cidr("fd00::/129").unwrap_err().contains("0..=128"));
        assert!(parse_cidr("fd00::zz/64")
            .unwrap_err()
            .contains("not an IPv4 or IPv6 CIDR"));
    }
}
