//! Command line of `lasect-api`. A subcommand is required: `serve`, `migrate` or `ca init`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::ca_init::run_ca_init;
use crate::config::{ApiConfig, DEFAULT_CONFIG_PATH, DsnInputs};
use crate::migrate_cmd::{log_choice, resolve_dsn, run_migrate};

#[derive(Debug, Parser)]
#[command(name = "lasect-api", version, about = "The Lasect REST API")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the REST API (migrates the store first)
    Serve {
        /// Configuration file [default: /etc/lasect/api.toml]. The store DSN is its store_dsn
        /// when given here, else LASECT_STORE_DSN, else the default file's store_dsn
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Apply pending migrations to the store and list them
    Migrate(MigrateArgs),
    /// Manage the Lasect certificate authority
    #[command(subcommand)]
    Ca(CaCommand),
    /// Create users and API tokens directly in the store (no default password exists)
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The key file that encrypts stored DSNs
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Put a new key first in the key file and re-encrypt every stored DSN with it
    Rotate {
        #[command(flatten)]
        store: MigrateArgs,
        /// The key file (default: [secrets] key_file of --config, or secrets.key beside it)
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a user (an admin by default); prints a generated password once unless
    /// --password-stdin is given
    Create {
        #[command(flatten)]
        store: MigrateArgs,
        #[arg(long)]
        username: String,
        #[arg(long, default_value = "admin")]
        role: crate::auth::Role,
        /// Read the password from the first line of stdin
        #[arg(long)]
        password_stdin: bool,
    },
    /// Create an API token for a user and print it once
    Token {
        #[command(flatten)]
        store: MigrateArgs,
        #[arg(long)]
        username: String,
        /// Name of the token, unique among the user's live tokens
        #[arg(long)]
        name: String,
        /// Role of the token (default and maximum: the user's role)
        #[arg(long)]
        role: Option<crate::auth::Role>,
    },
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Take store_dsn from this configuration file (it wins over LASECT_STORE_DSN, which is
    /// used only when the file sets no store_dsn)
    #[arg(long, value_name = "PATH", conflicts_with = "store_dsn")]
    pub config: Option<PathBuf>,
    /// Store DSN (URL or key=value form); default: --config's store_dsn, then
    /// LASECT_STORE_DSN, then the default config /etc/lasect/api.toml
    #[arg(long, value_name = "DSN")]
    pub store_dsn: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create (or complete) a directory of TLS material: CA, ingest and API server
    /// certificates, agent client certificates. Existing keys are never overwritten.
    Init(CaInitArgs),
}

#[derive(Debug, Args)]
pub struct CaInitArgs {
    /// Directory to write to (created if missing)
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Issue a client certificate for this agent id (repeatable)
    #[arg(long = "agent", value_name = "ID")]
    pub agents: Vec<String>,
    /// Extra DNS name or IP address of the ingest server certificate (repeatable)
    #[arg(long = "ingest-san", value_name = "NAME")]
    pub ingest_sans: Vec<String>,
    /// Extra DNS name or IP address of the API server certificate (repeatable)
    #[arg(long = "api-san", value_name = "NAME")]
    pub api_sans: Vec<String>,
    /// Validity of newly issued server and agent certificates, in days
    #[arg(long, value_name = "DAYS", default_value_t = 365,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub validity_days: u32,
    /// Also register the --agent certificates in this store, so that no enrollment token can
    /// claim their ids before they first connect
    #[arg(long, value_name = "DSN")]
    pub store_dsn: Option<String>,
}

/// Runs a parsed command line. Output meant for the operator goes to stdout; logs to stderr.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Ca(CaCommand::Init(args)) => {
            let agents = args.agents.clone();
            let out = run_ca_init(
                &args.dir,
                args.agents,
                args.ingest_sans,
                args.api_sans,
                args.validity_days,
            )?;
            print!("{out}");
            if let Some(dsn) = args.store_dsn {
                let dsn = resolve_dsn(
                    None,
                    DsnInputs {
                        flag: Some(dsn),
                        ..DsnInputs::default()
                    },
                )?;
                let out = runtime()?
                    .block_on(crate::ca_init::register_agents(&dsn, &args.dir, &agents))?;
                print!("{out}");
            }
            Ok(())
        }
        Command::Migrate(args) => {
            let dsn = resolve_dsn(args.config, DsnInputs::from_env(args.store_dsn, false)?)?;
            let out = runtime()?.block_on(run_migrate(&dsn))?;
            print!("{out}");
            Ok(())
        }
        Command::Serve { config: path } => {
            let inputs = DsnInputs::from_env(None, path.is_some())?;
            let path = path.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
            let config = ApiConfig::load(&path, inputs)?;
            if let (Some(dsn), Some(source)) = (&config.store_dsn, &config.store_dsn_source) {
                log_choice(dsn, source, config.env_dsn_ignored);
            }
            runtime()?.block_on(crate::server::serve(config, &path))
        }
        Command::Admin(AdminCommand::Create {
            store,
            username,
            role,
            password_stdin,
        }) => {
            let dsn = resolve_dsn(store.config, DsnInputs::from_env(store.store_dsn, false)?)?;
            let password = if password_stdin {
                Some(crate::admin_cmd::read_password(std::io::stdin().lock())?)
            } else {
                None
            };
            let out = runtime()?.block_on(crate::admin_cmd::run_create(
                &dsn, &username, role, password,
            ))?;
            print!("{out}");
            Ok(())
        }
        Command::Secrets(SecretsCommand::Rotate { store, key_file }) => {
            let key_file = match key_file {
                Some(k) => k,
                None => {
                    let path = store
                        .config
                        .clone()
                        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("read {} (or pass --key-file)", path.display()))?;
                    let config = ApiConfig::from_toml(&text, &path)?;
                    config.secrets.key_path(&path)
                }
            };
            let dsn = resolve_dsn(store.config, DsnInputs::from_env(store.store_dsn, false)?)?;
            let out = runtime()?.block_on(crate::secrets_cmd::rotate(&dsn, &key_file))?;
            print!("{out}");
            Ok(())
        }
        Command::Admin(AdminCommand::Token {
            store,
            username,
            name,
            role,
        }) => {
            let dsn = resolve_dsn(store.config, DsnInputs::from_env(store.store_dsn, false)?)?;
            let out =
                runtime()?.block_on(crate::admin_cmd::run_token(&dsn, &username, &name, role))?;
            print!("{out}");
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}
