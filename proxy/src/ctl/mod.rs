//! `sluicectl` subcommands, one module per family (`sluicectl xds …`,
//! `sluicectl bpf …`). The binary (`src/bin/sluicectl.rs`) only parses and
//! dispatches.

pub mod bpf;
mod bpf_lb6;
mod bpf_lb_rows;
mod bpf_socket_maps;
mod bpf_sockmap;
pub mod bpf_xdp;
pub mod xds;

use clap::ValueEnum;

/// `-o text|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}
