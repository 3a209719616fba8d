//! Test harness for black-box tests: real backends on loopback, the real
//! `sluice` binary started from a config with placeholders, and small
//! HTTP/1.1, HTTP/2 and raw-TCP clients. Every wait is bounded.

#![allow(dead_code)]

pub mod backend;
pub mod client;
pub mod proxy;

// Each test binary uses its own subset of the harness.
#[allow(unused_imports)]
pub use backend::{Backend, EchoReply};
#[allow(unused_imports)]
pub use client::{get, get_h2, raw_exchange, request, wait_refused, KeepAlive, Reply};
#[allow(unused_imports)]
pub use proxy::{free_port, run_until_exit, Exited, Sluice};
