//! What the kernel datapath is doing, as `/server_info` reports it in its
//! `datapath` object: whether it is active (and why not), the hooks
//! attached, the cgroup and pin directory, whether pins are kept across a
//! restart, and each XDP interface with the mode the kernel reports
//! (`native` = driver, `generic` = skb).

use std::sync::Mutex;

use serde::Serialize;

/// One XDP attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct XdpInterfaceStatus {
    pub interface: String,
    /// `native`, `generic`, `offloaded`, `multiple`; `off` when not attached.
    pub mode: String,
    /// Updated in place from a previous daemon's pinned link.
    pub adopted: bool,
    /// Why it is not attached (`mode` is `off`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The datapath's state for `/server_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatapathStatus {
    /// The `--datapath` flag: `off`, `auto` or `required`.
    pub mode: &'static str,
    /// Kernel programs attached and maps in sync.
    pub active: bool,
    /// Why the kernel datapath is not active (userspace serves everything).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The cgroup v2 the socket hooks attach to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    pub pin_dir: String,
    pub keep_pins: bool,
    /// Attach points of the hooks attached (`cgroup/connect4`, …).
    pub hooks_attached: Vec<&'static str>,
    /// Attach points not attached (all of them when not active).
    pub hooks_off: Vec<&'static str>,
    pub xdp_interfaces: Vec<XdpInterfaceStatus>,
    /// A previous daemon's pinned links and maps were taken over at start.
    pub took_over_pins: bool,
}

impl DatapathStatus {
    /// Before start: nothing attached.
    pub fn new(mode: &'static str, pin_dir: String, keep_pins: bool) -> Self {
        DatapathStatus {
            mode,
            active: false,
            reason: None,
            cgroup: None,
            pin_dir,
            keep_pins,
            hooks_attached: Vec::new(),
            hooks_off: sluice_ebpf::Hook::ALL
                .iter()
                .map(|hook| hook.attach_point())
                .collect(),
            xdp_interfaces: Vec::new(),
            took_over_pins: false,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("status serializes")
    }
}

/// Where the server keeps the datapath's status (set once at start).
#[derive(Debug, Default)]
pub struct StatusCell(Mutex<Option<DatapathStatus>>);

impl StatusCell {
    pub fn set(&self, status: DatapathStatus) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
    }

    /// The `datapath` object of `/server_info` (`{"mode": "starting"}`
    /// until the datapath has started).
    pub fn to_json(&self) -> serde_json::Value {
        match &*self.0.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(status) => status.to_json(),
            None => serde_json::json!({"mode": "starting", "active": false}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_status_lists_every_hook_as_off_and_serializes_without_empty_options() {
        let status = DatapathStatus::new("auto", "/sys/fs/bpf/sluice".into(), false);
        let json = status.to_json();
        assert_eq!(json["active"], false);
        assert_eq!(json["hooks_off"][0], "cgroup/connect4");
        assert!(json.get("reason").is_none());
        let cell = StatusCell::default();
        assert_eq!(cell.to_json()["mode"], "starting");
        cell.set(status);
        assert_eq!(cell.to_json()["pin_dir"], "/sys/fs/bpf/sluice");
    }
}
