//! Userspace side of Sluice's eBPF datapath: loads the committed object
//! (`ebpf/sluice.bpf.o`, embedded, so building Sluice needs no BPF toolchain),
//! attaches its socket-LB programs to a cgroup v2, pins maps and links under a
//! pin directory, and gives typed access to the maps ([`maps::LbMaps`]).
//!
//! Pins: maps at `<pin-dir>/<MAP_NAME>` (what `bpftool map dump pinned` and
//! `sluicectl bpf` read) and links at `<pin-dir>/links/<program>`. A pinned
//! link keeps its program attached if the daemon crashes, so the kernel keeps
//! forwarding with the last maps. A start takes over whatever a previous
//! daemon left there without a gap ([`handover`]): [`Datapath::load`] loads
//! fresh maps (pinned under `<pin-dir>/incoming/` until they are live), the
//! caller fills them, [`Datapath::attach_hooks`] attaches next to the previous
//! programs and publishes the maps, [`Datapath::finish_handover`] lets the
//! previous links go. Dropping [`Datapath`] (clean shutdown) unpins
//! everything, which detaches the programs — unless `keep_pins` is set, in
//! which case the kernel keeps forwarding until the next start takes over.

mod batch;
mod early_maps;
pub mod handover;
mod hook_programs;
pub mod kernel_log;
mod loaded_object;
pub mod maps;
mod pins;
pub mod privileges;
pub mod socket_maps;
pub mod sockmap;
mod vmlinux_btf;
pub mod xdp_mode;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aya::programs::links::FdLink;
use aya::programs::xdp::XdpLink;
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;
use hook_programs::{attach, verify};
pub use loaded_object::LoadedObject;
use pins::clear_dir;
pub use pins::{pinned_hooks, pinned_xdp_interfaces, PinnedHookStatus};
pub use sluice_ebpf_common as common;
use sluice_ebpf_common::{map_names, program_names};
pub use xdp_mode::XdpAttachMode;

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
    /// sockops: re-keys the original destination of connections redirected
    /// to Sluice's L7 listener by the client's address.
    SockopsRedirect,
}

impl Hook {
    pub const ALL: [Hook; 9] = [
        Hook::Connect4,
        Hook::Sendmsg4,
        Hook::Getpeername4,
        Hook::Recvmsg4,
        Hook::Connect6,
        Hook::Sendmsg6,
        Hook::Getpeername6,
        Hook::Recvmsg6,
        Hook::SockopsRedirect,
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
            Hook::SockopsRedirect => program_names::SOCKOPS_REDIRECT,
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
            Hook::SockopsRedirect => "cgroup/sock_ops",
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
    #[error("missing {} (not root? grant CAP_BPF and CAP_NET_ADMIN)", missing.join(" and "))]
    Privileges { missing: Vec<&'static str> },
}

/// How [`Datapath::load`] loads the object and what a clean shutdown does.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Leave links and maps pinned on drop (the kernel keeps forwarding
    /// until the next start takes over).
    pub keep_pins: bool,
    /// Local acceleration stays off for this daemon's lifetime: the
    /// sockmap maps (a 65,536-entry SOCKHASH and a preallocated 65,536-entry
    /// LRU, ~2 ms of start-up and ~5 MiB of kernel memory) are created with
    /// one entry, and [`Datapath::attach_sockmap`] refuses.
    pub without_sockmap: bool,
    /// No XDP interface for this daemon's lifetime: `XDP_COUNTERS` and
    /// `XDP_SERVICE_COUNTERS` (per-CPU arrays of 4,096 entries, 40 bytes
    /// per entry and CPU together, ~3 ms to create) get one entry — every
    /// service's XDP counters read zero, as they would — and
    /// [`Datapath::attach_xdp`] refuses.
    pub without_xdp: bool,
    /// `AYA_LOG_LEVEL` for the programs' `aya-log` records (0: none; see
    /// [`kernel_log::kernel_level`]).
    pub kernel_log_level: u8,
}

impl LoadOptions {
    /// Maps created smaller than the object defines them, by these options.
    pub(crate) fn shrunk_maps(&self) -> Vec<&'static str> {
        let mut maps = Vec::new();
        if self.without_sockmap {
            maps.extend(sluice_ebpf_common::sockmap::map_names::ALL);
        }
        if self.without_xdp {
            maps.extend([map_names::XDP_COUNTERS, map_names::XDP_SERVICE_COUNTERS]);
        }
        maps
    }
}

/// An XDP attachment: the interface and the mode the kernel reports.
#[derive(Debug, Clone)]
pub struct XdpAttachment {
    pub interface: String,
    pub mode: XdpAttachMode,
    /// Updated in place from the previous daemon's link (no gap).
    pub adopted: bool,
}

/// Subdirectory of the pin directory where a starting daemon pins its maps
/// and links until they are live.
const INCOMING: &str = "incoming";

/// The loaded, attached and pinned datapath. Dropping it detaches and unpins
/// (unless [`LoadOptions::keep_pins`]).
pub struct Datapath {
    pin_dir: PathBuf,
    cgroup_dir: File,
    options: LoadOptions,
    links: Vec<(Hook, FdLink)>,
    /// XDP links by interface.
    xdp_links: Vec<(XdpAttachment, FdLink)>,
    maps: Option<maps::LbMaps>,
    /// What a previous daemon left pinned, until [`Datapath::finish_handover`].
    previous: Option<handover::Previous>,
    /// Our maps and links are at the canonical pin paths.
    published: bool,
    /// Local acceleration, when attached ([`Datapath::attach_sockmap`]).
    sockmap: Option<sockmap::Attached>,
    // Keeps the programs' fds; declared last so it drops after the links.
    _ebpf: Ebpf,
}

impl Datapath {
    /// Loads the embedded object, attaches every [`Hook`] to `cgroup` and
    /// pins under `pin_dir`, taking over from a previous daemon's pins.
    /// (Maps are empty when the hooks attach; the daemon uses
    /// [`Datapath::load`] and fills them first.)
    pub fn start(cgroup: &Path, pin_dir: &Path) -> Result<Self, DatapathError> {
        let mut datapath = Self::load(cgroup, pin_dir, LoadOptions::default())?;
        datapath.attach_hooks()?;
        datapath.finish_handover();
        Ok(datapath)
    }

    /// Loads the embedded object with fresh maps, pinned under
    /// `<pin_dir>/incoming/` and not attached yet; a previous daemon's pins
    /// stay in force (its programs keep forwarding) until
    /// [`Datapath::attach_hooks`].
    pub fn load(
        cgroup: &Path,
        pin_dir: &Path,
        options: LoadOptions,
    ) -> Result<Self, DatapathError> {
        Self::load_from(LoadedObject::load(&options)?, cgroup, pin_dir, options)
    }

    /// [`Datapath::load`] with the object already in the kernel (loaded
    /// early, on another thread, with the same `options`).
    pub fn load_from(
        object: LoadedObject,
        cgroup: &Path,
        pin_dir: &Path,
        options: LoadOptions,
    ) -> Result<Self, DatapathError> {
        let LoadedObject { mut ebpf, early } = object;
        let cgroup_dir = File::open(cgroup).map_err(|source| DatapathError::Cgroup {
            path: cgroup.to_path_buf(),
            source,
        })?;
        // Maps pinned early for another directory are unpinned (dropped).
        let early = early.filter(|early| early.pin_dir() == pin_dir);
        if early.is_none() {
            early_maps::prepare_pin_dir(pin_dir)?;
        }
        let pinned_early = early.as_ref().map(|early| early.names()).unwrap_or(&[]);
        let links_dir = pin_dir.join("links");
        let incoming = pin_dir.join(INCOMING);
        let previous = handover::Previous::open(&links_dir);
        for name in map_names::ALL {
            let map = ebpf.map(name).ok_or_else(|| DatapathError::Map {
                map: name,
                reason: "missing from the object".into(),
            })?;
            if pinned_early.contains(&name) {
                continue; // pinned there already
            }
            map.pin(incoming.join(name))
                .map_err(|e| DatapathError::Map {
                    map: name,
                    reason: format!("pinning under {} failed: {e}", incoming.display()),
                })?;
        }
        let maps = maps::LbMaps::from_loaded(&mut ebpf)?;
        if let Some(early) = early {
            early.keep(); // the datapath's drop clears `incoming/` from now on
        }
        Ok(Datapath {
            pin_dir: pin_dir.to_path_buf(),
            cgroup_dir,
            options,
            links: Vec::new(),
            xdp_links: Vec::new(),
            maps: Some(maps),
            previous: (!previous.is_empty()).then_some(previous),
            published: false,
            sockmap: None,
            _ebpf: ebpf,
        })
    }

    /// Attaches every [`Hook`] (next to a previous daemon's programs, if
    /// any), carries the previous deny lists and reverse entries over, and
    /// publishes this daemon's maps and links at the canonical pin paths.
    pub fn attach_hooks(&mut self) -> Result<(), DatapathError> {
        let (mut verifying, mut attaching, mut publishing) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for hook in Hook::ALL {
            let started = Instant::now();
            verify(&mut self._ebpf, hook)?;
            let verified = Instant::now();
            let link = attach(&mut self._ebpf, hook, &self.cgroup_dir)?;
            let attached = Instant::now();
            let link = self.publish_link(hook.attach_point(), hook.program_name(), link)?;
            self.links.push((hook, link));
            verifying += verified - started;
            attaching += attached - verified;
            publishing += attached.elapsed();
        }
        tracing::debug!(target: "sluice::datapath", ?verifying, ?attaching, ?publishing, "hooks attached");
        if self.previous.is_some() {
            let carried = handover::carry_over(&self.pin_dir, &mut self._ebpf);
            tracing::info!(
                target: "sluice::datapath",
                deny4 = carried.deny4,
                deny6 = carried.deny6,
                reverse = carried.reverse,
                "taking over from the previous daemon's pins"
            );
        }
        let incoming = self.pin_dir.join(INCOMING);
        for name in map_names::ALL {
            let (from, to) = (incoming.join(name), self.pin_dir.join(name));
            std::fs::rename(&from, &to).map_err(|e| DatapathError::Map {
                map: name,
                reason: format!("publishing its pin at {} failed: {e}", to.display()),
            })?;
        }
        self.published = true;
        Ok(())
    }

    /// Lets a previous daemon's links go (its programs detach; ours are
    /// attached already). Call after [`Datapath::attach_xdp`] so XDP links
    /// are updated in place rather than detached and re-attached.
    pub fn finish_handover(&mut self) {
        let Some(previous) = self.previous.take() else {
            return;
        };
        let replaced: Vec<String> = self
            .links
            .iter()
            .map(|(hook, _)| hook.program_name().to_string())
            .chain(
                self.xdp_links
                    .iter()
                    .map(|(xdp, _)| format!("xdp-{}", xdp.interface)),
            )
            .collect();
        let retired: Vec<String> = previous.link_names().map(str::to_string).collect();
        previous.retire(&self.pin_dir.join("links"), &replaced);
        tracing::info!(target: "sluice::datapath", links = ?retired, "previous daemon's links replaced");
    }

    /// Whether a previous daemon's pinned links were found at load.
    pub fn took_over(&self) -> bool {
        self.previous.is_some()
    }

    /// Pins `link` under `incoming/` and renames it over `links/<name>`
    /// (replacing a previous daemon's pin in one step); returns the link.
    fn publish_link(
        &self,
        hook: &'static str,
        name: &str,
        link: FdLink,
    ) -> Result<FdLink, DatapathError> {
        let incoming = self.pin_dir.join(INCOMING).join(name);
        let path = self.pin_dir.join("links").join(name);
        let pinned = link
            .pin(&incoming)
            .map_err(|source| DatapathError::PinLink {
                hook,
                path: incoming.clone(),
                source,
            })?;
        std::fs::rename(&incoming, &path).map_err(|source| DatapathError::PinDir {
            path: path.clone(),
            source,
        })?;
        // The pin now lives at `path`; the fd keeps the link for us.
        Ok(FdLink::from(pinned))
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

    /// A handle on `REDIRECT_ORIGINAL_DST` of its own (one per accepting
    /// worker, so lookups need no lock).
    /// Before [`Datapath::attach_hooks`] publishes the maps, this opens the
    /// one being filled under `incoming/` (not a previous daemon's).
    pub fn redirect_map(&self) -> Result<maps::RedirectMap, DatapathError> {
        if self.published {
            maps::RedirectMap::open_pinned(&self.pin_dir)
        } else {
            maps::RedirectMap::open_pinned(&self.pin_dir.join(INCOMING))
        }
    }

    /// A handle on `REDIRECT6_ORIGINAL_DST` of its own (one per worker
    /// accepting on the IPv6 redirect address); like [`Datapath::redirect_map`],
    /// the one being filled under `incoming/` until the maps are published.
    pub fn redirect6_map(&self) -> Result<socket_maps::Redirect6Map, DatapathError> {
        if self.published {
            socket_maps::Redirect6Map::open_pinned(&self.pin_dir)
        } else {
            socket_maps::Redirect6Map::open_pinned(&self.pin_dir.join(INCOMING))
        }
    }

    /// Attaches the XDP program to `interface`: native (driver) mode where
    /// the driver has it, generic otherwise. A previous daemon's XDP link on
    /// the interface is updated in place instead (no gap, same mode). The
    /// mode returned is what the kernel reports for the interface.
    pub fn attach_xdp(&mut self, interface: &str) -> Result<XdpAttachment, DatapathError> {
        const HOOK: &str = "xdp";
        if self.options.without_xdp {
            return Err(DatapathError::Map {
                map: map_names::XDP_COUNTERS,
                reason: "the object was loaded without XDP capacity (LoadOptions::without_xdp)"
                    .into(),
            });
        }
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
        let previous = self
            .previous
            .as_mut()
            .and_then(|previous| previous.take_xdp_link(interface));
        let mut adopted = false;
        let mut link_id = None;
        if let Some(previous) = previous {
            match XdpLink::try_from(previous).map(|link| program.attach_to_link(link)) {
                Ok(Ok(id)) => {
                    adopted = true;
                    link_id = Some(id);
                }
                Ok(Err(error)) => {
                    tracing::warn!(target: "sluice::datapath", %interface, %error, "cannot update the previous xdp link in place; attaching anew")
                }
                Err(error) => {
                    tracing::warn!(target: "sluice::datapath", %interface, %error, "previous xdp pin is not an xdp link; attaching anew")
                }
            }
            if !adopted {
                // Its pin would keep the old program attached (EBUSY).
                let _ = std::fs::remove_file(
                    self.pin_dir.join("links").join(format!("xdp-{interface}")),
                );
            }
        }
        let link_id = match link_id {
            Some(id) => id,
            None => match program.attach(interface, XdpMode::Driver) {
                Ok(id) => id,
                Err(_) => program.attach(interface, XdpMode::Skb).map_err(|source| {
                    DatapathError::Xdp {
                        interface: interface.to_string(),
                        source,
                    }
                })?,
            },
        };
        let link = program
            .take_link(link_id)
            .map_err(program_error("take link"))?;
        let fd_link = FdLink::try_from(link)
            .map_err(|source| DatapathError::NotALink { hook: HOOK, source })?;
        let fd_link = self.publish_link(HOOK, &format!("xdp-{interface}"), fd_link)?;
        let mode = interface_index(interface)
            .and_then(|ifindex| xdp_mode::attached_mode(ifindex).ok().flatten())
            .ok_or_else(|| DatapathError::Xdp {
                interface: interface.to_string(),
                source: aya::programs::ProgramError::IOError(std::io::Error::other(
                    "attached, but the kernel reports no XDP program on the interface",
                )),
            })?;
        let attachment = XdpAttachment {
            interface: interface.to_string(),
            mode,
            adopted,
        };
        self.xdp_links.push((attachment.clone(), fd_link));
        Ok(attachment)
    }

    /// The XDP attachments made by this daemon.
    pub fn xdp_attachments(&self) -> impl Iterator<Item = &XdpAttachment> + '_ {
        self.xdp_links.iter().map(|(attachment, _)| attachment)
    }

    /// Whether a clean shutdown leaves the pins (and the programs attached).
    pub fn keeps_pins(&self) -> bool {
        self.options.keep_pins
    }

    /// Starts reading the programs' `aya-log` records; they go to `tracing`
    /// under [`kernel_log::TARGET`] each time the logger is flushed (when its
    /// fd is readable). Fails when the object has no log map.
    pub fn take_kernel_logger(&mut self) -> Result<kernel_log::KernelLogger, aya_log::Error> {
        aya_log::EbpfLogger::init_with_logger(&mut self._ebpf, kernel_log::TracingBridge)
    }
}

/// The ifindex of `interface` (`None` when there is no such interface).
pub fn interface_index(interface: &str) -> Option<u32> {
    let name = std::ffi::CString::new(interface).ok()?;
    // SAFETY: NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (ifindex != 0).then_some(ifindex)
}

impl Drop for Datapath {
    fn drop(&mut self) {
        if self.options.keep_pins && self.published {
            tracing::info!(
                target: "sluice::datapath",
                pin_dir = %self.pin_dir.display(),
                "--datapath-keep-pins: programs stay attached and maps pinned for the next start"
            );
            return; // our fds close; the pins keep links and maps alive
        }
        if let Some(attached) = self.sockmap.take() {
            attached.unpin(&self.pin_dir);
        }
        // Unpinning the links detaches the programs once our fds close.
        let _ = clear_dir(&self.pin_dir.join("links"));
        let _ = clear_dir(&self.pin_dir.join(INCOMING));
        for name in map_names::ALL {
            let _ = std::fs::remove_file(self.pin_dir.join(name));
        }
        for dir in ["links", INCOMING] {
            let _ = std::fs::remove_dir(self.pin_dir.join(dir));
        }
        if let Err(error) = std::fs::remove_dir(&self.pin_dir) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(target: "sluice::datapath", pin_dir = %self.pin_dir.display(), %error, "pin directory not removed");
            }
        }
    }
}
