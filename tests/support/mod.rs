//! Test harness for black-box tests: real backends on loopback, the real
//! `sluice` binary started from a config with placeholders, and small
//! HTTP/1.1, HTTP/2 and raw-TCP clients. Every wait is bounded.

#![allow(dead_code)]

pub mod backend;
pub mod client;
pub mod config;
pub mod envoy;
pub mod proxy;

// Each test binary uses its own subset of the harness.
#[allow(unused_imports)]
pub use backend::{Backend, EchoReply};
#[allow(unused_imports)]
pub use client::{get, get_h2, get_until, raw_exchange, request, wait_refused, KeepAlive, Reply};
#[allow(unused_imports)]
pub use config::{hcm_listener, static_cluster, ADMIN_AND_LISTENERS};
#[allow(unused_imports)]
pub use proxy::{free_port, run_until_exit, Exited, Sluice};

// Raw TCP, gRPC-like and shared-h2-connection helpers (tcp_proxy, grpc_h2 tests).
pub mod grpc_backend;
pub mod h2;
pub mod tcp_backend;
#[allow(unused_imports)]
pub use envoy::{envoy_binary, envoy_binary_or_skip, envoy_validate, Envoy};
#[allow(unused_imports)]
pub use grpc_backend::{grpc_frame, GrpcBackend};
#[allow(unused_imports)]
pub use h2::{h2_connect, h2_send, FullReply};
#[allow(unused_imports)]
pub use proxy::{reserve_port, PortReservation};
#[allow(unused_imports)]
pub use tcp_backend::{TcpBackend, ECHO_EOF_REPLY};
