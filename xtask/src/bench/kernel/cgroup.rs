//! The cgroup v2 child the kernel scenarios run in: the harness moves itself
//! into it (so the servers and load generators it starts are inside, where
//! Sluice attaches its hooks) and back to where it was on drop, then removes
//! it. Also the privilege check that decides whether those scenarios run.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The cgroup v2 hierarchy: `/sys/fs/cgroup/unified` on hybrid hosts, else
/// `/sys/fs/cgroup` when it is cgroup2.
fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    let mut cgroup2: Vec<&str> = mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == "cgroup2").then_some(point)
        })
        .collect();
    cgroup2.sort_by_key(|point| *point != "/sys/fs/cgroup/unified");
    cgroup2.first().map(PathBuf::from)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?.to_string();
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// Why the kernel scenarios cannot run here, if they cannot.
pub fn missing_privileges() -> Option<String> {
    if !is_root() {
        return Some("needs root (eBPF programs and a cgroup v2 child)".into());
    }
    let Some(root) = cgroup2_root() else {
        return Some("no cgroup v2 hierarchy mounted".into());
    };
    if !root.join("cgroup.procs").exists() {
        return Some(format!("{} has no cgroup.procs", root.display()));
    }
    None
}

/// This process's cgroup v2 directory (from `/proc/self/cgroup`'s `0::` line).
fn current_cgroup(root: &Path) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let relative = text
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or("no cgroup v2 entry in /proc/self/cgroup")?;
    Ok(root.join(relative.trim_start_matches('/')))
}

fn move_self_to(cgroup: &Path) -> Result<(), String> {
    let procs = cgroup.join("cgroup.procs");
    std::fs::write(&procs, std::process::id().to_string())
        .map_err(|e| format!("cannot move the harness into {}: {e}", cgroup.display()))
}

/// The harness inside a fresh cgroup v2 child until dropped.
pub struct BenchCgroup {
    path: PathBuf,
    original: PathBuf,
}

impl BenchCgroup {
    pub fn enter(name: &str) -> Result<BenchCgroup, String> {
        let root = cgroup2_root().ok_or("no cgroup v2 hierarchy mounted")?;
        let original = current_cgroup(&root)?;
        let path = root.join(format!("sluice-bench-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let cgroup = BenchCgroup { path, original };
        move_self_to(&cgroup.path)?;
        Ok(cgroup)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BenchCgroup {
    fn drop(&mut self) {
        if let Err(e) = move_self_to(&self.original) {
            eprintln!("bench: {e}");
        }
        // Children stopped just before may take a moment to leave.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() || !self.path.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "bench: could not remove {} (a process is still in it)",
            self.path.display()
        );
    }
}
