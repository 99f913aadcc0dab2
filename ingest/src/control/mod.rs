//! The Control stream: runs handed to agents and their results written
//! back (the contract is docs/CONTROL.md).
//!
//! - [`registry`] holds the one open stream per agent connected to this
//!   process (a new stream replaces the open one unless its certificate is older).
//! - [`stream`] serves one stream: the hello (runs the agent lost are
//!   failed), the instance assignments, then the agent's messages.
//! - [`dispatch`] is the loop that hands runs out: woken by `NOTIFY`
//!   ([`listener`]) and by a 1 s tick, it claims queued runs of connected
//!   agents with `FOR UPDATE SKIP LOCKED` (so any number of ingest processes
//!   share the work and none hands a run out twice), sends them, forwards
//!   cancels and resends assignments; each tick also expires runs nobody
//!   took and fails runs whose result never came ([`store_ops::sweep`]).
//! - [`store_ops`] executes ingest's run transitions (their SQL and the
//!   statuses each may move a run from are [`lasect_runs::Transition`]'s)
//!   and the other statements on the store.
//! - [`secrets`] decrypts the DSNs of API-added instances (never logged).
//!
//! Invariant: an agent may only touch its own runs, and only while they are
//! `dispatched` or `running`; every write checks both in its WHERE clause
//! (`runs/tests/store.rs` tries each from every status and as another agent).

pub mod dispatch;
pub mod listener;
pub mod registry;
pub mod secrets;
pub mod service;
pub mod store_ops;
pub mod stream;

pub use registry::Registry;

/// Largest result page accepted from an agent (the agent sends ≤ 1 MiB).
pub const MAX_PAGE_BYTES: usize = 8 << 20;
/// Largest gRPC message on the Control stream (import inputs, pages).
pub const MAX_CONTROL_MESSAGE_BYTES: usize = 48 << 20;
