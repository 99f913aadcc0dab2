//! Each sslmode against real clusters: one with `ssl = on` and a certificate
//! for `localhost` and 127.0.0.1 from a test CA, one with `ssl = off`.

use std::path::PathBuf;

use lasect_pgtls::{ConnectTlsError, PgConfig};
use lasect_testkit::{PgCluster, PgOptions, TestCa};

struct Setup {
    pg: PgCluster,
    _dir: tempfile::TempDir,
    ca_file: PathBuf,
    other_ca_file: PathBuf,
}

fn ssl_cluster() -> Setup {
    let ca = TestCa::new("pgtls test CA").expect("CA");
    let other = TestCa::new("some other CA").expect("other CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = dir.path().join("ca.pem");
    let other_ca_file = dir.path().join("other.pem");
    ca.write_cert(&ca_file).expect("write CA");
    other.write_cert(&other_ca_file).expect("write other CA");
    let pg = PgCluster::start(PgOptions {
        tls: Some(
            ca.server_cert(&["localhost", "127.0.0.1"])
                .expect("server cert"),
        ),
        ..PgOptions::default()
    })
    .expect("cluster");
    Setup {
        pg,
        _dir: dir,
        ca_file,
        other_ca_file,
    }
}

/// Connects and returns whether the session's backend is on TLS.
async fn connect(dsn: &str) -> Result<bool, String> {
    let config = PgConfig::parse(dsn).map_err(|e| e.to_string())?;
    let (client, connection) = config
        .connect()
        .await
        .map_err(|e| lasect_pgtls::describe(&e))?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| lasect_pgtls::describe(&e))?;
    Ok(row.get(0))
}

async fn connect_err(config: &PgConfig) -> tokio_postgres::Error {
    match config.connect().await {
        Ok(_) => panic!("connected, but the connection should have been refused"),
        Err(e) => e,
    }
}

fn tls_cause(e: &tokio_postgres::Error) -> Option<&ConnectTlsError> {
    std::error::Error::source(e)?.downcast_ref::<ConnectTlsError>()
}

#[tokio::test]
async fn verify_full_with_the_right_ca_connects_over_tls() {
    let s = ssl_cluster();
    for host in ["localhost", "127.0.0.1"] {
        let dsn = format!(
            "host={host} port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
            s.pg.port(),
            s.ca_file.display()
        );
        assert_eq!(connect(&dsn).await, Ok(true), "{host}");
    }
    let uri = format!(
        "postgresql://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        s.pg.port(),
        s.ca_file.display()
    );
    assert_eq!(connect(&uri).await, Ok(true));
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_clearly() {
    let s = ssl_cluster();
    for mode in ["verify-full", "verify-ca", "require"] {
        let dsn = format!(
            "host=localhost port={} user=postgres password=hunter2 dbname=postgres sslmode={mode} sslrootcert={}",
            s.pg.port(),
            s.other_ca_file.display()
        );
        let config = PgConfig::parse(&dsn).expect("parse");
        let err = connect_err(&config).await;
        assert!(
            matches!(tls_cause(&err), Some(ConnectTlsError::UnknownIssuer { .. })),
            "{mode}: {err:?}"
        );
        let text = lasect_pgtls::describe(&err);
        assert!(
            text.contains("not signed by a CA in sslrootcert")
                && text.contains("other.pem")
                && !text.contains("hunter2"),
            "{mode}: {text}"
        );
    }
}

#[tokio::test]
async fn a_wrong_host_name_fails_verify_full_but_passes_verify_ca() {
    let s = ssl_cluster();
    let dsn = |mode: &str| {
        format!(
            "host=db.wrong.example hostaddr=127.0.0.1 port={} user=postgres dbname=postgres sslmode={mode} sslrootcert={}",
            s.pg.port(),
            s.ca_file.display()
        )
    };
    let config = PgConfig::parse(&dsn("verify-full")).expect("parse");
    let err = connect_err(&config).await;
    assert!(
        matches!(tls_cause(&err), Some(ConnectTlsError::WrongHostName { host }) if host == "db.wrong.example"),
        "{err:?}"
    );
    assert!(
        lasect_pgtls::describe(&err).contains("not valid for the host name `db.wrong.example`"),
        "{}",
        lasect_pgtls::describe(&err)
    );
    assert_eq!(connect(&dsn("verify-ca")).await, Ok(true));
}

#[tokio::test]
async fn require_without_a_root_encrypts_without_checking() {
    let s = ssl_cluster();
    let dsn = format!(
        "host=db.wrong.example hostaddr=127.0.0.1 port={} user=postgres dbname=postgres sslmode=require",
        s.pg.port()
    );
    assert_eq!(connect(&dsn).await, Ok(true));
    // prefer takes TLS when the server offers it.
    let dsn = format!(
        "host=localhost port={} user=postgres dbname=postgres",
        s.pg.port()
    );
    assert_eq!(connect(&dsn).await, Ok(true));
}

#[tokio::test]
async fn a_server_without_tls_is_refused_when_tls_is_required() {
    let pg = PgCluster::start(PgOptions::default()).expect("cluster");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = dir.path().join("ca.pem");
    TestCa::new("unused CA")
        .expect("CA")
        .write_cert(&ca_file)
        .expect("write CA");
    for mode in ["require", "verify-ca", "verify-full"] {
        let dsn = format!(
            "host=localhost port={} user=postgres dbname=postgres sslmode={mode} sslrootcert={}",
            pg.port(),
            ca_file.display()
        );
        let err = connect(&dsn).await.expect_err(mode);
        assert!(err.contains("server does not support TLS"), "{mode}: {err}");
    }
    for mode in ["prefer", "allow", "disable"] {
        let dsn = format!(
            "host=localhost port={} user=postgres dbname=postgres sslmode={mode}",
            pg.port()
        );
        assert_eq!(connect(&dsn).await, Ok(false), "{mode}");
    }
}

#[test]
fn an_unreadable_root_certificate_is_named() {
    let err = PgConfig::parse(
        "host=localhost password=hunter2 sslmode=verify-full sslrootcert=/nonexistent/ca.pem",
    )
    .expect_err("missing file");
    let text = err.to_string();
    assert!(
        text.contains("cannot read sslrootcert /nonexistent/ca.pem") && !text.contains("hunter2"),
        "{text}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate").expect("write");
    let text = PgConfig::parse(&format!(
        "host=localhost sslmode=verify-ca sslrootcert={}",
        not_pem.display()
    ))
    .expect_err("no certificate")
    .to_string();
    assert!(text.contains("no PEM certificate"), "{text}");
}
