//! Agent identity by certificate serial (ingest/src/revocation.rs): a first
//! `ca init`-style certificate is recorded at its first use and a different
//! unregistered one for the same id is refused; a revoked serial is refused
//! at the handshake and its open connection ends; Renew refuses a superseded
//! or revoked certificate; re-enrolling an agent revokes its earlier serials.

use std::time::{Duration, Instant};

use lasect_pki::{CertInfo, CertificateAuthority, ENROLLMENT_TOKEN_PREFIX, IssuedCert, SecretPem};
use lasect_proto::v1::ingest_client::IngestClient;
use lasect_proto::v1::{EnrollRequest, EnrollResponse, RenewRequest};
use tonic::Code;
use tonic::transport::Channel;

use crate::samples;
use crate::support::{Ingest, push, request};

/// How long ingest may take to notice a revocation (one refresh of 1 s, with
/// a wide margin); only a deadline for the wait, not a timing assertion.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(30);

async fn token(store: &tokio_postgres::Client, bound: Option<&str>) -> String {
    let token = lasect_pki::new_token(ENROLLMENT_TOKEN_PREFIX);
    store
        .execute(
            "INSERT INTO enrollment_tokens (token_hash, agent_id, max_uses, expires_at, created_by)
             VALUES ($1, $2, 1, now() + interval '1 hour', 'test')",
            &[&lasect_pki::hash_token(&token), &bound],
        )
        .await
        .expect("insert token");
    token
}

fn csr(id: &str) -> (String, SecretPem) {
    lasect_pki::new_agent_csr(id).expect("CSR")
}

async fn enroll(anon: &mut IngestClient<Channel>, token: &str, id: &str) -> IssuedCert {
    let (csr_pem, key_pem) = csr(id);
    let answer: EnrollResponse = anon
        .enroll(EnrollRequest {
            token: token.to_owned(),
            csr_pem,
            hostname: "host".into(),
            agent_version: "9.9.9".into(),
        })
        .await
        .expect("enrolled")
        .into_inner();
    IssuedCert {
        cert_pem: answer.certificate_pem,
        key_pem,
    }
}

/// Connects with `cert` and pushes once: `Ok` if served, else why not.
async fn served(ingest: &Ingest, cert: &IssuedCert, seq: u64) -> Result<(), String> {
    let mut client = ingest
        .client(Some(cert))
        .await
        .map_err(|e| format!("{e:?}"))?;
    push(&mut client, request(seq, samples::one_of_each()))
        .await
        .map(|_| ())
        .map_err(|s| format!("{s:?}"))
}

fn serial(cert: &IssuedCert) -> String {
    CertInfo::from_pem(&cert.cert_pem).expect("cert").serial_hex
}

async fn certificate_rows(
    store: &tokio_postgres::Client,
    agent: &str,
) -> Vec<(String, String, Option<String>)> {
    store
        .query(
            "SELECT serial, reason, revoke_reason FROM agent_certificates
             WHERE agent_id = $1 ORDER BY issued_at, serial",
            &[&agent],
        )
        .await
        .expect("certificates")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Pushes over `client` until a push fails, within the deadline.
async fn until_refused(client: &mut IngestClient<Channel>, mut seq: u64) -> tonic::Status {
    let started = Instant::now();
    loop {
        match push(client, request(seq, samples::one_of_each())).await {
            Ok(_) => seq += 1,
            Err(status) => return status,
        }
        assert!(
            started.elapsed() < REFUSAL_DEADLINE,
            "still served {REFUSAL_DEADLINE:?} after the revocation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serials_are_recorded_checked_and_revoked() {
    let ingest = Ingest::start_configured("", |tls| {
        format!(
            "[agents]\nrefresh_interval_secs = 1\n\n{}",
            tls.enrollment_toml(3600)
        )
    })
    .await;
    let store = ingest.store().await;
    let ca =
        CertificateAuthority::load_files(&ingest.tls.path("ca.pem"), &ingest.tls.path("ca.key"))
            .expect("load the CA");

    // A `ca init` certificate nobody registered: recorded at its first use.
    served(&ingest, &ingest.tls.agent, 1)
        .await
        .expect("the first certificate of agent-1 is served");
    let first = serial(&ingest.tls.agent);
    assert_eq!(
        certificate_rows(&store, "agent-1").await,
        [(first.clone(), "first_use".to_owned(), None)]
    );
    // Another unregistered certificate of the same CA for agent-1 is refused:
    // the agent already has a live one.
    let copy = ca
        .issue_client("agent-1", Duration::from_secs(3600))
        .expect("issue a second agent-1 certificate");
    let refusal = served(&ingest, &copy, 2)
        .await
        .expect_err("a second unregistered certificate for agent-1 is refused");
    eprintln!("second unregistered certificate: {refusal}");
    assert_eq!(certificate_rows(&store, "agent-1").await.len(), 1);

    // Revoking the serial ends the open connection and refuses new ones.
    let mut open = ingest.agent().await;
    push(&mut open, request(3, samples::one_of_each()))
        .await
        .expect("agent-1 served before the revocation");
    store
        .execute(
            "UPDATE agent_certificates SET revoked_at = now(), revoked_by = 'test',
                 revoke_reason = 'revoked' WHERE serial = $1",
            &[&first],
        )
        .await
        .expect("revoke");
    let ended = until_refused(&mut open, 4).await;
    eprintln!("open connection after the revocation: {ended:?}");
    served(&ingest, &ingest.tls.agent, 100)
        .await
        .expect_err("a revoked certificate is refused at the handshake");
    // With no live certificate left, a new `ca init` certificate takes over.
    served(&ingest, &copy, 101)
        .await
        .expect("a new certificate once the old one is revoked");

    // Enrollment, renewal: the renewed-away certificate can neither renew
    // nor connect again.
    let mut anon = ingest.client(None).await.expect("anonymous client");
    let enrolled = enroll(&mut anon, &token(&store, None).await, "new-1").await;
    let mut with_enrolled = ingest.client(Some(&enrolled)).await.expect("connect");
    push(&mut with_enrolled, request(1, samples::one_of_each()))
        .await
        .expect("enrolled agent pushes");
    let (renew_csr, renew_key) = csr("new-1");
    let renewed = with_enrolled
        .renew(RenewRequest { csr_pem: renew_csr })
        .await
        .expect("renewed")
        .into_inner();
    let renewed = IssuedCert {
        cert_pem: renewed.certificate_pem,
        key_pem: renew_key,
    };
    let again = with_enrolled
        .renew(RenewRequest {
            csr_pem: csr("new-1").0,
        })
        .await
        .expect_err("a superseded certificate cannot renew");
    assert_eq!(again.code(), Code::PermissionDenied, "{again:?}");
    assert!(again.message().contains("superseded"), "{again:?}");
    served(&ingest, &renewed, 2)
        .await
        .expect("the renewed certificate is served");
    // Superseded serials reach the handshake check with the next refresh.
    let started = Instant::now();
    while served(&ingest, &enrolled, 3).await.is_ok() {
        assert!(
            started.elapsed() < REFUSAL_DEADLINE,
            "a superseded certificate is still served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Re-enrolling with a bound token revokes every earlier certificate.
    let mut with_renewed = ingest.client(Some(&renewed)).await.expect("connect");
    push(&mut with_renewed, request(10, samples::one_of_each()))
        .await
        .expect("served before the re-enrollment");
    let reenrolled = enroll(&mut anon, &token(&store, Some("new-1")).await, "new-1").await;
    let ended = until_refused(&mut with_renewed, 11).await;
    eprintln!("renewed certificate after the re-enrollment: {ended:?}");
    served(&ingest, &reenrolled, 20)
        .await
        .expect("the re-enrolled certificate is served");
    let rows = certificate_rows(&store, "new-1").await;
    let reasons: Vec<(&str, Option<&str>)> = rows
        .iter()
        .map(|(_, reason, revoked)| (reason.as_str(), revoked.as_deref()))
        .collect();
    assert!(
        reasons.contains(&("enroll", Some("superseded")))
            && reasons.contains(&("renew", Some("re-enrolled")))
            && reasons.contains(&("enroll", None)),
        "{rows:?}"
    );
    let refused = with_enrolled
        .renew(RenewRequest {
            csr_pem: csr("new-1").0,
        })
        .await;
    assert!(refused.is_err(), "{refused:?}");
}
