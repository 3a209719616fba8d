//! Whether this process may load and attach BPF programs at all, checked
//! before trying, so that "serving in userspace" comes with the real reason
//! (missing capabilities) rather than the first syscall that failed.

/// `CAP_NET_ADMIN`: attaching cgroup and XDP programs.
const CAP_NET_ADMIN: u32 = 12;
/// `CAP_SYS_ADMIN`: before Linux 5.8, everything BPF.
const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_BPF` (Linux ≥ 5.8): loading programs and creating maps.
const CAP_BPF: u32 = 39;

/// The effective capability set from `/proc/self/status` (`CapEff`).
fn effective_capabilities(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// The capabilities the datapath needs and this process lacks, by name
/// (empty: it may try). Unknown (no `/proc`) counts as "may try".
pub fn missing_capabilities() -> Vec<&'static str> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    missing_from(&status)
}

fn missing_from(status: &str) -> Vec<&'static str> {
    let Some(caps) = effective_capabilities(status) else {
        return Vec::new();
    };
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_everything_and_an_unprivileged_process_lacks_bpf_and_net_admin() {
        let root = "Name:\tsluice\nCapEff:\t000001ffffffffff\n";
        assert!(missing_from(root).is_empty());
        let nobody = "CapEff:\t0000000000000000\n";
        assert_eq!(missing_from(nobody), ["CAP_BPF", "CAP_NET_ADMIN"]);
        let bpf_and_net_admin = format!("CapEff:\t{:016x}\n", (1u64 << 39) | (1 << 12));
        assert!(missing_from(&bpf_and_net_admin).is_empty());
        let sys_admin_only = format!("CapEff:\t{:016x}\n", 1u64 << 21);
        assert!(missing_from(&sys_admin_only).is_empty());
        assert!(missing_from("no such line").is_empty());
    }
}
