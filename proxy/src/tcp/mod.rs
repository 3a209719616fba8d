//! L4 proxying: the `envoy.filters.network.tcp_proxy` network filter.

mod pipe;
pub mod proxy;
mod relay;

pub use proxy::TcpProxy;
