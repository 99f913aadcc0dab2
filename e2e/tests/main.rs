//! The end-to-end tests, linked into one binary instead of one per file: each file is a module;
//! the shared support is the crate's library (`e2e/src/lib.rs`: `Stack`, the real binaries of
//! `cargo build --bins` against real PostgreSQL clusters) and `support` (what the files share
//! in one process: the lock that keeps fault tests away from the heavy ones). `Cargo.toml` sets
//! `autotests = false`, so a file in `tests/` runs only when it is declared here;
//! [`every_test_file_is_declared`] fails for one that is not.
//! Run one file's tests with `cargo test -p lasect-e2e --test main -- <file>::`.

mod agent_identity;
mod alerts;
mod alerts_default_pack;
mod alerts_secrets;
mod backups;
mod backups_as_database_user;
mod backups_faults;
mod backups_object_store;
mod backups_restore;
mod backups_schedule;
mod console;
mod console_backups;
mod console_live;
mod console_pages;
mod dashboards;
mod delivery_faults;
mod enrollment;
mod families;
mod ingest_faults;
mod live;
mod logs;
mod migrations_fleet;
mod openapi_fuzz;
mod packages;
mod replication_families;
mod replication_streams;
mod replication_topology;
mod runs;
mod runs_ingest_restart;
mod runs_privileges;
mod runs_two_ingests;
mod schema_and_data;
mod support;
mod tls_databases;
mod walking_skeleton;

#[test]
fn every_test_file_is_declared() {
    lasect_testkit::assert_every_test_file_declared(
        env!("CARGO_MANIFEST_DIR"),
        include_str!("main.rs"),
    );
}
