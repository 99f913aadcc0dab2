//! The Control stream and agent identity: a DSN ciphertext copied to another
//! instance's row does not decrypt there (that instance is not assigned, the
//! others are, including one encrypted before the binding), and a stream
//! opened with an older certificate does not replace the open one.

use std::time::Duration;

use lasect_pki::secrets::{FIELD_DSN, Keyring, LEGACY_DSN_AAD, encrypt_instance_secret};
use lasect_pki::{CertInfo, CertificateAuthority, IssuedCert};
use lasect_proto::v1::control_client::ControlClient;
use lasect_proto::v1::{AgentMessage, ControlHello, ServerMessage, agent_message, server_message};
use tokio::sync::mpsc;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::support::{CALL_GUARD, Ingest};

async fn channel(ingest: &Ingest, cert: &IssuedCert) -> Channel {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ingest.tls.ca_pem))
        .domain_name("localhost")
        .identity(Identity::from_pem(
            &cert.cert_pem,
            cert.key_pem.expose_secret(),
        ));
    Channel::from_shared(format!("https://localhost:{}", ingest.addr.port()))
        .expect("uri")
        .connect_timeout(CALL_GUARD)
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("connect")
}

/// An open Control stream: the sender keeps the agent's side open.
struct Stream {
    _tx: mpsc::Sender<AgentMessage>,
    inbound: tonic::Streaming<ServerMessage>,
}

async fn open(ingest: &Ingest, cert: &IssuedCert) -> Result<Stream, tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(AgentMessage {
        body: Some(agent_message::Body::Hello(ControlHello {
            agent_version: "9.9.9".into(),
            in_flight_run_ids: Vec::new(),
            allowed: Vec::new(),
        })),
    })
    .await
    .expect("queue the hello");
    let mut client = ControlClient::new(channel(ingest, cert).await);
    let inbound = client
        .open(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok(Stream { _tx: tx, inbound })
}

/// The ids of the next instance assignments on the stream.
async fn assigned(stream: &mut Stream) -> Result<Vec<i64>, tonic::Status> {
    loop {
        let msg = tokio::time::timeout(CALL_GUARD, stream.inbound.message())
            .await
            .expect("a message within the guard")?
            .expect("the stream stays open");
        if let Some(server_message::Body::Instances(a)) = msg.body {
            return Ok(a.instances.iter().map(|i| i.id).collect());
        }
    }
}

async fn add_instance(store: &tokio_postgres::Client, name: &str) -> i64 {
    store
        .query_one(
            "INSERT INTO instances (name, agent_id, source, state) VALUES ($1, 'agent-1', 'api', 'active')
             RETURNING id",
            &[&name],
        )
        .await
        .expect("insert instance")
        .get(0)
}

async fn set_dsn(store: &tokio_postgres::Client, id: i64, ciphertext: &[u8]) {
    store
        .execute(
            "UPDATE instances SET dsn_ciphertext = $2 WHERE id = $1",
            &[&id, &ciphertext],
        )
        .await
        .expect("store the ciphertext");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copied_ciphertexts_and_older_certificates_are_refused() {
    let mut ingest = Ingest::start_configured("", |tls| {
        let key = tls.path("secrets.key");
        Keyring::load_or_create(&key).expect("key file");
        format!("[secrets]\nkey_file = {key:?}\n")
    })
    .await;
    let keyring = Keyring::load(&ingest.tls.path("secrets.key")).expect("keys");
    let store = ingest.store().await;
    store
        .execute("INSERT INTO agents (id) VALUES ('agent-1')", &[])
        .await
        .expect("agent row");
    let good = add_instance(&store, "good").await;
    let copied = add_instance(&store, "copied").await;
    let legacy = add_instance(&store, "legacy").await;
    let c = encrypt_instance_secret(&keyring, good, "agent-1", FIELD_DSN, b"host=/tmp dbname=a")
        .expect("encrypt");
    set_dsn(&store, good, &c).await;
    set_dsn(&store, copied, &c).await;
    let old = keyring
        .encrypt(b"host=/tmp dbname=c", LEGACY_DSN_AAD)
        .expect("encrypt");
    set_dsn(&store, legacy, &old).await;

    // agent-1's certificate from the test CA is older than one issued now.
    let ca =
        CertificateAuthority::load_files(&ingest.tls.path("ca.pem"), &ingest.tls.path("ca.key"))
            .expect("CA");
    let older = CertInfo::from_pem(&ingest.tls.agent.cert_pem).expect("cert");
    let newer = loop {
        let cert = ca
            .issue_client("agent-1", Duration::from_secs(3600))
            .expect("issue");
        if CertInfo::from_pem(&cert.cert_pem).expect("cert").not_before > older.not_before {
            break cert;
        }
        // notBefore has a resolution of one second.
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let newer_info = CertInfo::from_pem(&newer.cert_pem).expect("cert");
    // Both are live certificates of agent-1 (as after `ca init --store-dsn` for each).
    for info in [&older, &newer_info] {
        store
            .execute(
                "INSERT INTO agent_certificates (serial, agent_id, not_before, not_after, reason)
                 VALUES ($1, 'agent-1', $2, $3, 'ca_init')",
                &[&info.serial_hex, &info.not_before, &info.not_after],
            )
            .await
            .expect("register");
    }

    let mut stream = open(&ingest, &newer)
        .await
        .expect("stream of the newer certificate");
    let mut ids = assigned(&mut stream).await.expect("assignments");
    ids.sort_unstable();
    assert_eq!(ids, [good, legacy], "the copied ciphertext is not assigned");
    // The log line comes from ingest's output reader thread: wait for it rather than
    // look once (under load it can trail the assignments it explains).
    let why = tokio::task::block_in_place(|| {
        ingest
            .child
            .wait_for_line("instance not assigned", CALL_GUARD)
    })
    .expect("ingest says why it did not assign an instance");
    assert!(why.contains("does not decrypt"), "{why}");

    // The older certificate cannot take the stream over.
    let refused = match open(&ingest, &ingest.tls.agent).await {
        Err(status) => status,
        Ok(mut s) => assigned(&mut s)
            .await
            .expect_err("an older certificate is refused"),
    };
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("newer certificate"),
        "{refused:?}"
    );
    // The legitimate stream is still the agent's: a change of its instances reaches it.
    let later = add_instance(&store, "later").await;
    let c = encrypt_instance_secret(&keyring, later, "agent-1", FIELD_DSN, b"host=/tmp")
        .expect("encrypt");
    set_dsn(&store, later, &c).await;
    // The insert and the DSN each send the assignments again: the first may come before the
    // DSN is there; the stream gets `later` with the second.
    loop {
        let mut ids = assigned(&mut stream).await.expect("assignments again");
        ids.sort_unstable();
        if ids == [good, legacy, later] {
            break;
        }
        assert_eq!(
            ids,
            [good, legacy],
            "only the new instance may be missing, for a while"
        );
    }
}
