//! The scripts that start Lasect binaries (`make bench`, `make demo`) pass on
//! none of the caller's LASECT_* variables but their own knobs: `make bench`
//! from a shell that had sourced `.lasect/demo/env` once sent its load into
//! the demo's store.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// What the demo's `.lasect/demo/env` exports, and a log level.
fn with_demo_env(cmd: &mut Command) -> &mut Command {
    cmd.env(
        "LASECT_STORE_DSN",
        "host=/demo/run port=55432 dbname=lasect",
    )
    .env("LASECT_URL", "https://127.0.0.1:8443")
    .env("LASECT_CA_FILE", "/demo/tls/ca.pem")
    .env("LASECT_TOKEN", "lsat_demo")
    .env("LASECT_LOG", "debug")
}

/// The LASECT_* lines of an `env` listing, sorted.
fn lasect_lines(stdout: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with("LASECT_"))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[test]
fn bench_run_keeps_only_its_own_knobs() {
    let out = with_demo_env(Command::new("bash").arg(root().join("bench/run.sh")))
        .arg("--print-env")
        .env("LASECT_BENCH_QUICK", "1")
        .output()
        .expect("run bench/run.sh --print-env");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lasect_lines(&out.stdout), ["LASECT_BENCH_QUICK=1"]);
}

#[test]
fn demo_keeps_its_ports_and_the_log_level() {
    let script = format!(
        ". {:?} && lasect_hermetic_env LASECT_DEMO_ LASECT_LOG && env",
        root().join("scripts/hermetic.sh")
    );
    let out = with_demo_env(Command::new("bash").args(["-c", &script]))
        .env("LASECT_DEMO_PG_PORT", "55433")
        .env("LASECT_LOGS", "not a knob")
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lasect_lines(&out.stdout),
        ["LASECT_DEMO_PG_PORT=55433", "LASECT_LOG=debug"]
    );
}

/// The demo script and the agent bench call the cleaning before anything
/// else reads the environment.
#[test]
fn every_script_that_starts_binaries_cleans_first() {
    for (script, call) in [
        ("bench/run.sh", "lasect_hermetic_env LASECT_BENCH_"),
        ("bench/agent.sh", "lasect_hermetic_env LASECT_BENCH_"),
        (
            "scripts/demo.sh",
            "lasect_hermetic_env LASECT_DEMO_ LASECT_LOG",
        ),
    ] {
        let text = std::fs::read_to_string(root().join(script)).expect("read script");
        let lines: Vec<&str> = text.lines().collect();
        let cleaned = lines
            .iter()
            .position(|l| *l == call)
            .unwrap_or_else(|| panic!("{script} does not call `{call}`"));
        for line in &lines[..cleaned] {
            let code = !line.trim_start().starts_with('#');
            assert!(
                !(code
                    && ["$BIN", "cargo ", "LASECT_"]
                        .iter()
                        .any(|n| line.contains(n))),
                "{script} reads the environment or runs a binary before cleaning it: {line}"
            );
        }
    }
}
