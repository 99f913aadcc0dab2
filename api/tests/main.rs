//! The API's integration tests, linked into one binary instead of one per file: each file is a
//! module, `common` the shared support (users, tokens, the seeded [`common::fixture`], request
//! helpers). Real PostgreSQL clusters (lasect-testkit) and, for `admin` and `binary`, the real
//! `lasect-api` binary. `Cargo.toml` sets `autotests = false`, so a file in `tests/` runs only
//! when it is declared here; [`every_test_file_is_declared`] fails for one that is not.
//! Run one file's tests with `cargo test -p lasect-api --test main -- <file>::`.

mod access;
mod admin;
mod agents;
mod alert_notify;
mod alerts;
mod alerts_batch;
mod alerts_live;
mod alerts_wraparound;
mod audit;
mod backup_repositories;
mod backup_schedule;
mod binary;
mod bodies;
mod common;
mod config;
mod console_reads;
mod instance_figures;
mod live;
mod live_ticket;
mod login;
mod login_abuse;
mod openapi;
mod read_api;
mod routes;
mod runs;
mod runs_live;
mod sessions;
mod statement_plans;
mod tokens;
mod users;

#[test]
fn every_test_file_is_declared() {
    lasect_testkit::assert_every_test_file_declared(
        env!("CARGO_MANIFEST_DIR"),
        include_str!("main.rs"),
    );
}
