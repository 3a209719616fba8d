//! Sluice: a kernel-accelerated, Envoy-compatible node proxy.
//!
//! The module tree is the architecture; see `DESIGN.md` in the repository.

pub mod config;
