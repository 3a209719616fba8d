//! The daemon's end of the transparent L7 redirect: the
//! `--datapath-redirect-to` address (IPv4 services) and the
//! `--datapath-redirect6-to` address (IPv6 services; default `[::1]` on the
//! IPv4 address's port), each bound (one socket per worker) the first time
//! the plan has a redirect service of its family and before the kernel is
//! told to redirect anything there, and the kernel maps the accept loops
//! read original destinations from (`REDIRECT_ORIGINAL_DST`,
//! `REDIRECT6_ORIGINAL_DST`, one handle per worker).

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use sluice_ebpf::maps::RedirectMap;
use sluice_ebpf::socket_maps::Redirect6Map;
use sluice_ebpf::Datapath;

use super::plan::RedirectTargets;
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
            "'{text}': the redirect address must be IPv4 (IPv6 services use --datapath-redirect6-to)"
        )),
        Err(_) => Err(format!(
            "'{text}' is not IP:PORT (e.g. {DEFAULT_REDIRECT_TO})"
        )),
    }
}

/// Parses `--datapath-redirect6-to`: `[IPv6]:PORT`, not the unspecified
/// address, port not 0 (the kernel rewrites IPv6 connects to it).
pub fn parse_redirect6_to(text: &str) -> Result<SocketAddrV6, String> {
    match text.parse::<SocketAddr>() {
        Ok(SocketAddr::V6(address)) if address.port() == 0 => {
            Err(format!("'{text}': the redirect port cannot be 0"))
        }
        Ok(SocketAddr::V6(address))
            if address.ip().is_unspecified() || address.ip().to_ipv4_mapped().is_some() =>
        {
            Err(format!(
                "'{text}': the kernel needs an IPv6 address to connect to, not [::] or a v4-mapped one"
            ))
        }
        Ok(SocketAddr::V6(address)) => Ok(address),
        Ok(SocketAddr::V4(_)) => Err(format!(
            "'{text}': the IPv6 redirect address must be IPv6 (IPv4 services use --datapath-redirect-to)"
        )),
        Err(_) => Err(format!("'{text}' is not [IP]:PORT (e.g. [::1]:15001)")),
    }
}

/// `--datapath-redirect6-to`, or `[::1]` on `--datapath-redirect-to`'s port.
pub fn redirect6_or_default(
    redirect6_to: Option<SocketAddrV6>,
    redirect_to: SocketAddrV4,
) -> SocketAddrV6 {
    redirect6_to.unwrap_or_else(|| SocketAddrV6::new(Ipv6Addr::LOCALHOST, redirect_to.port(), 0, 0))
}

/// One accepting worker's handles on both original-destination maps.
pub struct KernelOriginalDestinations {
    v4: RedirectMap,
    v6: Redirect6Map,
}

impl OriginalDestinations for KernelOriginalDestinations {
    fn take(&mut self, client: SocketAddr) -> Option<SocketAddr> {
        match client {
            SocketAddr::V4(client) => self.v4.take(client).map(SocketAddr::V4),
            SocketAddr::V6(client) => self.v6.take(client).map(SocketAddr::V6),
        }
    }
}

/// The redirect addresses and whether the daemon accepts on them yet.
pub struct RedirectListener {
    v4: SocketAddrV4,
    v6: SocketAddrV6,
    store: Store,
    serving_v4: bool,
    serving_v6: bool,
}

impl RedirectListener {
    pub fn new(v4: SocketAddrV4, v6: SocketAddrV6, store: &Store) -> Self {
        RedirectListener {
            v4,
            v6,
            store: store.clone(),
            serving_v4: false,
            serving_v6: false,
        }
    }

    /// Where the plan may redirect to: the addresses once they are served,
    /// or while they may still be served.
    pub fn targets(&self) -> RedirectTargets {
        RedirectTargets {
            v4: Some(self.v4),
            v6: Some(self.v6),
        }
    }

    /// Starts accepting on the address of each family the plan redirects
    /// (once each); the kernel must not redirect there before this
    /// succeeded. Returns the targets that are served now (a family that
    /// failed is `None`) and the failures.
    pub fn ensure_serving(
        &mut self,
        (v4_wanted, v6_wanted): (bool, bool),
        listeners: &Arc<ListenerManager>,
        datapath: &Datapath,
    ) -> (RedirectTargets, Vec<String>) {
        let mut errors = Vec::new();
        let serve = |address: SocketAddr| {
            listeners.serve_redirect(
                address,
                || {
                    Ok(Box::new(KernelOriginalDestinations {
                        v4: datapath.redirect_map().map_err(|e| e.to_string())?,
                        v6: datapath.redirect6_map().map_err(|e| e.to_string())?,
                    }) as Box<dyn OriginalDestinations>)
                },
                RedirectStats::new(&self.store),
            )
        };
        if v4_wanted && !self.serving_v4 {
            match serve(SocketAddr::V4(self.v4)) {
                Ok(()) => self.serving_v4 = true,
                Err(error) => errors.push(error),
            }
        }
        if v6_wanted && !self.serving_v6 {
            match serve(SocketAddr::V6(self.v6)) {
                Ok(()) => self.serving_v6 = true,
                Err(error) => errors.push(error),
            }
        }
        let served = RedirectTargets {
            v4: (self.serving_v4 || !v4_wanted).then_some(self.v4),
            v6: (self.serving_v6 || !v6_wanted).then_some(self.v6),
        };
        (served, errors)
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

    #[test]
    fn ipv6_redirect_addresses_are_ipv6_with_a_port_and_default_to_loopback() {
        assert_eq!(
            parse_redirect6_to("[fd00::5]:15001"),
            Ok("[fd00::5]:15001".parse().unwrap())
        );
        assert!(parse_redirect6_to("[::1]:0")
            .unwrap_err()
            .contains("cannot be 0"));
        assert!(parse_redirect6_to("[::]:15001")
            .unwrap_err()
            .contains("not [::]"));
        assert!(parse_redirect6_to("[::ffff:127.0.0.1]:15001")
            .unwrap_err()
            .contains("v4-mapped"));
        assert!(parse_redirect6_to("127.0.0.1:15001")
            .unwrap_err()
            .contains("must be IPv6"));
        assert!(parse_redirect6_to("::1")
            .unwrap_err()
            .contains("not [IP]:PORT"));
        let v4 = "10.0.0.5:16000".parse().unwrap();
        assert_eq!(
            redirect6_or_default(None, v4),
            "[::1]:16000".parse().unwrap()
        );
        let explicit = "[fd00::5]:15001".parse().unwrap();
        assert_eq!(redirect6_or_default(Some(explicit), v4), explicit);
    }
}
