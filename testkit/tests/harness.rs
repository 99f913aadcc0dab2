//! The harness itself: options take effect, and a cluster is stopped and
//! deleted when its owner is dropped, including by a panic.

use std::time::Duration;

use lasect_testkit::{ChildGuard, LogFormat, PgCluster, PgOptions};

#[tokio::test]
async fn options_take_effect() {
    let pg = PgCluster::start(PgOptions {
        stat_statements: true,
        logical: true,
        log_format: Some(LogFormat::Csv),
        settings: vec![("log_min_duration_statement".into(), "0".into())],
        tls: None,
        tls_only: false,
    })
    .expect("start");
    let c = pg.connect("postgres").await.expect("connect");
    for (name, want) in [
        ("shared_preload_libraries", "pg_stat_statements"),
        ("wal_level", "logical"),
        ("log_destination", "stderr,csvlog"),
        ("log_min_duration_statement", "0"),
    ] {
        let got: String = c
            .query_one("SELECT current_setting($1)", &[&name])
            .await
            .expect("setting")
            .get(0);
        assert_eq!(got, want, "{name}");
    }
    c.batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .expect("pg_stat_statements usable");
    // The unix socket works too.
    let dsn = format!(
        "host={} port={} user=postgres dbname=postgres",
        pg.socket_dir().display(),
        pg.port()
    );
    let (c2, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .expect("socket connect");
    tokio::spawn(conn);
    c2.simple_query("SELECT 1")
        .await
        .expect("query over socket");
}

#[test]
fn drop_after_panic_stops_and_deletes() {
    let (dir, port) = std::panic::catch_unwind(|| {
        let pg = PgCluster::start(PgOptions::default()).expect("start");
        let info = (pg.data_dir(), pg.port());
        std::panic::panic_any(info);
    })
    .expect_err("panicked")
    .downcast::<(std::path::PathBuf, u16)>()
    .map(|b| *b)
    .expect("payload");
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "server still listening on {port}"
    );
}

#[test]
fn parallel_clusters_are_independent() {
    let a = PgCluster::start(PgOptions::default()).expect("a");
    let b = PgCluster::start(PgOptions::default()).expect("b");
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
}

#[test]
fn child_guard_captures_and_terminates() {
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "echo ready; exec sleep 60"]);
    let mut child = ChildGuard::spawn(cmd).expect("spawn");
    let line = child
        .wait_for_line("ready", Duration::from_secs(10))
        .expect("line");
    assert_eq!(line, "ready");
    let status = child.terminate(Duration::from_secs(5)).expect("status");
    assert!(!status.success());
}

/// The server a test talks to is the one the run asked for: `make test`
/// runs the collector tests a second time with `LASECT_PG_BINDIR` and
/// `LASECT_PG_MAJOR` naming PostgreSQL 18, and that pass must not be a
/// second run against the installed server.
#[tokio::test]
async fn the_server_is_the_requested_version() {
    let pg = PgCluster::start(PgOptions::default()).expect("start");
    if let Some(dir) = std::env::var_os("LASECT_PG_BINDIR") {
        assert_eq!(pg.bindir(), std::path::Path::new(&dir));
    }
    let out = std::process::Command::new(pg.bindir().join("postgres"))
        .arg("--version")
        .output()
        .expect("postgres --version");
    let text = String::from_utf8_lossy(&out.stdout);
    // "postgres (PostgreSQL) 18.6"
    let binary_major: i32 = text
        .rsplit(' ')
        .next()
        .and_then(|v| v.trim().split('.').next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("unexpected `postgres --version`: {text:?}"));
    let c = pg.connect("postgres").await.expect("connect");
    let num: i32 = c
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .expect("version")
        .get(0);
    assert_eq!(num / 10_000, binary_major, "{text}");
    if let Ok(want) = std::env::var("LASECT_PG_MAJOR") {
        assert_eq!(num / 10_000, want.parse::<i32>().expect("LASECT_PG_MAJOR"));
    }
}
