//! The local-acceleration part of `sluicectl bpf status` and `sluicectl bpf
//! counters`: the sockops link and the sk_msg programs attached to
//! `SOCKMAP_SOCKETS`, the sockets paired now, and the sockmap counters
//! (`datapath.sockmap.<counter>`), all read from the daemon's pins.

use std::path::Path;

use serde_json::{json, Value};
use sluice_ebpf::common::sockmap::program_names;
use sluice_ebpf::sockmap::{pinned_status, SockmapMaps, SK_MSG_ATTACH_POINT, SOCKOPS_ATTACH_POINT};

/// `"sockmap"` of `sluicectl bpf status -o json`.
pub fn status(pin_dir: &Path) -> Value {
    let state = pinned_status(pin_dir);
    let sockops = match state.sockops {
        Some((link_id, program_id)) => {
            json!({"hook": SOCKOPS_ATTACH_POINT, "program": program_names::SOCKOPS, "attached": true, "link_id": link_id, "program_id": program_id})
        }
        None => {
            json!({"hook": SOCKOPS_ATTACH_POINT, "program": program_names::SOCKOPS, "attached": false})
        }
    };
    let sk_msg = json!({
        "hook": SK_MSG_ATTACH_POINT,
        "program": program_names::SK_MSG,
        "attached": !state.sk_msg_program_ids.is_empty(),
        "program_ids": state.sk_msg_program_ids,
    });
    json!({
        "enabled": state.sockops.is_some() && !state.sk_msg_program_ids.is_empty(),
        "sockops": sockops,
        "sk_msg": sk_msg,
        "sockets": state.sockets,
    })
}

/// The text lines of [`status`].
pub fn status_text(value: &Value) -> String {
    let sockops = &value["sockops"];
    let sk_msg = &value["sk_msg"];
    let mut text = if sockops["attached"] == true {
        format!(
            "{:<22} attached  link {} program {}\n",
            "sockops (sockmap)", sockops["link_id"], sockops["program_id"]
        )
    } else {
        format!("{:<22} not attached\n", "sockops (sockmap)")
    };
    text += &if sk_msg["attached"] == true {
        format!(
            "{:<22} attached to SOCKMAP_SOCKETS  program {}\n",
            "sk_msg (sockmap)",
            sk_msg["program_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!("{:<22} not attached\n", "sk_msg (sockmap)")
    };
    if let Some(sockets) = value["sockets"].as_u64() {
        text += &format!("{:<22} {sockets} sockets paired\n", "sockmap");
    }
    text
}

/// Adds `datapath.sockmap.<counter>` when the sockmap maps are pinned.
pub fn counters(
    pin_dir: &Path,
    counters: &mut serde_json::Map<String, Value>,
) -> Result<(), String> {
    let Ok(maps) = SockmapMaps::open_pinned(pin_dir) else {
        return Ok(()); // sockmap is off: no counters
    };
    let values = maps.counters().map_err(|e| e.to_string())?;
    for (name, value) in values.named() {
        counters.insert(format!("datapath.sockmap.{name}"), json!(value));
    }
    Ok(())
}
