use std::process::ExitCode;

use clap::Parser;
use lasect_cli::api_client::ClientEnv;
use lasect_cli::args::Cli;

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
    lasect_cli::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = runtime.block_on(lasect_cli::run(cli, ClientEnv::from_process()))?;
    print!("{out}");
    Ok(())
}
