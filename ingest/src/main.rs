//! `lasect-ingest [--config PATH]`: see the library for what it does.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use lasect_ingest::config::DEFAULT_CONFIG_PATH;
use lasect_ingest::{Config, SecretString};

/// A push allocates and frees many small objects (decoded messages, rows,
/// buffers) across threads; on the ingest path glibc's malloc/free took
/// about a fifth of the CPU in a profile under `make bench`. Built with
/// `no_thp` (workspace `Cargo.toml`): with transparent huge pages, every
/// re-fault of purged memory zeroed a 2 MiB page, 7% of the CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Lasect ingest server: receives agent batches over mTLS gRPC and
/// writes them into the central store.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Config file (TOML).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
}

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lasect-ingest: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let dsn = match std::env::var("LASECT_STORE_DSN") {
        Ok(dsn) if !dsn.is_empty() => Some(SecretString::new(dsn)),
        Ok(_) | Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("read LASECT_STORE_DSN: it is not valid UTF-8")
        }
    };
    let config = Config::load(&args.config, dsn).context("load config file")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime
        .block_on(lasect_ingest::run(config, lasect_ingest::shutdown_signal()))
        .context("run the ingest server")
}

/// Logs to stderr, filtered by `LASECT_LOG` (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LASECT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
