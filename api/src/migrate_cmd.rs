//! `lasect-api migrate`: applies pending store migrations and says which.

use std::path::PathBuf;

use anyhow::Context;

use crate::config::{ApiConfig, DEFAULT_CONFIG_PATH, STORE_DSN_ENV};
use crate::server::connect_store;
use crate::store_dsn::StoreDsn;

/// Which DSN to use: `--store-dsn`, else the config file named by `--config`, else
/// `LASECT_STORE_DSN`, else the default config file.
pub fn resolve_dsn(
    config: Option<PathBuf>,
    store_dsn: Option<String>,
    env_dsn: Option<String>,
) -> anyhow::Result<StoreDsn> {
    let from_config = |path: PathBuf| -> anyhow::Result<StoreDsn> {
        let config = ApiConfig::load(&path)?;
        config.store_dsn.context("store_dsn is not set")
    };
    let dsn = match (store_dsn, config, env_dsn.filter(|d| !d.is_empty())) {
        (Some(dsn), _, _) => StoreDsn::new(dsn),
        (None, Some(path), _) => from_config(path)?,
        (None, None, Some(dsn)) => StoreDsn::new(dsn),
        (None, None, None) => {
            from_config(PathBuf::from(DEFAULT_CONFIG_PATH)).with_context(|| {
                format!("no --store-dsn, --config or {STORE_DSN_ENV}; tried the default config")
            })?
        }
    };
    dsn.validate().context("invalid store DSN")?;
    Ok(dsn)
}

/// Migrates and returns the text to print.
pub async fn run_migrate(dsn: &StoreDsn) -> anyhow::Result<String> {
    let mut client = connect_store(dsn).await?;
    let report = lasect_migrations::migrate(&mut client)
        .await
        .context("migrate the store")?;
    if report.applied.is_empty() {
        return Ok("store is up to date; no migration applied\n".to_owned());
    }
    Ok(report
        .applied
        .iter()
        .map(|m| format!("applied {m}\n"))
        .collect())
}
