//! `sluicectl`: Sluice's operator CLI. This file only parses the command
//! line and dispatches to `sluice::ctl::<subcommand>`; each subcommand
//! family lives in its own module there.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice::ctl::{bpf, Output};

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
    /// Inspect the kernel datapath from its pinned maps (works while the
    /// daemon runs and after it is gone, as long as the pins remain).
    Bpf {
        #[command(subcommand)]
        command: bpf::BpfCommand,
        /// The daemon's `--datapath-pin-dir`.
        #[arg(long = "pin-dir", global = true, default_value = sluice::datapath::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// Output format.
        #[arg(
            short = 'o',
            long = "output",
            global = true,
            value_enum,
            default_value = "text"
        )]
        output: Output,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Xds(command) => sluice::ctl::xds::run(command),
        Command::Bpf {
            command,
            pin_dir,
            output,
        } => match bpf::run(&command, &pin_dir, output) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("sluicectl: {message}");
                ExitCode::FAILURE
            }
        },
    }
}
