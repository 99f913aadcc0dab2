//! `lasect-agent [--config PATH] [run]`, `lasect-agent check-config [--config PATH]` and
//! `lasect-agent enroll --token … --ingest https://host:port --ca-file … [--agent-id …]
//! [--state-dir …]`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use lasect_agent::config::{AgentConfig, DEFAULT_CONFIG_PATH, DEFAULT_STATE_DIR};
use lasect_agent::enroll::EnrollOptions;

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
    /// Get a client certificate from ingest with an enrollment token: the
    /// key pair is made here and never leaves this host. Stores the key
    /// (0600) and certificate in the state dir, where `run` finds them when
    /// the config sets no [tls] cert_file/key_file.
    Enroll(EnrollArgs),
}

#[derive(clap::Args)]
struct EnrollArgs {
    /// The enrollment token (`lset_…`) from `lasect agent token create`.
    /// Prefer LASECT_ENROLL_TOKEN: a command line is visible to other users.
    #[arg(long, env = "LASECT_ENROLL_TOKEN", hide_env_values = true)]
    token: String,
    /// Ingest endpoint, `https://host:port`.
    #[arg(long, value_name = "URL")]
    ingest: String,
    /// PEM file of the Lasect CA that signed the ingest certificate.
    #[arg(long, value_name = "PATH")]
    ca_file: PathBuf,
    /// Name to verify in the ingest certificate (default: the URL's host).
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// Agent id to ask for (default: derived from the host name).
    #[arg(long, value_name = "ID")]
    agent_id: Option<String>,
    /// Where to store the identity (default: state_dir of --config if that
    /// file exists, else /var/lib/lasect-agent).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
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
    lasect_service::init_logging();

    match cli.command {
        Some(Command::Enroll(args)) => return enroll(&cli.config, args),
        Some(Command::CheckConfig) => {
            println!("{}", lasect_agent::check_config::check(&cli.config)?);
            return Ok(());
        }
        Some(Command::Run) | None => {}
    }

    let config = lasect_agent::check_config::load(&cli.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start async runtime")?;
    runtime.block_on(async {
        let shutdown = lasect_service::shutdown_signal().context("install signal handlers")?;
        tracing::info!(config = %config.summary(), "lasect-agent started");
        lasect_agent::run::run(config, shutdown)
            .await
            .context("run agent")
    })
}

fn enroll(config_path: &std::path::Path, args: EnrollArgs) -> anyhow::Result<()> {
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        None => match AgentConfig::load(config_path) {
            Ok(loaded) => loaded.config.state_dir,
            Err(_) => PathBuf::from(DEFAULT_STATE_DIR),
        },
    };
    let options = EnrollOptions {
        token: args.token,
        ingest: args.ingest,
        server_name: args.server_name,
        ca_file: args.ca_file,
        agent_id: args.agent_id,
        state_dir,
    };
    let replacing = lasect_agent::identity::IdentityStore::new(&options.state_dir).exists();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start async runtime")?;
    let enrolled = runtime
        .block_on(lasect_agent::enroll::enroll(&options))
        .context("enroll")?;
    let not_after = chrono::DateTime::<chrono::Utc>::from(enrolled.not_after);
    println!(
        "enrolled as agent {} with ingest {}",
        enrolled.agent_id, options.ingest
    );
    println!(
        "certificate serial {} valid until {} (renewed automatically by `lasect-agent run`)",
        enrolled.serial,
        not_after.to_rfc3339()
    );
    println!(
        "stored key (0600) and certificate in {}",
        enrolled.dir.display()
    );
    if replacing {
        println!("replaced the identity stored there before");
    }
    println!("leave [tls] cert_file and key_file unset in the agent config to use this identity");
    Ok(())
}
