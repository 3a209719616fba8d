//! Local acceleration, userspace side: probes the kernel for what it needs
//! (SOCKHASH maps, `sockops` and `sk_msg` programs), attaches `sk_msg` to
//! `SOCKMAP_SOCKETS` and then `sockops` to the cgroup (in that order, so
//! every socket the map receives already has the verdict program), pins
//! the maps and the sockops link, and reads the counters and attachment
//! state back from the pins (`sluicectl bpf`).
//!
//! `sk_msg` attaches to the map, not through a bpf_link: it stays attached
//! as long as the pinned map exists, so a crashed daemon leaves paired
//! sockets working. Its attachment is read back with `BPF_PROG_QUERY` on the
//! pinned map.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use aya::maps::{Map, MapData, MapType, PerCpuArray, SockHash};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{CgroupAttachMode, ProgramType, SkMsg, SockOps};
use sluice_ebpf_common::sockmap::{map_names, program_names, SockKey, SockmapCounters};

use crate::maps::{map_error, open_pinned_map};
use crate::{Datapath, DatapathError};

/// The kernel's names for the two attach points (logs, `sluicectl bpf status`).
pub const SOCKOPS_ATTACH_POINT: &str = "sockops";
pub const SK_MSG_ATTACH_POINT: &str = "sk_msg";

/// Checks that this kernel has what local acceleration needs; the error
/// says what is missing.
pub fn probe() -> Result<(), String> {
    match aya::sys::is_map_supported(MapType::SockHash) {
        Ok(true) => {}
        Ok(false) => return Err("the kernel has no SOCKHASH maps".into()),
        Err(e) => return Err(format!("probing for SOCKHASH maps failed: {e}")),
    }
    for (program, name) in [
        (ProgramType::SockOps, SOCKOPS_ATTACH_POINT),
        (ProgramType::SkMsg, SK_MSG_ATTACH_POINT),
    ] {
        match aya::sys::is_program_supported(program) {
            Ok(true) => {}
            Ok(false) => return Err(format!("the kernel has no {name} programs")),
            Err(e) => return Err(format!("probing for {name} programs failed: {e}")),
        }
    }
    Ok(())
}

/// The sockmap maps, typed.
pub struct SockmapMaps {
    pub sockets: SockHash<MapData, SockKey>,
    pub counters: PerCpuArray<MapData, SockmapCounters>,
}

impl SockmapMaps {
    fn from_maps(sockets: Map, counters: Map) -> Result<Self, DatapathError> {
        Ok(SockmapMaps {
            sockets: SockHash::try_from(sockets).map_err(map_error(map_names::SOCKMAP_SOCKETS))?,
            counters: PerCpuArray::try_from(counters)
                .map_err(map_error(map_names::SOCKMAP_COUNTERS))?,
        })
    }

    /// Opens the maps a daemon pinned under `pin_dir`.
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, DatapathError> {
        let open = |name| open_pinned_map(pin_dir, name);
        Self::from_maps(
            open(map_names::SOCKMAP_SOCKETS)?,
            open(map_names::SOCKMAP_COUNTERS)?,
        )
    }

    /// The counters summed over CPUs.
    pub fn counters(&self) -> Result<SockmapCounters, DatapathError> {
        let per_cpu = self
            .counters
            .get(&0, 0)
            .map_err(map_error(map_names::SOCKMAP_COUNTERS))?;
        Ok(per_cpu
            .iter()
            .fold(SockmapCounters::default(), |sum, c| sum.plus(c)))
    }

    /// Sockets in `SOCKMAP_SOCKETS` now (both ends of each paired connection).
    pub fn socket_count(&self) -> usize {
        self.sockets.keys().filter(Result::is_ok).count()
    }
}

/// The attached programs' state the daemon keeps.
pub(crate) struct Attached {
    sockops_link: PinnedLink,
    pub(crate) maps: SockmapMaps,
}

impl Attached {
    /// Unpins the link (detaching sockops) and the maps.
    pub(crate) fn unpin(self, pin_dir: &Path) {
        if let Err(error) = self.sockops_link.unpin() {
            tracing::warn!(hook = SOCKOPS_ATTACH_POINT, %error, "cannot unpin link");
        }
        remove_map_pins(pin_dir);
    }
}

/// Removes the sockmap map pins (a previous daemon's, or ours at exit).
pub(crate) fn remove_map_pins(pin_dir: &Path) {
    for name in map_names::ALL {
        let _ = std::fs::remove_file(pin_dir.join(name));
    }
}

impl Datapath {
    /// Local acceleration on: pins the sockmap maps, attaches `sk_msg` to
    /// `SOCKMAP_SOCKETS`, then `sockops` to `cgroup` (its link pinned).
    pub fn attach_sockmap(&mut self, cgroup: &Path) -> Result<(), DatapathError> {
        if self.options.without_sockmap {
            return Err(DatapathError::Map {
                map: map_names::SOCKMAP_SOCKETS,
                reason:
                    "the object was loaded without sockmap capacity (LoadOptions::without_sockmap)"
                        .into(),
            });
        }
        let cgroup_dir = File::open(cgroup).map_err(|source| DatapathError::Cgroup {
            path: cgroup.to_path_buf(),
            source,
        })?;
        // A previous daemon's sockmap pins (kept or left by a crash) are
        // replaced; its sockops link was retired by the hand-over.
        remove_map_pins(&self.pin_dir);
        for name in map_names::ALL {
            let map = self._ebpf.map(name).ok_or_else(|| DatapathError::Map {
                map: name,
                reason: "missing from the object".into(),
            })?;
            map.pin(self.pin_dir.join(name))
                .map_err(|e| DatapathError::Map {
                    map: name,
                    reason: format!("pinning under {} failed: {e}", self.pin_dir.display()),
                })?;
        }
        let sockets_fd = {
            let map = self
                ._ebpf
                .map(map_names::SOCKMAP_SOCKETS)
                .expect("pinned just above");
            let sockets: SockHash<&MapData, SockKey> =
                SockHash::try_from(map).map_err(map_error(map_names::SOCKMAP_SOCKETS))?;
            sockets.fd().try_clone().map_err(|e| DatapathError::Map {
                map: map_names::SOCKMAP_SOCKETS,
                reason: format!("cannot duplicate its fd: {e}"),
            })?
        };
        let program_error = |hook: &'static str, action: &'static str| {
            move |source| DatapathError::Program {
                hook,
                action,
                source,
            }
        };
        let sk_msg: &mut SkMsg = self
            ._ebpf
            .program_mut(program_names::SK_MSG)
            .ok_or(DatapathError::MissingProgram {
                hook: SK_MSG_ATTACH_POINT,
                program: program_names::SK_MSG,
            })?
            .try_into()
            .map_err(program_error(SK_MSG_ATTACH_POINT, "type check"))?;
        sk_msg
            .load()
            .map_err(program_error(SK_MSG_ATTACH_POINT, "load (verifier)"))?;
        sk_msg
            .attach(&sockets_fd)
            .map_err(program_error(SK_MSG_ATTACH_POINT, "attach"))?;

        let sockops: &mut SockOps = self
            ._ebpf
            .program_mut(program_names::SOCKOPS)
            .ok_or(DatapathError::MissingProgram {
                hook: SOCKOPS_ATTACH_POINT,
                program: program_names::SOCKOPS,
            })?
            .try_into()
            .map_err(program_error(SOCKOPS_ATTACH_POINT, "type check"))?;
        sockops
            .load()
            .map_err(program_error(SOCKOPS_ATTACH_POINT, "load (verifier)"))?;
        let link_id = sockops
            .attach(&cgroup_dir, CgroupAttachMode::Single)
            .map_err(program_error(SOCKOPS_ATTACH_POINT, "attach"))?;
        let link = sockops
            .take_link(link_id)
            .map_err(program_error(SOCKOPS_ATTACH_POINT, "take link"))?;
        let fd_link = FdLink::try_from(link).map_err(|source| DatapathError::NotALink {
            hook: SOCKOPS_ATTACH_POINT,
            source,
        })?;
        let path = self.pin_dir.join("links").join(program_names::SOCKOPS);
        let sockops_link = fd_link
            .pin(&path)
            .map_err(|source| DatapathError::PinLink {
                hook: SOCKOPS_ATTACH_POINT,
                path,
                source,
            })?;
        let mut take = |name: &'static str| {
            self._ebpf.take_map(name).ok_or(DatapathError::Map {
                map: name,
                reason: "missing from the object".into(),
            })
        };
        let maps = SockmapMaps::from_maps(
            take(map_names::SOCKMAP_SOCKETS)?,
            take(map_names::SOCKMAP_COUNTERS)?,
        )?;
        self.sockmap = Some(Attached { sockops_link, maps });
        Ok(())
    }

    /// The sockmap maps, when local acceleration is attached.
    pub fn sockmap_maps(&self) -> Option<&SockmapMaps> {
        self.sockmap.as_ref().map(|attached| &attached.maps)
    }
}

/// What `sluicectl bpf status` reports about local acceleration.
#[derive(Debug, Clone, Default)]
pub struct SockmapStatus {
    /// Link and program id of the pinned sockops link.
    pub sockops: Option<(u32, u32)>,
    /// Ids of the sk_msg programs attached to the pinned `SOCKMAP_SOCKETS`.
    pub sk_msg_program_ids: Vec<u32>,
    /// Sockets in the map (when it is pinned).
    pub sockets: Option<usize>,
}

/// Reads local acceleration's state from the pins under `pin_dir`.
pub fn pinned_status(pin_dir: &Path) -> SockmapStatus {
    let mut status = SockmapStatus::default();
    let link_path = pin_dir.join("links").join(program_names::SOCKOPS);
    if let Ok(pinned) = PinnedLink::from_pin(&link_path) {
        if let Ok(info) = FdLink::from(pinned).info() {
            status.sockops = Some((info.id(), info.program_id()));
        }
    }
    if let Ok(maps) = SockmapMaps::open_pinned(pin_dir) {
        status.sockets = Some(maps.socket_count());
        status.sk_msg_program_ids = query_sk_msg_programs(maps.sockets.fd().as_fd().as_raw_fd());
    }
    status
}

/// `BPF_PROG_QUERY` for `BPF_SK_MSG_VERDICT` on a sockmap (Linux ≥ 5.19);
/// empty when nothing is attached or the kernel cannot say.
fn query_sk_msg_programs(map_fd: i32) -> Vec<u32> {
    const BPF_PROG_QUERY: libc::c_long = 16;
    const BPF_SK_MSG_VERDICT: u32 = 7;
    /// The `query` member of `union bpf_attr`.
    #[repr(C)]
    #[derive(Default)]
    struct QueryAttr {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        _pad: u32,
        prog_attach_flags: u64,
        link_ids: u64,
        link_attach_flags: u64,
        revision: u64,
    }
    let mut ids = [0u32; 8];
    let mut attr = QueryAttr {
        target_fd: map_fd as u32,
        attach_type: BPF_SK_MSG_VERDICT,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..QueryAttr::default()
    };
    // SAFETY: `attr` is a valid bpf_attr prefix of the size passed; the
    // kernel writes at most `prog_cnt` ids into `ids`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            &mut attr as *mut QueryAttr,
            std::mem::size_of::<QueryAttr>(),
        )
    };
    if rc != 0 {
        return Vec::new();
    }
    ids[..(attr.prog_cnt as usize).min(ids.len())].to_vec()
}
