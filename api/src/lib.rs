//! lasect-api: the REST API over the central store, plus the operator commands that belong
//! with it (`migrate`, `ca init`).
//!
//! - [`routes::router`] builds every route (tests drive it with `oneshot`);
//! - [`server::serve`] runs it: migrate, maintain hourly, HTTPS, graceful shutdown;
//! - [`config`] is `api.toml`; [`store_dsn`] the secret store DSN;
//! - [`cli`] is the command line; `main.rs` only calls [`cli::run`].
//!
//! The operator-facing layers (`cli`, `server`, the commands) use `anyhow` like a binary; the
//! config, DSN and HTTP layers have typed errors.

pub mod admin_cmd;
pub mod alerts;
pub mod auth;
pub mod backup_catalogue;
pub mod backup_schedule;
pub mod ca_init;
pub mod cli;
pub mod config;
pub mod migrate_cmd;
pub mod notify;
pub mod pg_listen;
pub mod replication_backfill;
pub mod replication_streams;
pub mod routes;
pub mod runs;
pub mod secrets_cmd;
pub mod server;
pub mod store_dsn;

pub use routes::{AppState, router};
