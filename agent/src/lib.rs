//! lasect-agent: samples PostgreSQL instances and their host on an interval
//! and pushes compressed batches to lasect-ingest over mutual TLS gRPC.
//!
//! A sample's life: [`collect`] produces `Sample`s each tick → [`run`]
//! encodes them into one batch with a seq from [`seq`] → [`outbox`] holds it
//! → [`sender`] pushes it and removes it once ingest acknowledges.

pub mod backoff;
pub mod collect;
pub mod config;
pub mod outbox;
pub mod run;
pub mod sender;
pub mod seq;
