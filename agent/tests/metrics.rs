//! The agent's Prometheus endpoint, scraped over HTTP.

use std::sync::Arc;

use lasect_agent::metrics::{self, AgentMetrics};
use lasect_agent::outbox::{Outbox, OutboxEntry};
use lasect_agent::spool::{Spool, SpoolOptions};
use lasect_proto::payload::CompressedBatch;
use lasect_proto::v1::Codec;

fn entry(seq: u64) -> OutboxEntry {
    OutboxEntry {
        seq,
        priority: 0,
        created_unix_micros: 1_600_000_000_000_000,
        sample_count: 5,
        batch: CompressedBatch {
            codec: Codec::Lz4,
            uncompressed_size: 10,
            payload: vec![1; 10],
        },
    }
}

/// The value of the sample line `name` (no labels) in a scrape.
fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[tokio::test]
async fn metrics_are_served_for_prometheus() {
    // reqwest is built without a default TLS provider (plain HTTP here).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = Arc::new(Spool::open(dir.path(), SpoolOptions::default()).expect("open"));
    for seq in 1..=3 {
        spool.push(entry(seq)).expect("push");
    }
    spool.ack(1).expect("ack");
    spool.reject(2, "InvalidArgument: test").expect("reject");
    let m = Arc::new(AgentMetrics::default());
    m.sent.inc_by(7);
    m.retries.inc_by(2);
    m.collect_errors.inc();

    let listener = metrics::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(metrics::serve(
        listener,
        Arc::clone(&m),
        Arc::clone(&spool),
        async {
            let _ = stopped.await;
        },
    ));

    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("scrape");
    assert!(response.status().is_success());
    let text = response.text().await.expect("body");
    assert_eq!(value(&text, "lasect_agent_spool_batches"), 1.0);
    assert!(value(&text, "lasect_agent_spool_bytes") > 0.0);
    assert!(value(&text, "lasect_agent_spool_oldest_unacked_age_seconds") > 1e8);
    assert_eq!(value(&text, "lasect_agent_quarantined_batches_total"), 1.0);
    assert_eq!(value(&text, "lasect_agent_dropped_batches_total"), 0.0);
    assert_eq!(value(&text, "lasect_agent_dropped_samples_total"), 0.0);
    assert_eq!(value(&text, "lasect_agent_batches_sent_total"), 7.0);
    assert_eq!(value(&text, "lasect_agent_send_retries_total"), 2.0);
    assert_eq!(value(&text, "lasect_agent_collect_errors_total"), 1.0);
    assert_eq!(value(&text, "lasect_agent_spool_write_failing"), 0.0);
    assert!(
        text.contains("# TYPE lasect_agent_batches_acked counter"),
        "{text}"
    );

    let missing = reqwest::get(format!("http://{addr}/other"))
        .await
        .expect("request");
    assert_eq!(missing.status().as_u16(), 404);
    let _ = stop.send(());
    server.await.expect("task").expect("server");
}
