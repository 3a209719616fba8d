//! `sluicectl`: Sluice's operator CLI. This file only parses the command
//! line and dispatches to `sluice::ctl::<subcommand>`; each subcommand
//! family lives in its own module there.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sluicectl",
    version,
    about = "Operate Sluice: control planes, kernel state"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// xDS tools: a demo control plane serving a folder of Envoy YAML.
    Xds(sluice::ctl::xds::XdsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Xds(command) => sluice::ctl::xds::run(command),
    }
}
