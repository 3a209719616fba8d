//! `--datapath-sockmap on|off`: local acceleration (`sockops` + `sk_msg` over
//! a SOCKHASH, see `sluice-ebpf`'s `sockmap` module) for TCP connections with
//! both ends on this node, attached to the same cgroup as the socket hooks.
//!
//! Default **off**. Sockmap has a record of kernel bugs (Cilium removed its
//! sockmap acceleration), it changes how every local TCP socket in the
//! cgroup sends and receives, and detaching it (daemon exit, turning it off)
//! with bytes still queued on a paired socket is exactly the kind of path
//! where such bugs lived. It is an opt-in for nodes that measured it (see
//! BENCHMARKS.md). When on, start-up probes the kernel (SOCKHASH maps,
//! `sockops` and `sk_msg` programs), attaches, and logs once what is on or
//! off and why; `--datapath required` turns any failure into a non-zero
//! exit, `--datapath auto` into a warning and plain TCP.

use std::path::Path;

use sluice_ebpf::Datapath;

use super::{DatapathFlags, DatapathMode};

/// The value of `--datapath-sockmap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SockmapSwitch {
    /// Local TCP pairs move data socket to socket, skipping the TCP/IP stack.
    On,
    /// Plain TCP for every connection (default).
    #[default]
    Off,
}

/// Why the flags cannot work together, if they cannot.
pub fn check_flags(flags: &DatapathFlags) -> Result<(), String> {
    if flags.sockmap == SockmapSwitch::On && flags.datapath_mode == DatapathMode::Off {
        return Err(
            "--datapath-sockmap on needs the kernel datapath: use --datapath auto or \
                    required, not --datapath off"
                .into(),
        );
    }
    Ok(())
}

/// Whether local acceleration gives the datapath work to do: on, and the
/// kernel has what it needs. Logs once why not, when it is on but cannot
/// be; `Err(exit code)` under `--datapath required`.
pub fn wanted(flags: &DatapathFlags) -> Result<bool, i32> {
    if flags.sockmap == SockmapSwitch::Off {
        tracing::info!(target: "sluice::datapath", "sockmap acceleration off (the default; --datapath-sockmap on enables it)");
        return Ok(false);
    }
    match sluice_ebpf::sockmap::probe() {
        Ok(()) => Ok(true),
        Err(reason) if flags.datapath_mode == DatapathMode::Required => {
            eprintln!("--datapath required: --datapath-sockmap on: {reason}");
            Err(1)
        }
        Err(reason) => {
            tracing::warn!(target: "sluice::datapath", "sockmap acceleration off: {reason}; local connections use the TCP/IP stack");
            Ok(false)
        }
    }
}

/// Attaches local acceleration to `cgroup`; logs the outcome once.
pub fn attach(flags: &DatapathFlags, cgroup: &Path, datapath: &mut Datapath) -> Result<(), i32> {
    match datapath.attach_sockmap(cgroup) {
        Ok(()) => {
            tracing::info!(
                target: "sluice::datapath",
                cgroup = %cgroup.display(),
                "sockmap acceleration on (sockops + sk_msg): TCP connections with both ends on this node skip the TCP/IP stack"
            );
            Ok(())
        }
        Err(error) if flags.datapath_mode == DatapathMode::Required => {
            eprintln!("--datapath required: --datapath-sockmap on: {error}");
            Err(1)
        }
        Err(error) => {
            tracing::warn!(target: "sluice::datapath", "sockmap acceleration off: {error}; local connections use the TCP/IP stack");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::parse_flags as parse;

    #[test]
    fn sockmap_is_off_by_default_and_takes_on_or_off() {
        assert_eq!(parse(&[]).unwrap().sockmap, SockmapSwitch::Off);
        assert_eq!(
            parse(&["--datapath-sockmap", "on"]).unwrap().sockmap,
            SockmapSwitch::On
        );
        let error = parse(&["--datapath-sockmap", "yes"]).err().unwrap();
        assert!(error.to_string().contains("invalid value 'yes'"), "{error}");
    }

    #[test]
    fn sockmap_on_with_the_datapath_off_is_refused() {
        let flags = parse(&["--datapath", "off", "--datapath-sockmap", "on"]).unwrap();
        assert!(check_flags(&flags).unwrap_err().contains("--datapath off"));
        let flags = parse(&["--datapath-sockmap", "on"]).unwrap();
        assert!(check_flags(&flags).is_ok());
        let flags = parse(&["--datapath", "off"]).unwrap();
        assert!(check_flags(&flags).is_ok());
    }
}
