//! `sluicectl`: Sluice's control tool (see `sluice::cli_ctl`).

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(sluice::cli_ctl::run(std::env::args_os()) as u8)
}
