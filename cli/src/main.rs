use std::process::ExitCode;

use clap::Parser;
use lasect_cli::api_client::ClientEnv;
use lasect_cli::args::Cli;
use lasect_cli::{config_file, exit};

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::code_of(&e))
        }
    }
}

fn try_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    lasect_cli::install_crypto_provider();
    let flags = ClientEnv {
        url: cli.url.clone(),
        ca_file: cli.ca_file.clone(),
        token: cli.token.clone(),
    };
    let file = match config_file::default_path() {
        Some(path) => config_file::load(&path)?,
        None => None,
    };
    let env = flags.layered(ClientEnv::from_process(), file);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = runtime.block_on(lasect_cli::run(cli, env))?;
    print!("{out}");
    Ok(())
}
