//! `lasect-agent [--config PATH] [run]` and `lasect-agent check-config [--config PATH]`.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use lasect_agent::config::{AgentConfig, DEFAULT_CONFIG_PATH};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "Lasect agent: samples PostgreSQL and its host, pushes to lasect-ingest"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Collect and send until SIGINT/SIGTERM (the default).
    Run,
    /// Validate the configuration, print a summary and exit.
    CheckConfig,
}

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lasect-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<()> {
    // Already installed is fine: only the ring provider is ever installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("LASECT_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not for journald.
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let loaded = AgentConfig::load(&cli.config).context("load config")?;
    for key in &loaded.unknown_keys {
        tracing::warn!(key = %key, path = %cli.config.display(), "unknown config key ignored");
    }
    let config = loaded.config;
    config.validate().context("validate config")?;

    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            println!("{}: OK", cli.config.display());
            println!("{}", config.summary());
            Ok(())
        }
        Command::Run => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("start async runtime")?;
            runtime.block_on(async {
                let shutdown = shutdown_signal().context("install signal handlers")?;
                tracing::info!(config = %config.summary(), "lasect-agent started");
                lasect_agent::run::run(config, shutdown)
                    .await
                    .context("run agent")
            })
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
