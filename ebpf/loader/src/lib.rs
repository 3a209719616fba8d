//! Userspace side of Sluice's eBPF datapath: loads the committed object
//! (`ebpf/sluice.bpf.o`, embedded, so building Sluice needs no BPF toolchain),
//! attaches its socket-LB programs to a cgroup v2, pins maps and links under a
//! pin directory, and gives typed access to the maps ([`maps::LbMaps`]).
//!
//! Pins: maps at `<pin-dir>/<MAP_NAME>` (what `bpftool map dump pinned` and
//! `sluicectl bpf` read) and links at `<pin-dir>/links/<program>`. A pinned
//! link keeps its program attached if the daemon crashes, so the kernel keeps
//! forwarding with the last maps. A start replaces whatever a previous daemon
//! left there; dropping [`Datapath`] (clean shutdown) unpins everything, which
//! detaches the programs.

pub mod maps;
pub mod sockmap;

use std::fs::File;
use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{CgroupAttachMode, CgroupSockAddr, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
pub use sluice_ebpf_common as common;
use sluice_ebpf_common::{map_names, program_names};

/// The kernel programs, built by `cargo xtask build-ebpf`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!("../../sluice.bpf.o");

/// A socket hook Sluice attaches to the cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Connect4,
    Sendmsg4,
    Getpeername4,
    Recvmsg4,
    /// The `*6` hooks handle IPv6 sockets reaching IPv4 services through
    /// v4-mapped addresses.
    Connect6,
    Sendmsg6,
    Getpeername6,
    Recvmsg6,
}

impl Hook {
    pub const ALL: [Hook; 8] = [
        Hook::Connect4,
        Hook::Sendmsg4,
        Hook::Getpeername4,
        Hook::Recvmsg4,
        Hook::Connect6,
        Hook::Sendmsg6,
        Hook::Getpeername6,
        Hook::Recvmsg6,
    ];

    /// The program's name in the object (and its link's pin name).
    pub fn program_name(self) -> &'static str {
        match self {
            Hook::Connect4 => program_names::CONNECT4,
            Hook::Sendmsg4 => program_names::SENDMSG4,
            Hook::Getpeername4 => program_names::GETPEERNAME4,
            Hook::Recvmsg4 => program_names::RECVMSG4,
            Hook::Connect6 => program_names::CONNECT6,
            Hook::Sendmsg6 => program_names::SENDMSG6,
            Hook::Getpeername6 => program_names::GETPEERNAME6,
            Hook::Recvmsg6 => program_names::RECVMSG6,
        }
    }

    /// The kernel's name for the attach point, as in logs and `bpftool`.
    pub fn attach_point(self) -> &'static str {
        match self {
            Hook::Connect4 => "cgroup/connect4",
            Hook::Sendmsg4 => "cgroup/sendmsg4",
            Hook::Getpeername4 => "cgroup/getpeername4",
            Hook::Recvmsg4 => "cgroup/recvmsg4",
            Hook::Connect6 => "cgroup/connect6",
            Hook::Sendmsg6 => "cgroup/sendmsg6",
            Hook::Getpeername6 => "cgroup/getpeername6",
            Hook::Recvmsg6 => "cgroup/recvmsg6",
        }
    }
}

/// Why the datapath could not start; each names the hook, map or path.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("cannot open cgroup v2 {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pin directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("{hook}: program {program} is missing from the object")]
    MissingProgram {
        hook: &'static str,
        program: &'static str,
    },
    #[error("{hook}: {action} failed: {source}")]
    Program {
        hook: &'static str,
        action: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("{hook}: attached without a bpf_link (kernel older than 5.7?): {source}")]
    NotALink {
        hook: &'static str,
        source: aya::programs::links::LinkError,
    },
    #[error("{hook}: pinning its link at {path} failed: {source}")]
    PinLink {
        hook: &'static str,
        path: PathBuf,
        source: aya::pin::PinError,
    },
    #[error("xdp on {interface}: attach failed in native and generic mode: {source}")]
    Xdp {
        interface: String,
        source: aya::programs::ProgramError,
    },
    #[error("map {map}: {reason}")]
    Map { map: &'static str, reason: String },
}

/// The loaded, attached and pinned datapath. Dropping it detaches and unpins.
pub struct Datapath {
    pin_dir: PathBuf,
    links: Vec<(Hook, PinnedLink)>,
    /// XDP links by interface name.
    xdp_links: Vec<(String, PinnedLink)>,
    maps: Option<maps::LbMaps>,
    /// Local acceleration, when attached ([`Datapath::attach_sockmap`]).
    sockmap: Option<sockmap::Attached>,
    // Keeps the programs' fds; declared last so it drops after the links.
    _ebpf: Ebpf,
}

impl Datapath {
    /// Loads the embedded object, pins its maps under `pin_dir` (replacing
    /// what a previous daemon left) and attaches every [`Hook`] to `cgroup`.
    pub fn start(cgroup: &Path, pin_dir: &Path) -> Result<Self, DatapathError> {
        let cgroup_dir = File::open(cgroup).map_err(|source| DatapathError::Cgroup {
            path: cgroup.to_path_buf(),
            source,
        })?;
        ensure_bpffs(pin_dir)?;
        remove_pins(pin_dir)?;
        let links_dir = pin_dir.join("links");
        std::fs::create_dir_all(&links_dir).map_err(|source| DatapathError::PinDir {
            path: links_dir.clone(),
            source,
        })?;
        let ebpf = EbpfLoader::new()
            .load(OBJECT)
            .map_err(DatapathError::Load)?;
        for name in map_names::ALL {
            let map = ebpf.map(name).ok_or_else(|| DatapathError::Map {
                map: name,
                reason: "missing from the object".into(),
            })?;
            map.pin(pin_dir.join(name))
                .map_err(|e| DatapathError::Map {
                    map: name,
                    reason: format!("pinning under {} failed: {e}", pin_dir.display()),
                })?;
        }
        let mut datapath = Datapath {
            pin_dir: pin_dir.to_path_buf(),
            links: Vec::new(),
            xdp_links: Vec::new(),
            maps: None,
            sockmap: None,
            _ebpf: ebpf,
        };
        for hook in Hook::ALL {
            let link = attach(&mut datapath._ebpf, hook, &cgroup_dir, &links_dir)?;
            datapath.links.push((hook, link));
        }
        datapath.maps = Some(maps::LbMaps::from_loaded(&mut datapath._ebpf)?);
        Ok(datapath)
    }

    /// The hooks attached, in attach order.
    pub fn hooks(&self) -> impl Iterator<Item = Hook> + '_ {
        self.links.iter().map(|(hook, _)| *hook)
    }

    /// Typed access to the load-balancing maps.
    pub fn maps(&mut self) -> &mut maps::LbMaps {
        self.maps.as_mut().expect("maps are taken at start")
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Attaches the XDP program to `interface`: native (driver) mode where
    /// the driver has it, generic otherwise; returns the mode used.
    pub fn attach_xdp(&mut self, interface: &str) -> Result<&'static str, DatapathError> {
        const HOOK: &str = "xdp";
        let program_error = |action| {
            move |source| DatapathError::Program {
                hook: HOOK,
                action,
                source,
            }
        };
        let program: &mut Xdp = self
            ._ebpf
            .program_mut(program_names::XDP)
            .ok_or(DatapathError::MissingProgram {
                hook: HOOK,
                program: program_names::XDP,
            })?
            .try_into()
            .map_err(program_error("type check"))?;
        if program.fd().is_err() {
            program.load().map_err(program_error("load (verifier)"))?;
        }
        let (link_id, mode) = match program.attach(interface, XdpMode::Driver) {
            Ok(link_id) => (link_id, "native"),
            Err(_) => (
                program
                    .attach(interface, XdpMode::Skb)
                    .map_err(|source| DatapathError::Xdp {
                        interface: interface.to_string(),
                        source,
                    })?,
                "generic",
            ),
        };
        let link = program
            .take_link(link_id)
            .map_err(program_error("take link"))?;
        let fd_link = FdLink::try_from(link)
            .map_err(|source| DatapathError::NotALink { hook: HOOK, source })?;
        let path = self.pin_dir.join("links").join(format!("xdp-{interface}"));
        let pinned = fd_link
            .pin(&path)
            .map_err(|source| DatapathError::PinLink {
                hook: HOOK,
                path,
                source,
            })?;
        self.xdp_links.push((interface.to_string(), pinned));
        Ok(mode)
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        for (interface, link) in self.xdp_links.drain(..) {
            if let Err(error) = link.unpin() {
                tracing::warn!(%interface, %error, "cannot unpin xdp link");
            }
        }
        if let Some(attached) = self.sockmap.take() {
            attached.unpin(&self.pin_dir);
        }
        for (hook, link) in self.links.drain(..) {
            if let Err(error) = link.unpin() {
                tracing::warn!(hook = hook.attach_point(), %error, "cannot unpin link");
            }
        }
        for name in map_names::ALL {
            let _ = std::fs::remove_file(self.pin_dir.join(name));
        }
        let _ = std::fs::remove_dir(self.pin_dir.join("links"));
        let _ = std::fs::remove_dir(&self.pin_dir);
    }
}

fn attach(
    ebpf: &mut Ebpf,
    hook: Hook,
    cgroup: &File,
    links_dir: &Path,
) -> Result<PinnedLink, DatapathError> {
    let point = hook.attach_point();
    let program_error = |action| {
        move |source| DatapathError::Program {
            hook: point,
            action,
            source,
        }
    };
    let program: &mut CgroupSockAddr = ebpf
        .program_mut(hook.program_name())
        .ok_or(DatapathError::MissingProgram {
            hook: point,
            program: hook.program_name(),
        })?
        .try_into()
        .map_err(program_error("type check"))?;
    program.load().map_err(program_error("load (verifier)"))?;
    let link_id = program
        .attach(cgroup, CgroupAttachMode::Single)
        .map_err(program_error("attach"))?;
    let link = program
        .take_link(link_id)
        .map_err(program_error("take link"))?;
    let fd_link = FdLink::try_from(link).map_err(|source| DatapathError::NotALink {
        hook: point,
        source,
    })?;
    let path = links_dir.join(hook.program_name());
    fd_link.pin(&path).map_err(|source| DatapathError::PinLink {
        hook: point,
        path,
        source,
    })
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
fn ensure_bpffs(pin_dir: &Path) -> Result<(), DatapathError> {
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

/// Removes a previous daemon's pins: unpinning its links detaches its
/// programs; its maps go with them (a new start fills fresh maps).
fn remove_pins(pin_dir: &Path) -> Result<(), DatapathError> {
    let links_dir = pin_dir.join("links");
    if let Ok(entries) = std::fs::read_dir(&links_dir) {
        for entry in entries.flatten() {
            std::fs::remove_file(entry.path()).map_err(|source| DatapathError::PinDir {
                path: entry.path(),
                source,
            })?;
        }
    }
    for name in map_names::ALL {
        let path = pin_dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(DatapathError::PinDir { path, source }),
        }
    }
    sockmap::remove_map_pins(pin_dir);
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
