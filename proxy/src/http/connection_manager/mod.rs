//! `envoy.filters.network.http_connection_manager`: downstream HTTP/1.1 and
//! HTTP/2 connections, per-request header handling (x-forwarded-for,
//! x-request-id, server), timeouts and limits, the router, access logs and
//! `http.<stat_prefix>.*` stats.

mod config;
mod connection;
mod forward;
pub(crate) mod headers;
mod local_reply;
mod local_streams;
mod read_ahead;
mod request_body;
mod response_body;
mod spare_timer;
mod stats;
mod stream;

pub use config::HttpConnectionManager;
pub use connection::serve_connection;
