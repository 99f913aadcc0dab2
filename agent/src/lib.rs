//! lasect-agent: samples PostgreSQL instances and their host on an interval
//! and pushes compressed batches to lasect-ingest over mutual TLS gRPC.
//!
//! A sample's life: [`collect`] produces `Sample`s each tick → [`run`]
//! encodes them into one batch with a seq from [`seq`] → [`spool`] writes it to disk
//! (behind the [`outbox`] trait) → [`sender`] pushes a window of batches and
//! finishes each once ingest acknowledges it; [`metrics`] serves the agent's
//! own figures.

pub mod backoff;
pub mod channel;
pub mod check_config;
pub mod collect;
pub mod config;
pub mod control;
pub mod control_config;
pub mod csv_stream;
pub mod custom_config;
pub mod enroll;
pub mod identity;
pub mod logs;
pub mod metrics;
pub mod ops;
pub mod outbox;
pub mod pgbackrest_config;
pub mod renew;
pub mod run;
pub mod sender;
pub mod seq;
pub mod spool;
