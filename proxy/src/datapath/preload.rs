//! Loading the kernel object early, on its own thread, while the daemon
//! starts everything else.
//!
//! Most of the datapath's start-up is the load itself — aya parsing the
//! kernel's BTF, the kernel allocating the preallocated LRU maps and
//! verifying the programs — and it touches nothing outside the process (no
//! pin, no attachment). So when the bootstrap already says the datapath
//! will be wanted (`--datapath required`, an XDP interface, sockmap on, or a
//! `bind_to_port: false` listener), `main` starts the load right after
//! reading the configuration and [`start`](super::start) picks it up; the
//! plan still decides, and an unused object is simply dropped. A
//! configuration whose services only arrive by LDS loads at the usual
//! point.

use std::path::Path;
use std::thread::JoinHandle;

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use sluice_ebpf::{Datapath, DatapathError, LoadOptions, LoadedObject};

use super::sockmap::SockmapSwitch;
use super::startup_clock::StageClock;
use super::{DatapathFlags, DatapathMode};

/// A load started by [`Preload::start`], or none.
#[derive(Default)]
pub struct Preload {
    loading: Option<JoinHandle<Result<LoadedObject, DatapathError>>>,
}

impl Preload {
    /// Starts loading on a thread of its own when `flags` and the bootstrap
    /// say the datapath will be wanted.
    pub fn start(flags: &DatapathFlags, bootstrap: &Bootstrap) -> Preload {
        if !wanted(flags, bootstrap) {
            return Preload::default();
        }
        let options = super::load_options(flags);
        let loading = std::thread::Builder::new()
            .name("sluice-bpf-load".into())
            .spawn(move || LoadedObject::load(&options))
            .ok();
        Preload { loading }
    }

    /// The datapath loaded with `options`: from the early load when there
    /// was one (waiting for it to finish), otherwise loaded now.
    pub fn load_datapath(
        self,
        cgroup: &Path,
        pin_dir: &Path,
        options: LoadOptions,
        clock: &mut StageClock,
    ) -> Result<Datapath, DatapathError> {
        let early = self.loading.and_then(|thread| thread.join().ok());
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

/// Whether the configuration read at start already needs the datapath.
fn wanted(flags: &DatapathFlags, bootstrap: &Bootstrap) -> bool {
    match flags.datapath_mode {
        DatapathMode::Off => false,
        DatapathMode::Required => true,
        DatapathMode::Auto => {
            !flags.xdp_interfaces.is_empty()
                || flags.sockmap == SockmapSwitch::On
                || bootstrap
                    .static_resources
                    .as_ref()
                    .is_some_and(|resources| {
                        resources
                            .listeners
                            .iter()
                            .any(|listener| listener.bind_to_port.is_some_and(|bind| !bind.value))
                    })
        }
    }
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
    fn nothing_wanted_loads_nothing() {
        let preload = Preload::start(&flags(&[]), &bootstrap(BOUND_ONLY));
        assert!(preload.loading.is_none());
    }
}
