//! Sluice: a kernel-accelerated, Envoy-compatible node proxy.
//!
//! The module tree is the architecture; see `DESIGN.md` in the repository.

pub mod config;
pub mod formatter;
pub mod http;
pub mod stats;
pub mod stream_info;
pub mod upstream;
