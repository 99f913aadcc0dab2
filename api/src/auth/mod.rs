//! Identity and access for people: users with roles (global and per instance label), argon2id
//! passwords with throttled logins, JWT access tokens, rotating refresh tokens, API tokens, and the
//! append-only audit log.
//!
//! - [`role`]: `Role` (viewer < user < admin);
//! - [`principal`]: `Principal`, the authenticated caller, an axum extractor with `require` and
//!   `require_on_instance`;
//! - [`gate`]: the layer that authenticates `/api/` and audits every mutating request;
//! - [`jwt`], [`password`], [`login_throttle`], [`source_limit`], [`failures`], [`settings`]:
//!   the mechanics;
//! - [`users`]: store operations on users shared by routes and `lasect-api admin create`.

pub mod audit;
pub mod failures;
pub mod gate;
pub mod jwt;
pub mod login_throttle;
pub mod password;
pub mod principal;
pub mod role;
pub mod settings;
pub mod source_limit;
pub mod users;

use std::sync::OnceLock;
use std::time::Duration;

pub use audit::{AuditEntry, Outcome, record};
pub use principal::{LabelGrant, Principal};
pub use role::Role;
pub use settings::AuthConfig;

use jwt::JwtKeys;
use login_throttle::LoginThrottle;
use source_limit::SourceLimiter;
use tokio::sync::Semaphore;

/// What the auth code shares across requests.
#[derive(Debug)]
pub struct AuthState {
    pub keys: JwtKeys,
    pub config: AuthConfig,
    pub sources: SourceLimiter,
    pub logins: LoginThrottle,
    /// One permit per concurrent argon2 check: a login flood queues here, briefly, instead of
    /// taking every core.
    pub password_checks: Semaphore,
    pub failures: failures::AuthFailures,
    /// Set once the task writing `failures` runs.
    pub(crate) flusher: OnceLock<()>,
}

impl AuthState {
    pub fn new(keys: JwtKeys, config: AuthConfig) -> Self {
        let sources = SourceLimiter::new(
            config.max_failed_logins_per_source,
            Duration::from_secs(config.lockout_secs),
        );
        let logins = LoginThrottle::new(
            config.max_failed_logins,
            Duration::from_secs(config.max_login_delay_secs),
            Duration::from_secs(config.lockout_secs),
        );
        let password_checks = Semaphore::new(config.password_check_slots());
        AuthState {
            keys,
            config,
            sources,
            logins,
            password_checks,
            failures: failures::AuthFailures::default(),
            flusher: OnceLock::new(),
        }
    }

    /// Runs the argon2 work `work` (a check or a hash) on a blocking thread once a slot is
    /// free; `None` when none frees up within `password_check_wait_ms` (the caller answers at
    /// once rather than queueing without end).
    pub async fn password_work<T, F>(&self, work: F) -> Option<Result<T, String>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let wait = Duration::from_millis(self.config.password_check_wait_ms);
        let permit = tokio::time::timeout(wait, self.password_checks.acquire())
            .await
            .ok()?
            .ok()?;
        let result = tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| e.to_string());
        drop(permit);
        Some(result)
    }
}
