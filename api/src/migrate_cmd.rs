//! `lasect-api migrate`: applies pending store migrations and says which.

use std::path::{Path, PathBuf};

use anyhow::Context;
use lasect_pgtls::source::{ChosenDsn, DsnSource};

use crate::config::{ApiConfig, DEFAULT_CONFIG_PATH, DsnInputs, STORE_DSN_ENV};
use crate::server::connect_store;
use crate::store_dsn::StoreDsn;

/// The store DSN of a command that needs only the store (`migrate`, `admin`, `secrets`,
/// `ca init --store-dsn`), chosen by the one rule (crate::config): `--store-dsn`, else the
/// config file named by `--config`, else `LASECT_STORE_DSN`, else the default config file.
/// A file is read only when it can win. Logs the winner.
pub fn resolve_dsn(config: Option<PathBuf>, inputs: DsnInputs) -> anyhow::Result<StoreDsn> {
    let explicit = config.is_some();
    let path = config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let inputs = DsnInputs {
        config_explicit: explicit,
        ..inputs
    };
    let mut file = if inputs.flag.is_none() && (explicit || inputs.env.is_none()) {
        Some(ApiConfig::from_toml(&read(&path, explicit)?, &path)?)
    } else {
        None
    };
    let file_dsn = file.as_mut().and_then(|f| f.store_dsn.take());
    let chosen = inputs.choose(&path, file_dsn).with_context(|| {
        if explicit {
            format!(
                "{} sets no store_dsn and {STORE_DSN_ENV} is not set",
                path.display()
            )
        } else {
            format!(
                "no --store-dsn, --config or {STORE_DSN_ENV}, and the default config {} sets \
                 no store_dsn",
                path.display()
            )
        }
    })?;
    log_choice(&chosen.dsn, &chosen.source, chosen.env_ignored);
    chosen.dsn.validate().context("invalid store DSN")?;
    // A file that was read must be valid as a whole, as `serve` would need it.
    if let Some(mut file) = file {
        file.store_dsn = Some(chosen.dsn.clone());
        file.validate()?;
    }
    Ok(chosen.dsn)
}

fn read(path: &Path, explicit: bool) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| {
        if explicit {
            format!("read config file {}", path.display())
        } else {
            format!(
                "no --store-dsn, --config or {STORE_DSN_ENV}; read the default config {}",
                path.display()
            )
        }
    })
}

/// Logs where the DSN came from (a warning when `LASECT_STORE_DSN` was set but lost).
pub fn log_choice(dsn: &StoreDsn, source: &DsnSource, env_ignored: bool) {
    let line = ChosenDsn {
        dsn: dsn.expose_secret(),
        source: source.clone(),
        env_ignored,
    }
    .describe();
    if env_ignored {
        tracing::warn!("{line}");
    } else {
        tracing::info!("{line}");
    }
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
