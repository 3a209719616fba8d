//! Sluice: a kernel-accelerated, Envoy-compatible node proxy.
//!
//! The module tree is the architecture; see `DESIGN.md` in the repository.

pub mod access_log;
pub mod activity;
pub mod admin;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod datapath;
pub mod drain;
pub mod fast_hash;
pub mod formatter;
pub mod http;
pub mod listener;
pub mod logging;
pub mod memory;
pub mod server;
pub mod stats;
pub mod stream_info;
pub mod tcp;
pub mod upstream;
pub mod xds;
