//! `sluicectl` subcommands, one module per family (`sluicectl xds …`).
//! The binary (`src/bin/sluicectl.rs`) only parses and dispatches.

pub mod xds;
