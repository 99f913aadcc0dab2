//! Enroll and Renew against the real binary: token checks (malformed,
//! unknown, expired, revoked, used up, bound to another id), CSR checks
//! (garbage, bad id, another agent's identity), atomic spending of a
//! single-use token under concurrency, and a renewal with the enrolled cert.

use lasect_pki::{CertInfo, ENROLLMENT_TOKEN_PREFIX, IssuedCert, SecretPem, hash_token, new_token};
use lasect_proto::v1::ingest_client::IngestClient;
use lasect_proto::v1::{EnrollRequest, EnrollResponse, RenewRequest};
use tonic::Code;
use tonic::transport::Channel;

use crate::samples;
use crate::support::{Ingest, push, request};

/// Inserts a token row the way the API does (only the hash is stored).
async fn token(
    store: &tokio_postgres::Client,
    bound: Option<&str>,
    max_uses: i32,
    expires_in: &str,
    revoked: bool,
) -> String {
    let token = new_token(ENROLLMENT_TOKEN_PREFIX);
    store
        .execute(
            "INSERT INTO enrollment_tokens (token_hash, agent_id, max_uses, expires_at, created_by, revoked_at)
             VALUES ($1, $2, $3, now() + $4::text::interval, 'test', CASE WHEN $5 THEN now() END)",
            &[&hash_token(&token), &bound, &max_uses, &expires_in, &revoked],
        )
        .await
        .expect("insert token");
    token
}

async fn uses(store: &tokio_postgres::Client, token: &str) -> i32 {
    store
        .query_one(
            "SELECT uses FROM enrollment_tokens WHERE token_hash = $1",
            &[&hash_token(token)],
        )
        .await
        .expect("token row")
        .get(0)
}

async fn enroll(
    client: &mut IngestClient<Channel>,
    token: &str,
    csr_pem: &str,
) -> Result<EnrollResponse, tonic::Status> {
    client
        .enroll(EnrollRequest {
            token: token.to_owned(),
            csr_pem: csr_pem.to_owned(),
            hostname: "host-a".into(),
            agent_version: "9.9.9".into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn csr(id: &str) -> (String, SecretPem) {
    lasect_pki::new_agent_csr(id).expect("CSR")
}

#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, text: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(text),
        "{:?} does not say {text:?}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_checks_tokens_and_csrs_and_spends_tokens_atomically() {
    let ingest = Ingest::start_configured("", |tls| tls.enrollment_toml(3600)).await;
    let store = ingest.store().await;
    // agent-1 exists (CA-issued certificate from `ca init`, auto-registered by a push).
    let mut agent1 = ingest.agent().await;
    push(&mut agent1, request(1, samples::one_of_each()))
        .await
        .expect("agent-1 push");

    let mut anon = ingest.client(None).await.expect("connect without a cert");
    let single = token(&store, None, 1, "1 hour", false).await;

    // Garbage and unknown tokens.
    refused(
        enroll(&mut anon, "nonsense", &csr("new-1").0).await,
        Code::Unauthenticated,
        "malformed enrollment token",
    );
    refused(
        enroll(
            &mut anon,
            &new_token(ENROLLMENT_TOKEN_PREFIX),
            &csr("new-1").0,
        )
        .await,
        Code::Unauthenticated,
        "unknown enrollment token",
    );
    // Garbage CSRs: refused before the token is spent.
    refused(
        enroll(
            &mut anon,
            &single,
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        )
        .await,
        Code::InvalidArgument,
        "unusable CSR",
    );
    refused(
        enroll(&mut anon, &single, "not even PEM").await,
        Code::InvalidArgument,
        "unusable CSR",
    );
    refused(
        enroll(&mut anon, &single, &"x".repeat(20_000)).await,
        Code::InvalidArgument,
        "larger than",
    );
    // Another agent's identity, with an unbound token.
    refused(
        enroll(&mut anon, &single, &csr("agent-1").0).await,
        Code::AlreadyExists,
        "already taken",
    );
    assert_eq!(uses(&store, &single).await, 0, "refusals spend nothing");

    // The real thing.
    let (csr_pem, key) = csr("new-1");
    let answer = enroll(&mut anon, &single, &csr_pem)
        .await
        .expect("enrolled");
    assert_eq!(answer.agent_id, "new-1");
    let info = CertInfo::from_pem(&answer.certificate_pem).expect("cert");
    assert_eq!(info.agent_id, "new-1");
    assert_eq!(info.serial_hex, answer.serial);
    assert_eq!(uses(&store, &single).await, 1);
    let row = store
        .query_one(
            "SELECT a.hostname, a.version, a.enrolled_at IS NOT NULL, a.cert_serial,
                    c.reason, c.token_id IS NOT NULL
             FROM agents a JOIN agent_certificates c ON c.agent_id = a.id WHERE a.id = 'new-1'",
            &[],
        )
        .await
        .expect("agent and certificate rows");
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("host-a"));
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("9.9.9"));
    assert!(row.get::<_, bool>(2));
    assert_eq!(row.get::<_, Option<String>>(3), Some(answer.serial.clone()));
    assert_eq!(row.get::<_, String>(4), "enroll");
    assert!(row.get::<_, bool>(5));

    // Reused single-use token, expired token, revoked token.
    refused(
        enroll(&mut anon, &single, &csr("new-2").0).await,
        Code::PermissionDenied,
        "used up",
    );
    let expired = token(&store, None, 5, "-1 second", false).await;
    refused(
        enroll(&mut anon, &expired, &csr("new-2").0).await,
        Code::PermissionDenied,
        "expired",
    );
    let revoked = token(&store, None, 5, "1 hour", true).await;
    refused(
        enroll(&mut anon, &revoked, &csr("new-2").0).await,
        Code::PermissionDenied,
        "revoked",
    );
    // A token bound to one id cannot enroll another; bound to an existing
    // id it re-enrolls that id.
    let bound = token(&store, Some("agent-1"), 1, "1 hour", false).await;
    refused(
        enroll(&mut anon, &bound, &csr("new-2").0).await,
        Code::PermissionDenied,
        "bound to agent",
    );
    enroll(&mut anon, &bound, &csr("agent-1").0)
        .await
        .expect("bound token re-enrolls agent-1");

    // Concurrent enrollments with one single-use token: exactly one wins.
    let race = token(&store, None, 1, "1 hour", false).await;
    let attempts = (0..6).map(|i| {
        let (mut client, race) = (anon.clone(), race.clone());
        tokio::spawn(async move { enroll(&mut client, &race, &csr(&format!("racer-{i}")).0).await })
    });
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.expect("task") {
            Ok(_) => won += 1,
            // Losers find the token spent, or (beyond ingest's bound on
            // concurrent enrollments) are told to retry.
            Err(status) => assert!(
                matches!(
                    status.code(),
                    Code::PermissionDenied | Code::ResourceExhausted
                ),
                "{status:?}"
            ),
        }
    }
    assert_eq!(won, 1, "one enrollment per single-use token");
    assert_eq!(uses(&store, &race).await, 1);

    // The enrolled certificate pushes and renews; Renew and Push need a
    // client certificate, and a renewal is for the caller's own id only.
    let enrolled = IssuedCert {
        cert_pem: answer.certificate_pem.clone(),
        key_pem: key,
    };
    let mut new1 = ingest
        .client(Some(&enrolled))
        .await
        .expect("connect as new-1");
    push(&mut new1, request(1, samples::one_of_each()))
        .await
        .expect("enrolled agent pushes");
    refused(
        new1.renew(RenewRequest {
            csr_pem: csr("agent-1").0,
        })
        .await,
        Code::PermissionDenied,
        "own id",
    );
    let renewed = new1
        .renew(RenewRequest {
            csr_pem: csr("new-1").0,
        })
        .await
        .expect("renewed")
        .into_inner();
    assert_ne!(renewed.serial, answer.serial);
    let reasons: Vec<String> = store
        .query(
            "SELECT reason FROM agent_certificates WHERE agent_id = 'new-1' ORDER BY issued_at",
            &[],
        )
        .await
        .expect("certificates")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(reasons, ["enroll", "renew"]);
    refused(
        anon.renew(RenewRequest {
            csr_pem: csr("new-1").0,
        })
        .await,
        Code::Unauthenticated,
        "client certificate",
    );
    refused(
        push(&mut anon, request(2, samples::one_of_each())).await,
        Code::Unauthenticated,
        "client certificate",
    );
}
