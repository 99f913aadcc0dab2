//! Only clients with a certificate from the Lasect CA get in.

use lasect_proto::v1::ingest_client::IngestClient;
use lasect_proto::v1::{EnrollRequest, PushAck, RenewRequest};
use tonic::Code;
use tonic::transport::Channel;

use crate::samples;
use crate::support::{CALL_GUARD, Counts, Ingest, push, request};

/// Connects with `connect` and pushes one valid batch; any failure on the
/// way (handshake, connection or call) is returned as text.
async fn attempt<F>(connect: F) -> Result<PushAck, String>
where
    F: Future<Output = Result<IngestClient<Channel>, tonic::transport::Error>>,
{
    let outcome = tokio::time::timeout(CALL_GUARD, async {
        let mut client = connect.await.map_err(|e| format!("connect: {e:?}"))?;
        push(&mut client, request(1, samples::one_of_each()))
            .await
            .map_err(|s| format!("call: {s}"))
    })
    .await;
    outcome.unwrap_or_else(|_| Err("no answer".to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_lasect_ca_clients_are_served() {
    let ingest = Ingest::start().await;

    // Without a certificate the handshake succeeds (Enroll needs that),
    // but every other call is refused.
    let no_cert = attempt(ingest.client(None)).await;
    let refusal = no_cert.expect_err("a client without a certificate was served");
    assert!(
        refusal.contains("valid authentication credentials")
            && refusal.contains("client certificate"),
        "{refusal}"
    );
    let mut anonymous = ingest
        .client(None)
        .await
        .expect("connect without a certificate");
    let renew = anonymous
        .renew(RenewRequest {
            csr_pem: String::new(),
        })
        .await
        .expect_err("renew without a certificate");
    assert_eq!(renew.code(), Code::Unauthenticated, "{renew:?}");
    // This ingest has no [enrollment]: Enroll says so.
    let enroll = anonymous
        .enroll(EnrollRequest::default())
        .await
        .expect_err("enroll without [enrollment]");
    assert_eq!(enroll.code(), Code::FailedPrecondition, "{enroll:?}");
    assert!(enroll.message().contains("enrollment is not configured"));

    let evil = attempt(ingest.client(Some(&ingest.tls.evil_agent))).await;
    assert!(
        evil.is_err(),
        "a certificate from another CA was accepted: {evil:?}"
    );

    let plaintext = attempt(ingest.plaintext_client()).await;
    assert!(
        plaintext.is_err(),
        "a plaintext connection was served: {plaintext:?}"
    );

    assert_eq!(
        ingest.counts().await,
        Counts::default(),
        "nothing is written"
    );

    // The server survived the bad handshakes and serves a real agent.
    let ack = attempt(ingest.client(Some(&ingest.tls.agent)))
        .await
        .expect("agent-1 is served");
    assert_eq!(ack.stored_samples, 4);
    assert_eq!(ingest.counts().await.batches, 1);
}
