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
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let main = include_str!("main.rs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("read tests/") {
        let path = entry.expect("read tests/").path();
        let module = if path.is_dir() && path.join("mod.rs").is_file() {
            path.file_name()
        } else if path.extension().is_some_and(|e| e == "rs") {
            path.file_stem()
        } else {
            continue;
        };
        let Some(module) = module.and_then(|m| m.to_str()) else {
            continue;
        };
        if module == "main" {
            continue;
        }
        seen += 1;
        assert!(
            main.contains(&format!("\nmod {module};\n")),
            "{} is not declared in tests/main.rs: its tests would never run",
            path.display()
        );
    }
    assert!(seen > 0, "no test modules found in {}", dir.display());
}
