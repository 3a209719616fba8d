//! L4 proxying: the `envoy.filters.network.tcp_proxy` network filter.

pub mod proxy;
mod pipe;
mod relay;

pub use proxy::TcpProxy;
