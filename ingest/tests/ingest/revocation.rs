//! A disabled agent is cut off: its open connection is closed, new
//! handshakes are refused, and its stored data stays. Other agents go on.

use std::time::{Duration, Instant};

use crate::samples;
use crate::support::{Ingest, push, request};

/// How long ingest may take to notice (the bound); not a timing
/// assertion, only a deadline for the wait.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_agent_is_refused_and_keeps_its_data() {
    let ingest =
        Ingest::start_configured("", |_| "[agents]\nrefresh_interval_secs = 1\n".into()).await;
    let store = ingest.store().await;
    let mut agent1 = ingest.agent().await;
    push(&mut agent1, request(1, samples::one_of_each()))
        .await
        .expect("agent-1 is served");

    store
        .execute(
            "UPDATE agents SET disabled_at = now(), disabled_by = 'test' WHERE id = 'agent-1'",
            &[],
        )
        .await
        .expect("disable agent-1");

    // The open connection is closed (or the call refused) within the deadline.
    let started = Instant::now();
    let mut seq = 2;
    let refusal = loop {
        match push(&mut agent1, request(seq, samples::one_of_each())).await {
            Ok(_) => seq += 1,
            Err(status) => break status,
        }
        assert!(
            started.elapsed() < REFUSAL_DEADLINE,
            "agent-1 still served {REFUSAL_DEADLINE:?} after it was disabled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("open connection ended with: {refusal:?}");

    // Reconnecting is refused: the handshake fails with certificate_revoked,
    // which tonic reports on connect or on the first call.
    let reconnect = match ingest.client(Some(&ingest.tls.agent)).await {
        Err(e) => format!("{e:?}"),
        Ok(mut client) => match push(&mut client, request(seq + 1, samples::one_of_each())).await {
            Ok(ack) => panic!("a disabled agent was served again: {ack:?}"),
            Err(status) => format!("{status:?}"),
        },
    };
    // Under TLS 1.3 the server checks the client certificate after the client has sent its
    // Finished, so the client may see only a closed connection instead of the alert; either
    // way nothing is served (the count below proves nothing was written).
    assert!(
        reconnect.contains("CertificateRevoked")
            || reconnect.contains("disabled")
            || reconnect.contains("connection closed")
            || reconnect.contains("Cancelled"),
        "{reconnect}"
    );

    // Its data stays; agent-2 is served as before.
    let stored: i64 = store
        .query_one(
            "SELECT count(*) FROM ingest_batches WHERE agent_id = 'agent-1'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(stored, i64::try_from(seq - 1).expect("small"));
    let mut agent2 = ingest
        .client(Some(&ingest.tls.agent2))
        .await
        .expect("connect as agent-2");
    push(&mut agent2, request(1, samples::one_of_each()))
        .await
        .expect("agent-2 is served");

    // Enabled again, agent-1 gets back in.
    store
        .execute(
            "UPDATE agents SET disabled_at = NULL, disabled_by = NULL WHERE id = 'agent-1'",
            &[],
        )
        .await
        .expect("enable agent-1");
    let started = Instant::now();
    loop {
        let served = match ingest.client(Some(&ingest.tls.agent)).await {
            Ok(mut client) => push(&mut client, request(seq + 2, samples::one_of_each()))
                .await
                .is_ok(),
            Err(_) => false,
        };
        if served {
            break;
        }
        assert!(
            started.elapsed() < REFUSAL_DEADLINE,
            "agent-1 not served after being enabled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
