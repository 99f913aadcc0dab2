//! `lasect-ingest [--config PATH]`: see the library for what it does.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use lasect_ingest::Config;
use lasect_ingest::config::{DEFAULT_CONFIG_PATH, DsnInputs};
use lasect_pki::Secret;

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
    /// Config file (TOML) [default: /etc/lasect/ingest.toml]. The store DSN is its store_dsn
    /// when given here, else LASECT_STORE_DSN, else the default file's store_dsn.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
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
    lasect_service::init_logging();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let inputs = DsnInputs {
        config_explicit: args.config.is_some(),
        env: lasect_pgtls::source::env_store_dsn()?.map(Secret::new),
    };
    let path = args
        .config
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let config = Config::load(&path, inputs).context("load config file")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        let shutdown = lasect_service::shutdown_signal().context("install signal handlers")?;
        lasect_ingest::run(config, shutdown)
            .await
            .context("run the ingest server")
    })
}
