//! Loading the kernel object early, on threads of its own, while the
//! daemon starts everything else.
//!
//! Most of the datapath's start-up is the load itself — aya parsing the
//! kernel's BTF, the kernel allocating the preallocated LRU maps and per-CPU
//! arrays — and it attaches nothing: the maps are pinned under
//! `<pin-dir>/incoming/` (where the start pins them anyway; see
//! `sluice_ebpf::LoadedObject::load_early`), and unpinned again if the
//! object ends up unused. So when the flags alone already say the datapath
//! will be wanted (`--datapath required`, an XDP interface, sockmap on),
//! `main` starts the load before it even reads the configuration
//! ([`Preload::start_from_flags`]); when the bootstrap says so (a
//! `bind_to_port: false` listener under `--datapath auto`), right after
//! reading it ([`Preload::or_start`]). [`start`](super::start) picks the
//! object up; the plan still decides. A configuration whose services only
//! arrive by LDS loads at the usual point.

use std::path::Path;
use std::sync::mpsc;

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use sluice_ebpf::{Datapath, DatapathError, LoadOptions, LoadedObject};

use super::sockmap::SockmapSwitch;
use super::startup_clock::StageClock;
use super::{DatapathFlags, DatapathMode};

type LoadResult = Result<LoadedObject, DatapathError>;

/// A load started early, or none. Dropped unused, it waits for the load
/// and lets the object go, so its pins go too.
#[derive(Default)]
pub struct Preload {
    loading: Option<mpsc::Receiver<LoadResult>>,
}

impl Preload {
    /// Starts loading when the flags alone say the datapath will be wanted
    /// (before the configuration is read).
    pub fn start_from_flags(flags: &DatapathFlags) -> Preload {
        Preload {
            loading: wanted_by_flags(flags).then(|| spawn(flags)).flatten(),
        }
    }

    /// Starts loading, unless already started, when the bootstrap says the
    /// datapath will be wanted.
    pub fn or_start(self, flags: &DatapathFlags, bootstrap: &Bootstrap) -> Preload {
        if self.loading.is_some() || !wanted(flags, bootstrap) {
            return self;
        }
        Preload {
            loading: spawn(flags),
        }
    }

    /// The datapath loaded with `options`: from the early load when there
    /// was one (waiting for it to finish), otherwise loaded now.
    pub fn load_datapath(
        mut self,
        cgroup: &Path,
        pin_dir: &Path,
        options: LoadOptions,
        clock: &mut StageClock,
    ) -> Result<Datapath, DatapathError> {
        let early = self.loading.take().and_then(|loading| loading.recv().ok());
        let object = match early {
            Some(result) => {
                clock.stage("wait_for_early_load");
                result?
            }
            None => {
                let object = LoadedObject::load(&options)?;
                clock.stage("load");
                object
            }
        };
        let datapath = Datapath::load_from(object, cgroup, pin_dir, options);
        clock.stage("pin_maps");
        datapath
    }
}

impl Drop for Preload {
    fn drop(&mut self) {
        if let Some(loading) = self.loading.take() {
            // Wait, so that the maps it pins are unpinned with it.
            drop(loading.recv());
        }
    }
}

/// Loads on a thread of its own; the result arrives on the receiver.
fn spawn(flags: &DatapathFlags) -> Option<mpsc::Receiver<LoadResult>> {
    let options = super::load_options(flags);
    let (cgroup, pin_dir) = (flags.cgroup(), flags.pin_dir.clone());
    let (sender, receiver) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("sluice-bpf-load".into())
        .spawn(move || {
            LoadedObject::load_early(&options, &cgroup, &pin_dir, |result| {
                let _ = sender.send(result);
            })
        })
        .ok()?;
    Some(receiver)
}

/// Whether the flags alone say the datapath will be wanted.
fn wanted_by_flags(flags: &DatapathFlags) -> bool {
    match flags.datapath_mode {
        DatapathMode::Off => false,
        DatapathMode::Required => true,
        DatapathMode::Auto => {
            !flags.xdp_interfaces.is_empty() || flags.sockmap == SockmapSwitch::On
        }
    }
}

/// Whether the configuration read at start already needs the datapath.
fn wanted(flags: &DatapathFlags, bootstrap: &Bootstrap) -> bool {
    wanted_by_flags(flags)
        || (flags.datapath_mode == DatapathMode::Auto
            && bootstrap
                .static_resources
                .as_ref()
                .is_some_and(|resources| {
                    resources
                        .listeners
                        .iter()
                        .any(|listener| listener.bind_to_port.is_some_and(|bind| !bind.value))
                }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> DatapathFlags {
        super::super::parse_flags(args).expect("valid flags")
    }

    fn bootstrap(yaml: &str) -> Bootstrap {
        crate::config::load_bootstrap(None, Some(yaml)).expect("valid bootstrap")
    }

    const VIRTUAL: &str = "static_resources:\n  listeners:\n  - name: vip\n    bind_to_port: false\n    address: {socket_address: {address: 127.96.0.1, port_value: 80}}\n    filter_chains:\n    - filters: [{name: tcp, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c}}]\n  clusters:\n  - {name: c, connect_timeout: 1s, type: STATIC}\n";
    const BOUND_ONLY: &str = "static_resources:\n  listeners:\n  - name: l\n    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}\n    filter_chains:\n    - filters: [{name: tcp, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c}}]\n  clusters:\n  - {name: c, connect_timeout: 1s, type: STATIC}\n";

    #[test]
    fn a_virtual_listener_in_the_bootstrap_wants_the_datapath() {
        assert!(wanted(&flags(&[]), &bootstrap(VIRTUAL)));
        assert!(!wanted(&flags(&["--datapath", "off"]), &bootstrap(VIRTUAL)));
    }

    #[test]
    fn bound_listeners_alone_load_nothing_early_unless_required_or_asked() {
        let bound = bootstrap(BOUND_ONLY);
        assert!(!wanted(&flags(&[]), &bound));
        assert!(wanted(&flags(&["--datapath", "required"]), &bound));
        assert!(wanted(&flags(&["--datapath-xdp-iface", "lo"]), &bound));
        assert!(wanted(&flags(&["--datapath-sockmap", "on"]), &bound));
    }

    #[test]
    fn only_flags_that_decide_alone_load_before_the_configuration_is_read() {
        assert!(wanted_by_flags(&flags(&["--datapath", "required"])));
        assert!(wanted_by_flags(&flags(&["--datapath-xdp-iface", "lo"])));
        assert!(wanted_by_flags(&flags(&["--datapath-sockmap", "on"])));
        // `auto` needs the configuration to say; `off` never loads.
        assert!(!wanted_by_flags(&flags(&[])));
        assert!(!wanted_by_flags(&flags(&[
            "--datapath",
            "off",
            "--datapath-xdp-iface",
            "lo"
        ])));
    }

    #[test]
    fn sockmap_off_loads_the_object_without_sockmap_capacity() {
        assert!(super::super::load_options(&flags(&[])).without_sockmap);
        assert!(!super::super::load_options(&flags(&["--datapath-sockmap", "on"])).without_sockmap);
    }

    #[test]
    fn no_xdp_interface_loads_the_object_without_xdp_capacity() {
        assert!(super::super::load_options(&flags(&[])).without_xdp);
        assert!(!super::super::load_options(&flags(&["--datapath-xdp-iface", "lo"])).without_xdp);
    }

    #[test]
    fn nothing_wanted_loads_nothing() {
        let preload = Preload::start_from_flags(&flags(&[]));
        assert!(preload.loading.is_none());
        let preload = preload.or_start(&flags(&[]), &bootstrap(BOUND_ONLY));
        assert!(preload.loading.is_none());
    }
}
