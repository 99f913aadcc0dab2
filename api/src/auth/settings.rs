//! The `[auth]` section of `api.toml`.
//!
//! ```toml
//! [auth]
//! jwt_key_file = "/etc/lasect/jwt.key"  # default: jwt.key beside api.toml; created (0600) if missing
//! access_token_secs = 900               # JWT lifetime, 60..=3600
//! refresh_token_days = 30               # refresh token lifetime, 1..=365
//! max_failed_logins = 5                 # free failures per (user, source address) before delays
//! max_login_delay_secs = 300            # cap of the growing delay (1 s, 2 s, 4 s …), 1..=86400
//! lockout_secs = 900                    # quiet time after which failures are forgotten, and
//!                                       # the window of the per-source limit, 1..=86400
//! max_failed_logins_per_source = 20     # failures per source address per window (any user)
//! password_checks = 0                   # concurrent argon2 checks; 0: one per core
//! password_check_wait_ms = 500          # wait for a free check before 503, 0..=10000
//! live_recheck_secs = 30                # how often a live stream re-checks its caller, 1..=30
//! auth_failure_flush_secs = 10          # how often unauthenticated refusals are written, 1..=300
//! initial_password_file = "…"           # default: initial-admin-password beside api.toml
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
    #[serde(default = "default_max_login_delay_secs")]
    pub max_login_delay_secs: u64,
    #[serde(default)]
    pub password_checks: usize,
    #[serde(default = "default_password_check_wait_ms")]
    pub password_check_wait_ms: u64,
    #[serde(default = "default_live_recheck_secs")]
    pub live_recheck_secs: u64,
    #[serde(default = "default_auth_failure_flush_secs")]
    pub auth_failure_flush_secs: u64,
    #[serde(default)]
    pub initial_password_file: Option<PathBuf>,
    #[serde(default = "default_audit_retention_days")]
    pub audit_retention_days: u32,
}

fn default_max_login_delay_secs() -> u64 {
    300
}
fn default_password_check_wait_ms() -> u64 {
    500
}
fn default_live_recheck_secs() -> u64 {
    30
}
fn default_auth_failure_flush_secs() -> u64 {
    10
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
            max_login_delay_secs: default_max_login_delay_secs(),
            password_checks: 0,
            password_check_wait_ms: default_password_check_wait_ms(),
            live_recheck_secs: default_live_recheck_secs(),
            auth_failure_flush_secs: default_auth_failure_flush_secs(),
            initial_password_file: None,
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

    /// Where the first start writes the generated admin password: `initial_password_file`, or
    /// `initial-admin-password` beside the configuration file.
    pub fn initial_password_path(&self, config_path: &Path) -> PathBuf {
        match &self.initial_password_file {
            Some(path) => path.clone(),
            None => config_path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join("initial-admin-password"),
        }
    }

    /// Concurrent argon2 checks: `password_checks`, or one per core.
    pub fn password_check_slots(&self) -> usize {
        if self.password_checks > 0 {
            self.password_checks
        } else {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
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
        if !(1..=86_400).contains(&self.max_login_delay_secs) {
            bad(
                "auth.max_login_delay_secs",
                format!("must be 1..=86400, not {}", self.max_login_delay_secs),
            );
        }
        if self.password_checks > 1024 {
            bad(
                "auth.password_checks",
                format!("must be 0..=1024, not {}", self.password_checks),
            );
        }
        if self.password_check_wait_ms > 10_000 {
            bad(
                "auth.password_check_wait_ms",
                format!("must be 0..=10000, not {}", self.password_check_wait_ms),
            );
        }
        if !(1..=30).contains(&self.live_recheck_secs) {
            bad(
                "auth.live_recheck_secs",
                format!("must be 1..=30, not {}", self.live_recheck_secs),
            );
        }
        if !(1..=300).contains(&self.auth_failure_flush_secs) {
            bad(
                "auth.auth_failure_flush_secs",
                format!("must be 1..=300, not {}", self.auth_failure_flush_secs),
            );
        }
        if let Some(path) = &self.initial_password_file
            && path.as_os_str().is_empty()
        {
            bad("auth.initial_password_file", "must not be empty".to_owned());
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
