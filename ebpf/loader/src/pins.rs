//! The pin directory on bpffs: making sure it can live there (mounting
//! bpffs at `/sys/fs/bpf` if needed), clearing pins, and reading what a
//! daemon pinned (`sluicectl bpf status`, whether or not it still runs).

use std::path::Path;

use aya::programs::links::{FdLink, PinnedLink};

use crate::{DatapathError, Hook};

/// Removes every pin in `dir` (a missing directory is empty).
pub(crate) fn clear_dir(dir: &Path) -> Result<(), DatapathError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        std::fs::remove_file(entry.path()).map_err(|source| DatapathError::PinDir {
            path: entry.path(),
            source,
        })?;
    }
    Ok(())
}

/// Where bpffs is conventionally mounted; mounted here if it is not yet
/// (as Cilium does) when the pin directory is below it.
const BPFFS_MOUNT: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

fn is_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills the zeroed struct; the path is NUL-terminated.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    rc == 0 && stat.f_type as i64 == BPF_FS_MAGIC
}

/// Makes sure the pin directory can live on a bpf filesystem.
pub(crate) fn ensure_bpffs(pin_dir: &Path) -> Result<(), DatapathError> {
    let mount_point = Path::new(BPFFS_MOUNT);
    let mut existing = pin_dir;
    while !existing.exists() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => break,
        }
    }
    if is_bpffs(existing) {
        return Ok(());
    }
    let not_bpffs = |reason: String| DatapathError::PinDir {
        path: pin_dir.to_path_buf(),
        source: std::io::Error::other(reason),
    };
    if existing != mount_point || !pin_dir.starts_with(mount_point) {
        return Err(not_bpffs(format!(
            "{} is not on a bpf filesystem",
            existing.display()
        )));
    }
    // SAFETY: constant NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c"/sys/fs/bpf".as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(not_bpffs(format!(
            "mounting bpffs at {BPFFS_MOUNT} failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    tracing::info!("mounted bpffs at {BPFFS_MOUNT}");
    Ok(())
}

/// A pinned link as `sluicectl bpf status` reports it.
#[derive(Debug, Clone)]
pub struct PinnedHookStatus {
    pub hook: Hook,
    pub link_id: u32,
    pub program_id: u32,
}

/// Interfaces with a pinned XDP link under `pin_dir`.
pub fn pinned_xdp_interfaces(pin_dir: &Path) -> Vec<String> {
    let mut interfaces: Vec<String> = std::fs::read_dir(pin_dir.join("links"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_prefix("xdp-").map(str::to_string)
        })
        .collect();
    interfaces.sort();
    interfaces
}

/// The hooks whose links are pinned under `pin_dir` (attached and kept
/// attached by the pin, whether or not the daemon still runs).
pub fn pinned_hooks(pin_dir: &Path) -> Vec<PinnedHookStatus> {
    let mut found = Vec::new();
    for hook in Hook::ALL {
        let path = pin_dir.join("links").join(hook.program_name());
        let Ok(pinned) = PinnedLink::from_pin(&path) else {
            continue;
        };
        let link = FdLink::from(pinned);
        if let Ok(info) = link.info() {
            found.push(PinnedHookStatus {
                hook,
                link_id: info.id(),
                program_id: info.program_id(),
            });
        }
    }
    found
}
