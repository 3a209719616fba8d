//! The daemon's end of the transparent L7 redirect: the
//! `--datapath-redirect-to` address, bound (one socket per worker) the
//! first time the plan has a redirect service and before the kernel is
//! told to redirect anything there, and the kernel map the accept loops
//! read original destinations from (`REDIRECT_ORIGINAL_DST`, one handle
//! per worker).

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;

use sluice_ebpf::maps::RedirectMap;
use sluice_ebpf::Datapath;

use crate::listener::{ListenerManager, OriginalDestinations, RedirectStats};
use crate::stats::Store;

/// Default `--datapath-redirect-to`.
pub const DEFAULT_REDIRECT_TO: &str = "127.0.0.1:15001";

/// Parses `--datapath-redirect-to`: an IPv4 address and a non-zero port
/// (the kernel rewrites IPv4 connects to it).
pub fn parse_redirect_to(text: &str) -> Result<SocketAddrV4, String> {
    match text.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(address)) if address.port() != 0 && !address.ip().is_unspecified() => {
            Ok(address)
        }
        Ok(SocketAddr::V4(address)) if address.port() == 0 => {
            Err(format!("'{text}': the redirect port cannot be 0"))
        }
        Ok(SocketAddr::V4(_)) => Err(format!(
            "'{text}': the kernel needs an address to connect to, not 0.0.0.0"
        )),
        Ok(SocketAddr::V6(_)) => Err(format!(
            "'{text}': the redirect address must be IPv4 (IPv6 services are not implemented yet)"
        )),
        Err(_) => Err(format!(
            "'{text}' is not IP:PORT (e.g. {DEFAULT_REDIRECT_TO})"
        )),
    }
}

impl OriginalDestinations for RedirectMap {
    fn take(&mut self, client: SocketAddrV4) -> Option<SocketAddrV4> {
        RedirectMap::take(self, client)
    }
}

/// The redirect address and whether the daemon accepts on it yet.
pub struct RedirectListener {
    address: SocketAddrV4,
    store: Store,
    serving: bool,
}

impl RedirectListener {
    pub fn new(address: SocketAddrV4, store: &Store) -> Self {
        RedirectListener {
            address,
            store: store.clone(),
            serving: false,
        }
    }

    /// Where the plan may redirect to: the address once it is served, or
    /// while it may still be served.
    pub fn address(&self) -> SocketAddrV4 {
        self.address
    }

    /// Starts accepting on the address (once); the kernel must not redirect
    /// there before this succeeded.
    pub fn ensure_serving(
        &mut self,
        listeners: &Arc<ListenerManager>,
        datapath: &Datapath,
    ) -> Result<(), String> {
        if self.serving {
            return Ok(());
        }
        listeners.serve_redirect(
            SocketAddr::V4(self.address),
            || {
                datapath
                    .redirect_map()
                    .map(|map| Box::new(map) as Box<dyn OriginalDestinations>)
                    .map_err(|e| e.to_string())
            },
            RedirectStats::new(&self.store),
        )?;
        self.serving = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_addresses_are_ipv4_with_a_port() {
        assert_eq!(
            parse_redirect_to("127.0.0.1:15001"),
            Ok("127.0.0.1:15001".parse().unwrap())
        );
        assert!(parse_redirect_to("127.0.0.1")
            .unwrap_err()
            .contains("not IP:PORT"));
        assert!(parse_redirect_to("localhost:15001")
            .unwrap_err()
            .contains("not IP:PORT"));
        assert!(parse_redirect_to("127.0.0.1:0")
            .unwrap_err()
            .contains("cannot be 0"));
        assert!(parse_redirect_to("0.0.0.0:15001")
            .unwrap_err()
            .contains("0.0.0.0"));
        assert!(parse_redirect_to("[::1]:15001")
            .unwrap_err()
            .contains("must be IPv4"));
        assert!(parse_redirect_to("127.0.0.1:70000").is_err());
    }
}
