//! The `lasect-agent` binary: `check-config`, and `run` against a test
//! ingest and a real PostgreSQL cluster, stopped by SIGTERM.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use lasect_proto::v1::sample::Family;
use lasect_testkit::{ChildGuard, PgCluster, PgOptions};
use support::ingest::{Shared, TestServer, install_crypto, lock};
use support::{TestPki, config_toml};

const BIN: &str = env!("CARGO_BIN_EXE_lasect-agent");
const PASSWORD: &str = "topsecret-pw";

fn write_config(pki: &TestPki, text: &str) -> PathBuf {
    let path = pki.path("agent.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn good_config(pki: &TestPki) -> String {
    config_toml(
        pki,
        &pki.path("state"),
        "https://127.0.0.1:7443",
        &format!("host=127.0.0.1 port=5432 user=lasect_agent password={PASSWORD}"),
    )
}

fn agent(args: &[&str], config: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run lasect-agent")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_config_prints_a_summary() {
    let pki = TestPki::new();
    let path = write_config(&pki, &good_config(&pki));
    let out = agent(&["check-config"], &path);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("{}: config OK", path.display()).as_str()),
        "{stdout}"
    );
    assert_eq!(lines.clone().count(), 1, "one summary line: {stdout}");
    assert!(stdout.contains("instances=[main]"), "{stdout}");
    assert!(stdout.contains("interval_secs=10"), "{stdout}");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));

    // --config may also come first.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn check_config_fails_with_the_field_error() {
    let pki = TestPki::new();
    let path = write_config(
        &pki,
        &good_config(&pki)
            .replace("interval_secs = 10", "interval_secs = 0")
            .replace("https://", "http://"),
    );
    let out = agent(&["check-config"], &path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("collect.interval_secs: 0 is out of range"),
        "{stderr}"
    );
    assert!(stderr.contains("ingest.endpoint:"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    // One problem per line under a header naming the file and the count.
    assert!(
        stderr.contains(&format!(
            "{}: invalid configuration (2 problems):",
            path.display()
        )),
        "{stderr}"
    );
    let problems: Vec<&str> = stderr.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(problems.len(), 2, "{stderr}");
    assert!(
        text(&out.stdout).is_empty(),
        "nothing on stdout when it fails"
    );
}

/// What the package installs, unedited: its TLS files do not exist yet, so `check-config`
/// (which the post-install step runs as a warning) names them instead of passing.
#[test]
fn check_config_of_the_unedited_example_names_the_missing_tls_files() {
    let example = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/etc/lasect/agent.toml"
    ));
    let out = agent(&["check-config"], example);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("  tls.ca_file: "), "{stderr}");
    assert!(stderr.contains("/etc/lasect/tls/ca.pem"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn version_names_the_workspace_version() {
    let out = Command::new(BIN).arg("--version").output().expect("run");
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("lasect-agent {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_missing_or_broken_config_file_is_an_error_not_a_panic() {
    let pki = TestPki::new();
    let out = agent(&["check-config"], &pki.path("absent.toml"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("absent.toml"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let path = write_config(&pki, "state_dir = [");
    let out = agent(&["check-config"], &path);
    assert_eq!(out.status.code(), Some(1));
    assert!(!text(&out.stderr).contains("panicked"));

    // `run` refuses an invalid config before doing anything.
    let path = write_config(
        &pki,
        &good_config(&pki).replace("name = \"main\"", "name = \"\""),
    );
    let out = agent(&["run"], &path);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("instances[0].name"));
}

#[test]
fn unknown_keys_are_warned_about() {
    let pki = TestPki::new();
    let path = write_config(
        &pki,
        &good_config(&pki).replace("[collect]", "[collect]\nstatements = true"),
    );
    let out = agent(&["check-config"], &path);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("WARN") && stderr.contains("collect.statements"),
        "{stderr}"
    );
}

#[test]
fn bad_arguments_are_rejected() {
    let out = Command::new(BIN)
        .arg("no-such-command")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(!text(&out.stderr).contains("panicked"));
}

/// Seqs of the batches the test ingest received that hold samples of `main`.
fn batches_with_main(shared: &Shared) -> Vec<u64> {
    lock(&shared.received)
        .iter()
        .filter(|(_, b)| {
            b.samples
                .iter()
                .any(|s| s.instance == "main" && matches!(s.family, Some(Family::Database(_))))
                && b.samples
                    .iter()
                    .any(|s| matches!(s.family, Some(Family::HostCpu(_))))
        })
        .map(|(seq, _)| *seq)
        .collect()
}

async fn wait_for_batches(shared: &Shared, at_least: usize) {
    for _ in 0..600 {
        if batches_with_main(shared).len() >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the agent did not deliver {at_least} batches");
}

fn spawn_agent(config: &Path) -> ChildGuard {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(config)
        .env("LASECT_LOG", "info,lasect_agent=debug");
    ChildGuard::spawn(cmd).expect("spawn lasect-agent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_delivers_batches_stops_on_sigterm_and_continues_seqs_after_restart() {
    install_crypto();
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let pki = TestPki::new();
    let shared = Arc::new(Shared::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = TestServer::start(&pki, listener, Arc::clone(&shared)).await;

    let dsn = format!("{} password={PASSWORD}", pg.dsn("postgres"));
    let config = config_toml(&pki, &pki.path("state"), &format!("https://{addr}"), &dsn)
        .replace("interval_secs = 10", "interval_secs = 1");
    let path = write_config(&pki, &config);

    let mut child = spawn_agent(&path);
    let started = tokio::task::block_in_place(|| {
        child.wait_for_line("lasect-agent started", Duration::from_secs(30))
    })
    .expect("agent starts");
    assert!(started.contains("instances=[main]"), "{started}");
    wait_for_batches(&shared, 2).await;

    let status = tokio::task::block_in_place(|| child.terminate(Duration::from_secs(20)))
        .expect("agent exits");
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    assert!(
        child
            .lines()
            .iter()
            .any(|l| l.contains("lasect-agent stopped"))
    );
    assert!(
        child.lines().iter().all(|l| !l.contains(PASSWORD)),
        "the DSN must never be logged"
    );
    let first_run = batches_with_main(&shared);
    let highest = *first_run.iter().max().expect("some batches");
    assert!(
        first_run.windows(2).all(|w| w[0] < w[1]),
        "in order: {first_run:?}"
    );

    // A restarted agent continues above every seq it used before.
    let mut child = spawn_agent(&path);
    wait_for_batches(&shared, first_run.len() + 1).await;
    let second_run: Vec<u64> = batches_with_main(&shared)
        .into_iter()
        .skip(first_run.len())
        .collect();
    assert!(
        second_run.iter().all(|&s| s > highest),
        "reused a seq: {second_run:?} after {highest}"
    );
    tokio::task::block_in_place(|| child.terminate(Duration::from_secs(20)));
    server.stop().await;
}
