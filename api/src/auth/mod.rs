//! Identity and access for people: users with roles (global and per instance label), argon2id
//! passwords with lockout, JWT access tokens, rotating refresh tokens, API tokens, and the
//! append-only audit log.
//!
//! - [`role`]: `Role` (viewer < user < admin);
//! - [`principal`]: `Principal`, the authenticated caller, an axum extractor with `require` and
//!   `require_on_instance`;
//! - [`gate`]: the layer that authenticates `/api/` and audits every mutating request;
//! - [`jwt`], [`password`], [`source_limit`], [`settings`]: the mechanics;
//! - [`users`]: store operations on users shared by routes and `lasect-api admin create`.

pub mod audit;
pub mod gate;
pub mod jwt;
pub mod password;
pub mod principal;
pub mod role;
pub mod settings;
pub mod source_limit;
pub mod users;

use std::time::Duration;

pub use audit::{AuditEntry, Outcome, record};
pub use principal::{LabelGrant, Principal};
pub use role::Role;
pub use settings::AuthConfig;

use jwt::JwtKeys;
use source_limit::SourceLimiter;

/// What the auth code shares across requests.
#[derive(Debug)]
pub struct AuthState {
    pub keys: JwtKeys,
    pub config: AuthConfig,
    pub sources: SourceLimiter,
}

impl AuthState {
    pub fn new(keys: JwtKeys, config: AuthConfig) -> Self {
        let sources = SourceLimiter::new(
            config.max_failed_logins_per_source,
            Duration::from_secs(config.lockout_secs),
        );
        AuthState {
            keys,
            config,
            sources,
        }
    }
}
