//! The real `lasect-api` binary: `ca init`, `migrate`, `serve` and their failures.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use lasect_testkit::{ChildGuard, PgCluster, PgOptions, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_lasect-api");

fn lasect_api(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("LASECT_LOG", "info");
    lasect_testkit::without_inherited_lasect_env(&mut cmd);
    cmd
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let output = cmd.output().expect("run lasect-api");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn ca_init_creates_then_reuses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = dir.path().join("tls");
    let tls_arg = tls.to_str().expect("utf-8 path");
    let args = [
        "ca",
        "init",
        "--dir",
        tls_arg,
        "--agent",
        "db-01",
        "--ingest-san",
        "ingest.example.com",
    ];
    let (out, stdout, stderr) = run(&mut lasect_api(&args));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    for file in [
        "ca.pem",
        "ca.key",
        "ingest.pem",
        "ingest.key",
        "api.pem",
        "api.key",
        "agents/db-01.pem",
        "agents/db-01.key",
    ] {
        assert!(tls.join(file).is_file(), "{file} missing");
    }
    for key in ["ca.key", "ingest.key", "api.key", "agents/db-01.key"] {
        assert_eq!(mode(&tls.join(key)), 0o600, "{key}");
    }
    assert!(stdout.contains("created"), "{stdout}");
    assert!(!stdout.contains("PRIVATE KEY") && !stderr.contains("PRIVATE KEY"));
    let ca_before = fs::read(tls.join("ca.key")).expect("read CA key");

    let args2 = [
        "ca", "init", "--dir", tls_arg, "--agent", "db-01", "--agent", "db-02",
    ];
    let (out, stdout, stderr) = run(&mut lasect_api(&args2));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(
        fs::read(tls.join("ca.key")).expect("read CA key"),
        ca_before
    );
    let line = |label: &str| {
        stdout
            .lines()
            .find(|l| l.contains(label))
            .unwrap_or_else(|| panic!("no line for {label}: {stdout}"))
            .to_owned()
    };
    assert!(line(" CA ").starts_with("reused"), "{stdout}");
    assert!(line("agent db-01").starts_with("reused"), "{stdout}");
    assert!(line("agent db-02").starts_with("created"), "{stdout}");
    assert!(tls.join("agents/db-02.key").is_file());
}

#[test]
fn ca_init_rejects_bad_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = dir.path().join("tls");
    let tls_arg = tls.to_str().expect("utf-8 path");
    let (out, _, stderr) = run(&mut lasect_api(&[
        "ca", "init", "--dir", tls_arg, "--agent", "Bad/Id",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("invalid agent id \"Bad/Id\""), "{stderr}");
    assert!(!tls.exists());

    let (out, _, stderr) = run(&mut lasect_api(&[
        "ca",
        "init",
        "--dir",
        tls_arg,
        "--validity-days",
        "0",
    ]));
    assert_eq!(out.status.code(), Some(2), "usage error: {stderr}");
}

#[test]
fn a_subcommand_is_required() {
    let (out, _, stderr) = run(&mut lasect_api(&[]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("Usage"), "{stderr}");
}

#[tokio::test]
async fn migrate_applies_then_reports_up_to_date() {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    pg.create_database("fresh").await.expect("create db");
    let dsn = pg.dsn("fresh");
    let (out, stdout, stderr) = run(&mut lasect_api(&["migrate", "--store-dsn", &dsn]));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("applied V1__foundation"), "{stdout}");

    // Second time through LASECT_STORE_DSN: nothing left to do.
    let (out, stdout, stderr) = run(lasect_api(&["migrate"]).env("LASECT_STORE_DSN", &dsn));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("up to date"), "{stdout}");
}

#[test]
fn migrate_reports_an_unreachable_store() {
    let dsn = format!(
        "host=127.0.0.1 port={} user=postgres password=hunter2 dbname=x",
        free_port()
    );
    let (out, _, stderr) = run(&mut lasect_api(&["migrate", "--store-dsn", &dsn]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("connect to the store"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "password leaked: {stderr}");
}

fn write_config(dir: &Path, listen: &str, dsn: &str, tls: &Path) -> String {
    let path = dir.join("api.toml");
    fs::write(
        &path,
        format!(
            "listen = \"{listen}\"\nstore_dsn = \"{dsn}\"\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            tls.join("api.pem").display(),
            tls.join("api.key").display()
        ),
    )
    .expect("write config");
    path.to_str().expect("utf-8 path").to_owned()
}

#[tokio::test]
async fn serve_migrates_listens_and_stops_on_sigterm() {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    pg.create_database("fresh").await.expect("create db");
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = dir.path().join("tls");
    let (out, _, stderr) = run(&mut lasect_api(&[
        "ca",
        "init",
        "--dir",
        tls.to_str().expect("utf-8"),
    ]));
    assert!(out.status.success(), "{stderr}");
    let listen = format!("127.0.0.1:{}", free_port());
    let config = write_config(dir.path(), &listen, &pg.dsn("fresh"), &tls);

    let mut api = ChildGuard::spawn(lasect_api(&["serve", "--config", &config])).expect("spawn");
    api.wait_for_line(
        &format!("lasect-api listening on https://{listen}"),
        Duration::from_secs(60),
    )
    .expect("API listens");

    // It migrated the fresh database before listening.
    let client = pg.connect("fresh").await.expect("connect");
    let row = client
        .query_one("SELECT count(*) FROM metric_families", &[])
        .await
        .expect("schema exists");
    // Every family the store has is readable through the API.
    assert_eq!(
        row.get::<_, i64>(0),
        i64::try_from(lasect_api::routes::FAMILIES.len()).expect("small")
    );

    let status = api.terminate(Duration::from_secs(30)).expect("exit status");
    assert!(status.success(), "graceful exit on SIGTERM: {status}");
}

#[test]
fn serve_refuses_bad_configs_clearly() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Plain HTTP on a public address, and no DSN: both fields reported.
    let path = dir.path().join("bad.toml");
    fs::write(
        &path,
        "listen = \"0.0.0.0:1\"\n[tls]\nallow_plaintext = true\n",
    )
    .expect("write");
    let (out, _, stderr) = run(&mut lasect_api(&[
        "serve",
        "--config",
        path.to_str().expect("utf-8"),
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("store_dsn: is required"), "{stderr}");
    assert!(stderr.contains("tls.allow_plaintext"), "{stderr}");

    let (out, _, stderr) = run(&mut lasect_api(&[
        "serve",
        "--config",
        "/nonexistent/api.toml",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("read config file /nonexistent/api.toml"),
        "{stderr}"
    );

    // Valid config but the store is down: says so, with no password.
    let tls = dir.path().join("tls");
    let (out, _, stderr) = run(&mut lasect_api(&[
        "ca",
        "init",
        "--dir",
        tls.to_str().expect("utf-8"),
    ]));
    assert!(out.status.success(), "{stderr}");
    let dsn = format!(
        "host=127.0.0.1 port={} user=u password=hunter2 dbname=x",
        free_port()
    );
    let config = write_config(dir.path(), "127.0.0.1:0", &dsn, &tls);
    let (out, _, stderr) = run(&mut lasect_api(&["serve", "--config", &config]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("connect to the store"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test]
async fn serve_reports_missing_tls_files() {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let dsn = pg.store_dsn().await.expect("store");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "127.0.0.1:0", &dsn, &dir.path().join("no-tls"));
    let (out, _, stderr) = run(&mut lasect_api(&["serve", "--config", &config]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("read TLS certificate file"), "{stderr}");
    assert!(stderr.contains("no-tls/api.pem"), "{stderr}");
}

/// Whether `db` holds a migrated store.
async fn migrated(pg: &PgCluster, db: &str) -> bool {
    let client = pg.connect(db).await.expect("connect");
    client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .expect("look for the migrations table")
        .get(0)
}

/// `make bench` from a shell that had sourced the demo's environment once sent its load into
/// the demo's store: a file named with --config wins over LASECT_STORE_DSN, and says so; the
/// environment still beats the default config file.
#[tokio::test]
async fn explicit_config_wins_over_the_environment() {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    for db in ["a", "b", "c"] {
        pg.create_database(db).await.expect("create db");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = dir.path().join("tls");
    let (out, _, stderr) = run(&mut lasect_api(&[
        "ca",
        "init",
        "--dir",
        tls.to_str().expect("utf-8"),
    ]));
    assert!(out.status.success(), "{stderr}");

    // migrate --config (store a) with LASECT_STORE_DSN (store b): a.
    let config = write_config(dir.path(), "127.0.0.1:1", &pg.dsn("a"), &tls);
    let (out, stdout, stderr) =
        run(lasect_api(&["migrate", "--config", &config]).env("LASECT_STORE_DSN", pg.dsn("b")));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(migrated(&pg, "a").await, "store a was not migrated");
    assert!(
        !migrated(&pg, "b").await,
        "the environment's store b was migrated"
    );
    assert!(
        stderr.contains("store DSN from store_dsn of --config")
            && stderr.contains("dbname=a")
            && stderr.contains("LASECT_STORE_DSN is set but not used"),
        "{stderr}"
    );

    // serve --config (store c, fresh) with LASECT_STORE_DSN (store b): migrates and serves c.
    let listen = format!("127.0.0.1:{}", free_port());
    let config = write_config(dir.path(), &listen, &pg.dsn("c"), &tls);
    let mut serve = lasect_api(&["serve", "--config", &config]);
    serve.env("LASECT_STORE_DSN", pg.dsn("b"));
    let mut api = ChildGuard::spawn(serve).expect("spawn");
    api.wait_for_line("lasect-api listening on", Duration::from_secs(60))
        .expect("API listens");
    let line = api
        .lines()
        .into_iter()
        .find(|l| l.contains("store DSN from"))
        .expect("the DSN's source is logged");
    assert!(
        line.contains("store_dsn of --config") && line.contains("dbname=c"),
        "{line}"
    );
    assert!(migrated(&pg, "c").await, "store c was not migrated");
    assert!(
        !migrated(&pg, "b").await,
        "the environment's store b was migrated"
    );
    api.terminate(Duration::from_secs(30));

    // Without --config the environment applies (the default file is not even read).
    let (out, stdout, stderr) = run(lasect_api(&["migrate"]).env("LASECT_STORE_DSN", pg.dsn("b")));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(migrated(&pg, "b").await, "store b was not migrated");
    assert!(
        stderr.contains("store DSN from LASECT_STORE_DSN") && stderr.contains("dbname=b"),
        "{stderr}"
    );
}
