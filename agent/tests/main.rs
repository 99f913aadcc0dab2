//! The agent's integration tests, linked into one binary instead of one per file: real
//! PostgreSQL clusters (lasect-testkit), a TLS server standing in for ingest
//! (`support::ingest`), and the real `lasect-agent` binary for the CLI tests. `Cargo.toml` sets
//! `autotests = false`, so a file in `tests/` runs only when it is declared here;
//! [`every_test_file_is_declared`] fails for one that is not.

mod cli;
mod collect;
mod config;
mod custom;
mod logs;
mod metrics;
mod relations;
mod run_privileges;
mod sender;
mod seq;
mod spool;
mod spool_corruption;
mod statement_texts;
mod statements;
mod support;

#[test]
fn every_test_file_is_declared() {
    lasect_testkit::assert_every_test_file_declared(
        env!("CARGO_MANIFEST_DIR"),
        include_str!("main.rs"),
    );
}
