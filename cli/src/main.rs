use std::process::ExitCode;

use clap::Parser;
use lasect_cli::api_client::ClientEnv;
use lasect_cli::args::{Cli, OutputFormat};
use lasect_cli::{config_file, exit, printable};

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Server messages quote database errors and values: no terminal escapes from them.
            eprintln!("error: {}", printable::escape_lines(&format!("{e:#}")));
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
        token: cli.token.clone().map(lasect_pki::Secret::new),
    };
    let file = match config_file::default_path() {
        Some(path) => config_file::load(&path)?,
        None => None,
    };
    let env = flags.layered(ClientEnv::from_process(), file);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let output = cli.output;
    let out = runtime.block_on(lasect_cli::run(cli, env))?;
    // Renderers escape each value; this second pass catches any text one of them missed.
    // JSON stays as serde wrote it (its control characters are already escaped).
    match output {
        OutputFormat::Table => print!("{}", printable::escape_lines(&out)),
        OutputFormat::Json => print!("{out}"),
    }
    Ok(())
}
