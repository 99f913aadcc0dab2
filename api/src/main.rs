use std::process::ExitCode;

use clap::Parser;
use lasect_api::cli::{Cli, run};

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    lasect_service::init_logging();
    run(cli)
}
