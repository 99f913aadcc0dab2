//! A running `lasect-ingest` binary against a throwaway store, TLS material
//! made for the test, and helpers to push batches and count rows.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use lasect_pki::{CertificateAuthority, IssuedCert};
use lasect_proto::v1::ingest_client::IngestClient;
use lasect_proto::v1::{PushAck, PushRequest, Sample, SampleBatch};
use lasect_testkit::{ChildGuard, PgCluster, PgOptions};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// Generous guard against a hung connection; not a timing assertion.
pub const CALL_GUARD: Duration = Duration::from_secs(60);

/// The Lasect CA with an ingest server cert and an agent cert, plus an
/// unrelated CA with a client cert of its own for the same agent id.
pub struct TlsMaterial {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub agent: IssuedCert,
    /// A second agent of the same CA (`agent-2`).
    pub agent2: IssuedCert,
    pub evil_agent: IssuedCert,
}

impl TlsMaterial {
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("create TLS dir");
        let ca = CertificateAuthority::generate("Lasect test CA").expect("generate CA");
        let sans = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        let server = ca
            .issue_server("lasect-ingest", &sans, VALIDITY)
            .expect("issue server cert");
        server
            .write(dir.path(), "ingest")
            .expect("write server cert");
        // ca.pem and ca.key, for the tests that enable enrollment.
        ca.save(dir.path()).expect("write CA");
        let agent = ca
            .issue_client("agent-1", VALIDITY)
            .expect("issue agent cert");
        let agent2 = ca
            .issue_client("agent-2", VALIDITY)
            .expect("issue agent-2 cert");

        let evil = CertificateAuthority::generate("Evil CA").expect("generate evil CA");
        let evil_agent = evil
            .issue_client("agent-1", VALIDITY)
            .expect("issue evil agent cert");
        Self {
            ca_pem: ca.cert_pem().to_owned(),
            dir,
            agent,
            agent2,
            evil_agent,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `[enrollment]` table for this CA with certificates valid `secs`.
    pub fn enrollment_toml(&self, secs: u64) -> String {
        format!(
            "[enrollment]\nca_cert = {:?}\nca_key = {:?}\ncert_validity_secs = {secs}\n",
            self.path("ca.pem"),
            self.path("ca.key")
        )
    }
}

/// Limits the running server is configured with.
pub const MAX_MESSAGE_BYTES: usize = 256 << 10;
pub const MAX_UNCOMPRESSED_BYTES: usize = 1 << 20;

pub struct Ingest {
    // Field order is drop order: stop ingest before its store.
    pub child: ChildGuard,
    pub addr: SocketAddr,
    pub store_dsn: String,
    pub tls: TlsMaterial,
    /// Where `/metrics` is served (always on in these tests).
    pub metrics_addr: SocketAddr,
    _pg: PgCluster,
}

impl Ingest {
    /// Starts a store and the real binary on an ephemeral port.
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// Starts with `extra_limits` (TOML lines) added to the `[limits]` table.
    pub async fn start_with(extra_limits: &str) -> Self {
        Self::start_configured(extra_limits, |_| String::new()).await
    }

    /// Starts with `extra_limits` in `[limits]` and `tables` (whole TOML
    /// tables, which may use [`TlsMaterial`] paths) appended to the file.
    pub async fn start_configured(
        extra_limits: &str,
        tables: impl FnOnce(&TlsMaterial) -> String,
    ) -> Self {
        let pg = PgCluster::start(PgOptions::default()).expect("start PostgreSQL");
        let store_dsn = pg.store_dsn().await.expect("create a store database");
        let tls = TlsMaterial::generate();
        let tables = tables(&tls);
        let config = format!(
            r#"listen = "127.0.0.1:0"
store_dsn = {store_dsn:?}

[tls]
ca_file = {ca:?}
cert_file = {cert:?}
key_file = {key:?}

[limits]
max_message_bytes = {MAX_MESSAGE_BYTES}
max_uncompressed_bytes = {MAX_UNCOMPRESSED_BYTES}
max_samples_per_batch = 1000
{extra_limits}

[store]
pool_size = 2

[metrics]
listen = "127.0.0.1:0"

{tables}
"#,
            ca = tls.path("ca.pem"),
            cert = tls.path("ingest.pem"),
            key = tls.path("ingest.key"),
        );
        let config_path = tls.path("ingest.toml");
        std::fs::write(&config_path, config).expect("write ingest config");

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lasect-ingest"));
        cmd.arg("--config")
            .arg(&config_path)
            .env("LASECT_LOG", "info,lasect_ingest=debug");
        let mut child = ChildGuard::spawn(cmd).expect("spawn lasect-ingest");
        let line = child
            .wait_for_line("lasect-ingest listening on ", Duration::from_secs(60))
            .expect("ingest starts listening");
        let addr = address_in(&line);
        let metrics_addr = address_in(
            &child
                .wait_for_line("metrics listening on ", Duration::from_secs(60))
                .expect("metrics listener is up"),
        );
        Self {
            child,
            addr,
            store_dsn,
            tls,
            metrics_addr,
            _pg: pg,
        }
    }

    /// The `/metrics` text, fetched over plain HTTP/1.1.
    pub async fn scrape(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.metrics_addr)
            .await
            .expect("connect to /metrics");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .expect("send scrape request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("read scrape response");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        response
    }

    /// The value of the sample `series` (name with labels) in a scrape.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.scrape().await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    fn endpoint(&self) -> tonic::transport::Endpoint {
        Channel::from_shared(format!("https://localhost:{}", self.addr.port()))
            .expect("valid uri")
            .connect_timeout(CALL_GUARD)
            .timeout(CALL_GUARD)
    }

    /// A client trusting the Lasect CA, presenting `identity` (if any).
    pub async fn client(
        &self,
        identity: Option<&IssuedCert>,
    ) -> Result<IngestClient<Channel>, tonic::transport::Error> {
        // Tests share one process: the first install wins, others are no-ops.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.tls.ca_pem))
            .domain_name("localhost");
        if let Some(id) = identity {
            tls = tls.identity(Identity::from_pem(&id.cert_pem, id.key_pem.expose_secret()));
        }
        let channel = self.endpoint().tls_config(tls)?.connect().await?;
        Ok(IngestClient::new(channel))
    }

    /// A client over plaintext HTTP/2 to the TLS port.
    pub async fn plaintext_client(&self) -> Result<IngestClient<Channel>, tonic::transport::Error> {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{}", self.addr.port()))
            .expect("valid uri")
            .connect_timeout(CALL_GUARD)
            .timeout(CALL_GUARD)
            .connect()
            .await?;
        Ok(IngestClient::new(channel))
    }

    /// A client authenticated as `agent-1`.
    pub async fn agent(&self) -> IngestClient<Channel> {
        self.client(Some(&self.tls.agent))
            .await
            .expect("connect as agent-1")
    }

    pub async fn store(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.store_dsn, tokio_postgres::NoTls)
            .await
            .expect("connect to the store");
        tokio::spawn(conn);
        client
    }

    /// Row counts of every table a push writes to.
    pub async fn counts(&self) -> Counts {
        let store = self.store().await;
        let mut counts = Counts::default();
        for (table, slot) in [
            ("agents", &mut counts.agents),
            ("instances", &mut counts.instances),
            ("ingest_batches", &mut counts.batches),
            ("metric_database", &mut counts.database),
            ("metric_host_cpu", &mut counts.host_cpu),
            ("metric_host_memory", &mut counts.host_memory),
        ] {
            let row = store
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .expect("count rows");
            *slot = row.get(0);
        }
        counts
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub agents: i64,
    pub instances: i64,
    pub batches: i64,
    pub database: i64,
    pub host_cpu: i64,
    pub host_memory: i64,
}

/// The `IP:port` after "listening on " in a log line.
fn address_in(line: &str) -> SocketAddr {
    line.split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// A request carrying `samples`, encoded the one way agents encode.
pub fn request(seq: u64, samples: Vec<Sample>) -> PushRequest {
    let count = samples.len() as u32;
    let c = lasect_proto::payload::encode(&SampleBatch { samples }).expect("encode batch");
    PushRequest {
        seq,
        created_unix_micros: now_micros(),
        codec: c.codec as i32,
        uncompressed_size: c.uncompressed_size,
        payload: c.payload,
        priority: 0,
        sample_count: count,
        ..Default::default()
    }
}

pub async fn push(
    client: &mut IngestClient<Channel>,
    request: PushRequest,
) -> Result<PushAck, tonic::Status> {
    client.push(request).await.map(tonic::Response::into_inner)
}

pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
