//! `lasect-agent check-config`: the configuration as `run` would load it at start, checked
//! without starting anything. The package's post-install step runs it too (as a warning only:
//! a fresh install has a config nobody has edited yet).
//!
//! [`load`] is the one way the agent reads its configuration, so `check-config` cannot accept
//! a file that `run` refuses, or the reverse.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{AgentConfig, ConfigError, ValidationError};

/// Why a configuration cannot be used, written for the operator who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Load(#[from] ConfigError),
    #[error("{}", Invalid { path, errors })]
    // Not a `#[source]`: the message already lists every problem, and a chain printer
    // (`{:#}`) would list them all a second time.
    Invalid {
        path: PathBuf,
        errors: ValidationError,
    },
}

/// One bad field per line, so a long list stays readable in a terminal and in the journal.
struct Invalid<'a> {
    path: &'a Path,
    errors: &'a ValidationError,
}

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors.errors.len();
        write!(
            f,
            "{}: invalid configuration ({count} problem{}):",
            self.path.display(),
            if count == 1 { "" } else { "s" }
        )?;
        for e in &self.errors.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Reads, parses and validates `path`; unknown keys are logged as warnings (a config written
/// for a newer agent must still start an older one after a rollback).
pub fn load(path: &Path) -> Result<AgentConfig, CheckError> {
    let loaded = AgentConfig::load(path)?;
    for key in &loaded.unknown_keys {
        tracing::warn!(key = %key, path = %path.display(), "unknown config key ignored");
    }
    let config = loaded.config;
    config.validate().map_err(|errors| CheckError::Invalid {
        path: path.to_owned(),
        errors,
    })?;
    Ok(config)
}

/// What `check-config` prints for a usable file: `config OK` and the one-line summary the
/// agent logs at start (never a DSN).
pub fn check(path: &Path) -> Result<String, CheckError> {
    let config = load(path)?;
    Ok(format!(
        "{}: config OK\n{}",
        path.display(),
        config.summary()
    ))
}
