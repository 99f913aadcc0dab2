//! Group commit: concurrent pushes are written a group per transaction,
//! each still stored exactly once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::samples;
use crate::support::{Ingest, now_micros, push, request};

/// Pushes of one agent in the concurrent burst.
const SEQS: std::ops::RangeInclusive<u64> = 1..=15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_share_transactions_and_are_stored_once() {
    let ingest = Ingest::start().await;
    let agent1 = ingest.agent().await;
    let agent2 = ingest
        .client(Some(&ingest.tls.agent2))
        .await
        .expect("connect as agent-2");
    let now = now_micros();
    // Every batch: a host row carrying its seq, and the same instance (so a
    // group upserts `main` of an agent many times over).
    let batch = |seq: u64| {
        let mut s = vec![
            samples::host_cpu(now, seq as f64),
            samples::database("main", now, &["postgres"]),
        ];
        if seq.is_multiple_of(2) {
            s.push(samples::instance_info("main", now));
        }
        request(seq, s)
    };
    let mut first = agent1.clone();
    let ack = push(&mut first, batch(1))
        .await
        .expect("first batch stored");
    assert!(!ack.duplicate);

    // Hold the writers back so the burst queues up behind them; nothing
    // here depends on timing, only on the outcome below.
    let blocker = ingest.store().await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE ingest_batches IN EXCLUSIVE MODE")
        .await
        .expect("lock ingest_batches");

    // agent-1: a resend of the stored seq 1, 2..=15, and seq 5 twice;
    // agent-2: 1..=15, and seq 3 twice.
    let mut pushes: Vec<(&str, u64)> = vec![("agent-1", 1), ("agent-1", 5), ("agent-2", 3)];
    pushes.extend(SEQS.skip(1).map(|s| ("agent-1", s)));
    pushes.extend(SEQS.map(|s| ("agent-2", s)));
    let total = pushes.len();
    let mut tasks = Vec::new();
    for (agent, seq) in pushes {
        let mut client = if agent == "agent-1" {
            agent1.clone()
        } else {
            agent2.clone()
        };
        let request = batch(seq);
        tasks.push(tokio::spawn(async move {
            (agent, seq, push(&mut client, request).await)
        }));
    }

    // Bounded wait until every push is with the writers.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let writing = ingest.metric("lasect_ingest_writing_batches").await;
        if writing as usize == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {writing} of {total} pushes reached the writers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    blocker.batch_execute("COMMIT").await.expect("unlock");

    let mut duplicates: BTreeMap<(&str, u64), Vec<bool>> = BTreeMap::new();
    for task in tasks {
        let (agent, seq, result) = task.await.expect("push task");
        let ack = result.unwrap_or_else(|e| panic!("{agent} seq {seq} not acked: {e:?}"));
        assert_eq!(ack.seq, seq);
        // host_cpu + database, and instance_info on even seqs.
        let samples = if ack.duplicate {
            0
        } else {
            2 + u32::from(seq.is_multiple_of(2))
        };
        assert_eq!(ack.stored_samples, samples, "{agent} seq {seq}");
        duplicates
            .entry((agent, seq))
            .or_default()
            .push(ack.duplicate);
    }
    for ((agent, seq), mut flags) in duplicates {
        flags.sort_unstable();
        let expected: &[bool] = match (agent, seq) {
            ("agent-1", 1) => &[true],
            ("agent-1", 5) | ("agent-2", 3) => &[false, true],
            _ => &[false],
        };
        assert_eq!(flags, expected, "{agent} seq {seq}");
    }

    let stored = 2 * SEQS.count() as i64;
    let counts = ingest.counts().await;
    assert_eq!(
        (counts.agents, counts.instances, counts.batches),
        (2, 2, stored)
    );
    assert_eq!((counts.host_cpu, counts.database), (stored, stored));
    let store = ingest.store().await;
    let twice = store
        .query(
            "SELECT agent_id, usage_percent FROM metric_host_cpu
             GROUP BY 1, 2 HAVING count(*) > 1",
            &[],
        )
        .await
        .expect("look for rows stored twice");
    assert!(twice.is_empty(), "rows stored twice: {twice:?}");
    let facts = store
        .query_one(
            "SELECT count(*) FROM instances WHERE server_version_num = 170002",
            &[],
        )
        .await
        .expect("read instance facts");
    assert_eq!(facts.get::<_, i64>(0), 2, "facts of both instances kept");

    // Each row's xmin is the transaction that wrote it: the burst's batches
    // shared transactions.
    let transactions: i64 = store
        .query_one(
            "SELECT count(DISTINCT xmin::text) FROM ingest_batches
             WHERE NOT (agent_id = 'agent-1' AND seq = 1)",
            &[],
        )
        .await
        .expect("count writing transactions")
        .get(0);
    assert!(
        transactions < stored - 1,
        "{transactions} transactions for {} batches",
        stored - 1
    );
    let groups = ingest.metric("lasect_ingest_write_groups_total").await;
    assert!(
        (groups as usize) < total + 1,
        "{groups} groups for {} pushes",
        total + 1
    );
    assert_eq!(ingest.metric("lasect_ingest_writing_batches").await, 0.0);
}
