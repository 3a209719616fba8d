//! Listeners: compiling `envoy.config.listener.v3.Listener`, the set of
//! live listeners (changeable by LDS), binding one `SO_REUSEPORT` socket per
//! worker, accepting connections (and connections the kernel redirected
//! to Sluice, by their original destination), and choosing the filter chain
//! (by destination port) that handles each one. UDP listeners are service
//! VIPs the kernel serves; they accept nothing here.

mod accept;
mod bind;
mod config;
mod manager;
mod redirect;
mod udp_proxy;
mod virtual_listeners;

pub use accept::accept_loop;
pub use bind::bind_listener_sockets;
pub use config::{
    socket_address as socket_address_of, stat_address, FilterChain, ListenerConfig, NetworkFilter,
};
pub use manager::{
    DrainSettings, Generation, ListenerChange, ListenerManager, ListenerSlot, Serve, ServeCommand,
};
pub use redirect::{redirect_accept_loop, OriginalDestinations, RedirectStats};
pub use udp_proxy::{udp_proxy_cluster, UdpProxy, UDP_PROXY_TYPE};
