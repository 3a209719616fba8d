//! `sluicectl`: the operator's command-line tool. Today it has one command
//! group, `sluicectl bpf …`, which reads the maps a Sluice daemon pinned
//! (see [`bpf`]); it works while the daemon runs and after it is gone, as
//! long as the pins remain.

pub mod bpf;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Sluice's control tool.
#[derive(Debug, Parser)]
#[command(name = "sluicectl")]
pub struct Ctl {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect the kernel datapath from its pinned maps.
    Bpf {
        #[command(subcommand)]
        command: bpf::BpfCommand,
        /// The daemon's `--datapath-pin-dir`.
        #[arg(long = "pin-dir", global = true, default_value = crate::datapath::DEFAULT_PIN_DIR)]
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

/// Runs `sluicectl` with these arguments; returns the process exit code.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let ctl = match Ctl::try_parse_from(args) {
        Ok(ctl) => ctl,
        Err(error) => {
            let code = if error.use_stderr() { 2 } else { 0 };
            let _ = error.print();
            return code;
        }
    };
    let result = match ctl.command {
        Command::Bpf {
            command,
            pin_dir,
            output,
        } => bpf::run(&command, &pin_dir, output),
    };
    match result {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(message) => {
            eprintln!("sluicectl: {message}");
            1
        }
    }
}
