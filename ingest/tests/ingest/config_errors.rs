//! The binary refuses a bad config with a clear message and a failure exit.

use std::process::{Command, Output};

fn run_with_config(config: Option<&str>) -> Output {
    let dir = tempfile::tempdir().expect("create temp dir");
    let path = dir.path().join("ingest.toml");
    if let Some(text) = config {
        std::fs::write(&path, text).expect("write config");
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lasect-ingest"));
    cmd.arg("--config").arg(&path);
    lasect_testkit::without_inherited_lasect_env(&mut cmd)
        .output()
        .expect("run lasect-ingest")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn missing_config_file_is_named() {
    let output = run_with_config(None);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("load config file"), "{err}");
    assert!(err.contains("ingest.toml"), "{err}");
}

#[test]
fn every_bad_field_is_reported() {
    let output = run_with_config(Some(
        "listen = \"nowhere\"\n[tls]\nca_file = \"/nonexistent/ca.pem\"\n\
         cert_file = \"/nonexistent/ingest.pem\"\nkey_file = \"/nonexistent/ingest.key\"\n\
         [limits]\nmax_samples_per_batch = 0\n",
    ));
    assert!(!output.status.success());
    let err = stderr(&output);
    for needle in [
        "listen: `nowhere` is not an IP:port address",
        "store_dsn: is missing",
        "tls.ca_file: cannot read /nonexistent/ca.pem",
        "tls.cert_file: cannot read /nonexistent/ingest.pem",
        "tls.key_file: cannot read /nonexistent/ingest.key",
        "limits.max_samples_per_batch: must be greater than 0",
    ] {
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    }
}

#[test]
fn unknown_keys_and_bad_toml_are_refused() {
    let output = run_with_config(Some("lissen = \"0.0.0.0:1\"\n"));
    assert!(!output.status.success());
    assert!(stderr(&output).contains("lissen"), "{}", stderr(&output));

    let output = run_with_config(Some("[tls\n"));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("is not valid"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn unusable_tls_files_are_named() {
    let dir = tempfile::tempdir().expect("create temp dir");
    for name in ["ca.pem", "ingest.pem", "ingest.key"] {
        std::fs::write(dir.path().join(name), "not PEM at all\n").expect("write file");
    }
    let config = format!(
        "listen = \"127.0.0.1:0\"\nstore_dsn = \"host=/nonexistent\"\n[tls]\n\
         ca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
        dir.path().join("ca.pem"),
        dir.path().join("ingest.pem"),
        dir.path().join("ingest.key"),
    );
    let output = run_with_config(Some(&config));
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("ca.pem: contains no PEM certificate"), "{err}");
}

/// An enrollment CA that tls.ca_file does not trust would sign certificates
/// ingest itself refuses: it is a startup error, named.
#[test]
fn enrollment_ca_must_be_trusted_for_client_certificates() {
    let tls = crate::support::TlsMaterial::generate();
    let other = tempfile::tempdir().expect("create temp dir");
    lasect_pki::CertificateAuthority::generate("Another CA")
        .expect("generate CA")
        .save(other.path())
        .expect("save CA");
    let config = format!(
        "listen = \"127.0.0.1:0\"\nstore_dsn = \"host=/nonexistent\"\n[tls]\n\
         ca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n\
         [enrollment]\nca_cert = {:?}\nca_key = {:?}\n",
        tls.path("ca.pem"),
        tls.path("ingest.pem"),
        tls.path("ingest.key"),
        other.path().join("ca.pem"),
        other.path().join("ca.key"),
    );
    let output = run_with_config(Some(&config));
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("enrollment.ca_cert is not one of the CAs in tls.ca_file"),
        "{err}"
    );
}

/// A store cluster with two migrated stores, and an ingest config whose
/// `store_dsn` (written only when `file_dsn` is true) names store A.
struct TwoStores {
    pg: lasect_testkit::PgCluster,
    a: String,
    b: String,
    tls: crate::support::TlsMaterial,
}

impl TwoStores {
    async fn new() -> Self {
        let pg = lasect_testkit::PgCluster::start(lasect_testkit::PgOptions::default())
            .expect("start PostgreSQL");
        let a = pg.store_dsn().await.expect("store A");
        let b = pg.store_dsn().await.expect("store B");
        Self {
            pg,
            a,
            b,
            tls: crate::support::TlsMaterial::generate(),
        }
    }

    fn config(&self, file_dsn: bool) -> std::path::PathBuf {
        let store = if file_dsn {
            format!("store_dsn = {:?}\n", self.a)
        } else {
            String::new()
        };
        let path = self.tls.path("ingest.toml");
        std::fs::write(
            &path,
            format!(
                "listen = \"127.0.0.1:0\"\n{store}[tls]\nca_file = {:?}\ncert_file = {:?}\n\
                 key_file = {:?}\n",
                self.tls.path("ca.pem"),
                self.tls.path("ingest.pem"),
                self.tls.path("ingest.key"),
            ),
        )
        .expect("write config");
        path
    }

    /// Starts ingest with `--config` and `LASECT_STORE_DSN` = store B; returns
    /// the line that says where the DSN came from, once ingest listens.
    fn start(&self, file_dsn: bool) -> (lasect_testkit::ChildGuard, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lasect-ingest"));
        cmd.arg("--config")
            .arg(self.config(file_dsn))
            .env("LASECT_STORE_DSN", &self.b)
            .env("LASECT_LOG", "info");
        let mut child = lasect_testkit::ChildGuard::spawn(cmd).expect("spawn lasect-ingest");
        child
            .wait_for_line("lasect-ingest listening on ", START)
            .expect("ingest listens");
        let line = child
            .lines()
            .into_iter()
            .find(|l| l.contains("store DSN from"))
            .expect("the DSN's source is logged");
        (child, line)
    }

    /// Sessions on each store once the store that must be idle has no session left, or after
    /// [`SETTLE`]: the session that migrated a store can still show in `pg_stat_activity` a
    /// moment after it closed, while ingest's pool keeps its sessions open, so one ingest holds
    /// is still counted.
    async fn sessions_settled(&self, idle_is_b: bool) -> (i64, i64) {
        let deadline = std::time::Instant::now() + SETTLE;
        loop {
            let (a, b) = self.sessions().await;
            let idle = if idle_is_b { b } else { a };
            if idle == 0 || std::time::Instant::now() >= deadline {
                return (a, b);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Sessions open on each store's database (ingest's pool keeps its own).
    async fn sessions(&self) -> (i64, i64) {
        let db = self.pg.connect("postgres").await.expect("connect");
        let dbname = |dsn: &str| {
            dsn.split_whitespace()
                .find_map(|kv| kv.strip_prefix("dbname="))
                .expect("dbname in DSN")
                .to_owned()
        };
        let (a, b) = (dbname(&self.a), dbname(&self.b));
        let row = db
            .query_one(
                "SELECT count(*) FILTER (WHERE datname = $1), count(*) FILTER (WHERE datname = $2) \
                 FROM pg_stat_activity",
                &[&a, &b],
            )
            .await
            .expect("count sessions");
        (row.get(0), row.get(1))
    }
}

/// How long a closed session may linger in `pg_stat_activity`; a bound, not a timing assertion.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// Bound on start-up (a cold debug build on a loaded machine), not a timing assertion.
const START: std::time::Duration = std::time::Duration::from_secs(60);

/// `make bench` from a shell that had sourced the demo's environment sent its
/// load into the demo's store: a file named with --config must win over an
/// inherited LASECT_STORE_DSN, and say so.
#[tokio::test]
async fn explicit_config_wins_over_the_environment_and_says_so() {
    let stores = TwoStores::new().await;
    let (_ingest, line) = stores.start(true);
    assert!(
        line.contains("store DSN from store_dsn of --config"),
        "{line}"
    );
    assert!(
        line.contains("LASECT_STORE_DSN is set but not used"),
        "{line}"
    );
    let (a, b) = stores.sessions_settled(true).await;
    assert!(a > 0, "ingest holds no session on store A");
    assert_eq!(b, 0, "ingest connected to store B (the environment's)");
}

/// A file without store_dsn still takes it from the environment.
#[tokio::test]
async fn environment_applies_when_the_file_has_no_dsn() {
    let stores = TwoStores::new().await;
    let (_ingest, line) = stores.start(false);
    assert!(line.contains("store DSN from LASECT_STORE_DSN"), "{line}");
    let (a, b) = stores.sessions_settled(false).await;
    assert_eq!(a, 0, "ingest connected to store A");
    assert!(b > 0, "ingest holds no session on store B");
}
