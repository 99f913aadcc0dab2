//! The `[auth]` section of `api.toml`.
//!
//! ```toml
//! [auth]
//! jwt_key_file = "/etc/lasect/jwt.key"  # default: jwt.key beside api.toml; created (0600) if missing
//! access_token_secs = 900               # JWT lifetime, 60..=3600
//! refresh_token_days = 30               # refresh token lifetime, 1..=365
//! max_failed_logins = 5                 # consecutive failures before a user is locked
//! lockout_secs = 900                    # how long a lockout lasts, 1..=86400
//! max_failed_logins_per_source = 20     # failures per source address per lockout window
//! audit_retention_days = 365            # audit rows older than this are deleted, 1..=36500
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::FieldError;

/// `iss` of every access token, and the only one accepted.
pub const JWT_ISSUER: &str = "lasect-api";
/// `aud` of every access token, and the only one accepted.
pub const JWT_AUDIENCE: &str = "lasect";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub jwt_key_file: Option<PathBuf>,
    #[serde(default = "default_access_token_secs")]
    pub access_token_secs: u64,
    #[serde(default = "default_refresh_token_days")]
    pub refresh_token_days: u32,
    #[serde(default = "default_max_failed_logins")]
    pub max_failed_logins: u32,
    #[serde(default = "default_lockout_secs")]
    pub lockout_secs: u64,
    #[serde(default = "default_max_failed_logins_per_source")]
    pub max_failed_logins_per_source: u32,
    #[serde(default = "default_audit_retention_days")]
    pub audit_retention_days: u32,
}

fn default_access_token_secs() -> u64 {
    900
}
fn default_refresh_token_days() -> u32 {
    30
}
fn default_max_failed_logins() -> u32 {
    5
}
fn default_lockout_secs() -> u64 {
    900
}
fn default_max_failed_logins_per_source() -> u32 {
    20
}
fn default_audit_retention_days() -> u32 {
    365
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_key_file: None,
            access_token_secs: default_access_token_secs(),
            refresh_token_days: default_refresh_token_days(),
            max_failed_logins: default_max_failed_logins(),
            lockout_secs: default_lockout_secs(),
            max_failed_logins_per_source: default_max_failed_logins_per_source(),
            audit_retention_days: default_audit_retention_days(),
        }
    }
}

impl AuthConfig {
    /// The signing key's path: `jwt_key_file`, or `jwt.key` beside the configuration file.
    pub fn jwt_key_path(&self, config_path: &Path) -> PathBuf {
        match &self.jwt_key_file {
            Some(path) => path.clone(),
            None => config_path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join("jwt.key"),
        }
    }

    pub(crate) fn validate(&self, errors: &mut Vec<FieldError>) {
        let mut bad = |field, message: String| errors.push(FieldError { field, message });
        if !(60..=3600).contains(&self.access_token_secs) {
            bad(
                "auth.access_token_secs",
                format!("must be 60..=3600, not {}", self.access_token_secs),
            );
        }
        if !(1..=365).contains(&self.refresh_token_days) {
            bad(
                "auth.refresh_token_days",
                format!("must be 1..=365, not {}", self.refresh_token_days),
            );
        }
        if !(1..=100).contains(&self.max_failed_logins) {
            bad(
                "auth.max_failed_logins",
                format!("must be 1..=100, not {}", self.max_failed_logins),
            );
        }
        if !(1..=86_400).contains(&self.lockout_secs) {
            bad(
                "auth.lockout_secs",
                format!("must be 1..=86400, not {}", self.lockout_secs),
            );
        }
        if !(1..=10_000).contains(&self.max_failed_logins_per_source) {
            bad(
                "auth.max_failed_logins_per_source",
                format!(
                    "must be 1..=10000, not {}",
                    self.max_failed_logins_per_source
                ),
            );
        }
        if !(1..=36_500).contains(&self.audit_retention_days) {
            bad(
                "auth.audit_retention_days",
                format!("must be 1..=36500, not {}", self.audit_retention_days),
            );
        }
        if let Some(path) = &self.jwt_key_file
            && path.as_os_str().is_empty()
        {
            bad("auth.jwt_key_file", "must not be empty".to_owned());
        }
    }
}
