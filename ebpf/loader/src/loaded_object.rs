//! The embedded object in the kernel before anything is attached:
//! [`LoadedObject`] loads it (the kernel creates the maps — on threads of
//! their own and pinned under `<pin-dir>/incoming/` by
//! [`LoadedObject::load_early`], see [`early_maps`](crate::early_maps), which
//! also keeps aya from parsing the kernel's BTF, see
//! [`vmlinux_btf`](crate::vmlinux_btf)) and verifies the hook programs on two
//! threads, so a daemon can run all of it while it starts everything else.

use std::path::Path;
use std::time::Instant;

use aya::{Ebpf, EbpfLoader};

use crate::hook_programs::verify_program;
use crate::pins::ensure_bpffs;
use crate::{early_maps, privileges, vmlinux_btf, DatapathError, Hook, LoadOptions, OBJECT};

/// The embedded object in the kernel: maps created, programs not loaded
/// yet, nothing attached; maps pinned under `<pin-dir>/incoming/` only when
/// made by [`LoadedObject::load_early`] (and unpinned if it is dropped
/// unused). The slow part of [`Datapath::load`](crate::Datapath::load) (aya parses the kernel's
/// BTF; the kernel allocates the preallocated maps), attaching nothing, so
/// a daemon can run it while it starts everything else.
pub struct LoadedObject {
    pub(crate) ebpf: Ebpf,
    /// Maps created and pinned ahead of the load ([`LoadedObject::load_early`]).
    pub(crate) early: Option<early_maps::EarlyMaps>,
}

impl LoadedObject {
    /// Checks the capabilities and loads the object.
    pub fn load(options: &LoadOptions) -> Result<Self, DatapathError> {
        let missing = privileges::missing_capabilities();
        if !missing.is_empty() {
            return Err(DatapathError::Privileges { missing });
        }
        let started = Instant::now();
        // aya 0.14 parses all of /sys/kernel/btf/vmlinux here.
        let mut loader = EbpfLoader::new();
        let btf_parsed = started.elapsed();
        let ebpf = sized(&mut loader, options)
            .override_global(aya_log::LEVEL, &options.kernel_log_level, true)
            .load(OBJECT)
            .map_err(DatapathError::Load)?;
        tracing::debug!(
            target: "sluice::datapath",
            vmlinux_btf = ?btf_parsed,
            maps_created = ?(started.elapsed() - btf_parsed),
            "eBPF object loaded"
        );
        Ok(LoadedObject { ebpf, early: None })
    }

    /// [`LoadedObject::load`] for a daemon that will attach to `cgroup` and
    /// pin under `pin_dir`: the pinned maps are created on two more threads,
    /// under `<pin_dir>/incoming/` (`early_maps`), and the loader opens
    /// them; the kernel's BTF is hidden from this thread so aya does not
    /// parse it (`vmlinux_btf`; parsed alongside the maps where that is
    /// not allowed); the hook programs are verified on two threads. The
    /// result goes to `deliver` as soon as it exists; anything parsed is
    /// freed after that, off the receiver's path. An object never used
    /// unpins its maps when dropped. Call it on a thread of its own: the
    /// thread's mounts become private to it.
    pub fn load_early(
        options: &LoadOptions,
        cgroup: &Path,
        pin_dir: &Path,
        deliver: impl FnOnce(Result<Self, DatapathError>),
    ) {
        let missing = privileges::missing_capabilities();
        if !missing.is_empty() {
            return deliver(Err(DatapathError::Privileges { missing }));
        }
        let started = Instant::now();
        // bpffs is mounted (if it must be) before this thread's mounts
        // become its own, so the pins made alongside are visible here.
        if let Err(error) = std::fs::File::open(cgroup)
            .map_err(|source| DatapathError::Cgroup {
                path: cgroup.to_path_buf(),
                source,
            })
            .and_then(|_| ensure_bpffs(pin_dir))
        {
            return deliver(Err(error));
        }
        let (maps_cgroup, maps_pin_dir) = (cgroup.to_path_buf(), pin_dir.to_path_buf());
        let shrunk = options.shrunk_maps();
        let maps_thread = std::thread::Builder::new()
            .name("sluice-bpf-maps".into())
            .spawn(move || early_maps::create(&maps_cgroup, &maps_pin_dir, &shrunk));
        // aya 0.14 parses all of /sys/kernel/btf/vmlinux here, unless it
        // is hidden from this thread (the object needs no CO-RE relocation).
        let btf_hidden = vmlinux_btf::hide_from_this_thread();
        let mut loader = EbpfLoader::new();
        let btf_parsed = started.elapsed();
        let early = match maps_thread {
            Ok(thread) => thread.join().unwrap_or_else(|_| {
                Err(DatapathError::Map {
                    map: "(all)",
                    reason: "the thread creating the maps panicked".into(),
                })
            }),
            Err(_) => early_maps::create(cgroup, pin_dir, &options.shrunk_maps()),
        };
        let early = match early {
            Ok(early) => early,
            Err(error) => return deliver(Err(error)),
        };
        let maps_ready = started.elapsed();
        for name in early.names() {
            loader.map_pin_path(name, early.pin_path(name));
        }
        let loaded = sized(&mut loader, options)
            .override_global(aya_log::LEVEL, &options.kernel_log_level, true)
            .load(OBJECT)
            .map_err(DatapathError::Load);
        tracing::debug!(
            target: "sluice::datapath",
            btf_hidden,
            vmlinux_btf = ?btf_parsed,
            maps_created_alongside = ?maps_ready,
            loaded = ?started.elapsed(),
            pinned_early = early.names().len(),
            "eBPF object loaded"
        );
        let loaded = loaded.and_then(|ebpf| {
            let mut object = LoadedObject {
                ebpf,
                early: Some(early),
            };
            object.verify_hooks()?;
            Ok(object)
        });
        tracing::debug!(target: "sluice::datapath", verified = ?started.elapsed(), "hook programs verified");
        deliver(loaded);
        // `loader` and its parsed BTF are freed here, after delivery.
    }
}

impl LoadedObject {
    /// Loads every [`Hook`]'s program into the kernel (the verifier's work;
    /// nothing is attached), split over this thread and one more: the
    /// four large socket-address programs go two to each side.
    fn verify_hooks(&mut self) -> Result<(), DatapathError> {
        let mut programs: Vec<(Hook, &mut aya::programs::Program)> = Vec::new();
        for (name, program) in self.ebpf.programs_mut() {
            if let Some(hook) = Hook::ALL
                .into_iter()
                .find(|hook| hook.program_name() == name)
            {
                programs.push((hook, program));
            }
        }
        programs.sort_by_key(|(hook, _)| Hook::ALL.iter().position(|h| h == hook));
        // Hook::ALL alternates: connect4, getpeername4, connect6, … on one
        // side; sendmsg4, recvmsg4, sendmsg6, … on the other.
        let (mine, theirs): (Vec<_>, Vec<_>) = programs
            .into_iter()
            .enumerate()
            .partition(|(index, _)| index % 2 == 0);
        let verify_all = |programs: Vec<(usize, (Hook, &mut aya::programs::Program))>| {
            programs
                .into_iter()
                .try_for_each(|(_, (hook, program))| verify_program(program, hook))
        };
        std::thread::scope(|scope| {
            let other = std::thread::Builder::new()
                .name("sluice-bpf-verify".into())
                .spawn_scoped(scope, || verify_all(theirs));
            let (mine_result, theirs_result) = match other {
                Ok(other) => (
                    verify_all(mine),
                    other.join().unwrap_or_else(|_| {
                        Err(DatapathError::Map {
                            map: "(programs)",
                            reason: "the thread verifying programs panicked".into(),
                        })
                    }),
                ),
                // No second thread: the rest are verified when attached.
                Err(_) => (verify_all(mine), Ok(())),
            };
            mine_result.and(theirs_result)
        })
    }
}

/// The loader with the capacities `options` ask for.
fn sized<'l, 'a>(loader: &'l mut EbpfLoader<'a>, options: &LoadOptions) -> &'l mut EbpfLoader<'a> {
    for name in options.shrunk_maps() {
        loader.map_max_entries(name, 1);
    }
    loader
}
