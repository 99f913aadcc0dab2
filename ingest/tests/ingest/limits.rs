//! Backpressure, per-agent rate limits and the `/metrics` endpoint.

use std::time::{Duration, Instant};

use tonic::Code;

use crate::samples;
use crate::support::{Ingest, push, request};

/// Bound on waiting for a condition; not a timing assertion.
const BOUND: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_over_its_rate_is_refused_and_others_are_not() {
    let ingest =
        Ingest::start_with("max_batches_per_agent_per_sec = 1\nagent_burst_batches = 2").await;
    let mut one = ingest.agent().await;

    // One token a second, two in the bucket: a burst of pushes runs dry
    // long before twenty of them have been answered.
    let mut refused = None;
    for seq in 1..=20 {
        match push(&mut one, request(seq, samples::one_of_each())).await {
            Ok(ack) => assert_eq!(ack.seq, seq),
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let refused = refused.expect("agent-1 hit its rate limit");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("rate limit"), "{refused:?}");

    // agent-2 has a bucket of its own.
    let mut two = ingest
        .client(Some(&ingest.tls.agent2))
        .await
        .expect("connect as agent-2");
    let ack = push(&mut two, request(1, samples::one_of_each()))
        .await
        .expect("agent-2 is not limited by agent-1's pushes");
    assert!(!ack.duplicate);

    assert!(
        ingest
            .metric("lasect_ingest_errors_total{kind=\"rate_limited\"}")
            .await
            >= 1.0
    );
    assert_eq!(ingest.metric("lasect_ingest_connected_agents").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_ingest_refuses_at_once_and_recovers() {
    let ingest = Ingest::start_with("max_inflight_batches = 2").await;

    // Hold the store's batch table: admitted pushes wait inside their write. (Not `agents`:
    // ingest reads it to admit a connection's certificate serial, so locking it would hold the
    // pushes before they are admitted.)
    let mut store = ingest.store().await;
    let lock = store.transaction().await.expect("begin");
    lock.batch_execute("LOCK TABLE ingest_batches IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock the batch table");

    let mut stuck = Vec::new();
    for seq in 1..=2 {
        let mut client = ingest.agent().await;
        stuck.push(tokio::spawn(async move {
            push(&mut client, request(seq, samples::one_of_each())).await
        }));
    }
    let start = Instant::now();
    while ingest.metric("lasect_ingest_inflight_batches").await < 2.0 {
        assert!(start.elapsed() < BOUND, "two pushes never got in flight");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut third = ingest.agent().await;
    let refused = push(&mut third, request(3, samples::one_of_each()))
        .await
        .expect_err("a third push finds ingest full");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("busy"), "{refused:?}");

    lock.rollback().await.expect("release the lock");
    for task in stuck {
        let ack = task.await.expect("push task").expect("held push completes");
        assert!(!ack.duplicate);
    }
    // The refused batch goes through once there is room.
    push(&mut third, request(3, samples::one_of_each()))
        .await
        .expect("retry accepted");
    assert_eq!(ingest.counts().await.batches, 3);
    assert_eq!(
        ingest
            .metric("lasect_ingest_errors_total{kind=\"resource_exhausted\"}")
            .await,
        1.0
    );
    assert_eq!(ingest.metric("lasect_ingest_inflight_batches").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_was_pushed() {
    let ingest = Ingest::start().await;
    let mut client = ingest.agent().await;
    for seq in 1..=3 {
        push(&mut client, request(seq, samples::one_of_each()))
            .await
            .expect("stored");
    }
    push(&mut client, request(2, samples::one_of_each()))
        .await
        .expect("duplicate acknowledged");
    let mut garbage = request(4, Vec::new());
    garbage.payload = vec![0xff; 64];
    garbage.uncompressed_size = 1000;
    let refused = push(&mut client, garbage)
        .await
        .expect_err("garbage is refused");
    assert_eq!(refused.code(), Code::InvalidArgument);

    let counts = ingest.counts().await;
    let text = ingest.scrape().await;
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(
        value("lasect_ingest_batches_total{outcome=\"stored\"}"),
        3.0
    );
    assert_eq!(
        value("lasect_ingest_batches_total{outcome=\"duplicate\"}"),
        1.0
    );
    assert_eq!(value("lasect_ingest_samples_total"), 12.0);
    // At least the rows of the V1 tables (other families may add some).
    let v1_rows = counts.database + counts.host_cpu + counts.host_memory;
    assert!(
        value("lasect_ingest_rows_total") >= v1_rows as f64,
        "{text}"
    );
    assert!(value("lasect_ingest_bytes_total{kind=\"compressed\"}") > 0.0);
    assert!(
        value("lasect_ingest_bytes_total{kind=\"uncompressed\"}")
            > value("lasect_ingest_bytes_total{kind=\"compressed\"}") / 2.0
    );
    assert_eq!(value("lasect_ingest_errors_total{kind=\"invalid\"}"), 1.0);
    assert_eq!(
        value("lasect_ingest_errors_total{kind=\"store_unavailable\"}"),
        0.0
    );
    assert_eq!(value("lasect_ingest_write_seconds_count"), 4.0);
    assert_eq!(value("lasect_ingest_connected_agents"), 1.0);
}
