//! Process accounting from `/proc`: CPU time (utime + stime from
//! `/proc/PID/stat`) and peak RSS (`VmHWM` from `/proc/PID/status`), summed
//! over a process and its descendants (nginx runs a master and workers).

use std::fs;

/// Clock ticks per second for `/proc/PID/stat` times (`getconf CLK_TCK`; 100
/// on every Linux architecture this harness runs on).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// `pid` and every process below it, found by scanning `/proc/*/stat` parents.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(fields) = stat_fields(child) {
                if let Some(parent) = fields.get(1).and_then(|f| f.parse().ok()) {
                    parents.push((child, parent));
                }
            }
        }
    }
    let mut tree = vec![pid];
    let mut index = 0;
    while index < tree.len() {
        let current = tree[index];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == current)
                .map(|(c, _)| *c),
        );
        index += 1;
    }
    tree
}

/// Fields of `/proc/PID/stat` after the command name, so that index 0 is the
/// state (field 3 in proc(5)); `None` when the process is gone.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &text[text.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_string).collect())
}

/// CPU seconds (user + system) one process has used so far.
fn cpu_seconds_of(pid: u32) -> f64 {
    let Some(fields) = stat_fields(pid) else {
        return 0.0;
    };
    // proc(5): utime is field 14, stime field 15; index 0 here is field 3.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    ticks as f64 / CLOCK_TICKS_PER_SECOND
}

/// CPU seconds used so far by `pid` and its descendants.
pub fn cpu_seconds(pid: u32) -> f64 {
    process_tree(pid).into_iter().map(cpu_seconds_of).sum()
}

/// Peak resident set size in bytes (`VmHWM`), summed over the process tree.
pub fn peak_rss_bytes(pid: u32) -> u64 {
    process_tree(pid)
        .into_iter()
        .filter_map(|p| fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|status| parse_vm_hwm_kib(&status))
        .sum::<u64>()
        * 1024
}

/// Resident set size in bytes now (`VmRSS`), summed over the process tree.
pub fn rss_bytes(pid: u32) -> u64 {
    process_tree(pid)
        .into_iter()
        .filter_map(|p| fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|status| parse_status_kib(&status, "VmRSS:"))
        .sum::<u64>()
        * 1024
}

fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    parse_status_kib(status, "VmHWM:")
}

/// A `… kB` field of /proc/PID/status.
fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_cpu_and_rss() {
        let me = std::process::id();
        let spin = std::time::Instant::now();
        while spin.elapsed().as_millis() < 30 {
            std::hint::black_box(0u64);
        }
        assert!(cpu_seconds(me) > 0.0);
        assert!(peak_rss_bytes(me) > 1024 * 1024);
        assert!(rss_bytes(me) > 1024 * 1024 && rss_bytes(me) <= peak_rss_bytes(me));
        assert_eq!(process_tree(me)[0], me);
    }

    #[test]
    fn vm_hwm_is_parsed_and_missing_is_none() {
        assert_eq!(
            parse_vm_hwm_kib("Name:\tx\nVmHWM:\t  2048 kB\n"),
            Some(2048)
        );
        assert_eq!(parse_vm_hwm_kib("Name:\tx\n"), None);
        assert_eq!(
            parse_status_kib("VmHWM:\t 9 kB\nVmRSS:\t 7 kB\n", "VmRSS:"),
            Some(7)
        );
    }

    #[test]
    fn gone_process_counts_zero() {
        assert_eq!(cpu_seconds_of(u32::MAX), 0.0);
    }
}
