//! The agent's own figures, served for Prometheus on `[metrics] listen`.
//!
//! Process counters live in [`AgentMetrics`] (shared by the sender and the
//! collector loop); the spool's state and lifetime counters are read from
//! [`Outbox::stats`] at every scrape, so they are never stale.
//!
//! | metric | kind | meaning |
//! |---|---|---|
//! | `lasect_agent_spool_batches` | gauge | batches waiting for an ack |
//! | `lasect_agent_spool_bytes` | gauge | bytes of spool segment files |
//! | `lasect_agent_spool_held_in_memory_batches` | gauge | batches held in memory because the spool cannot be written |
//! | `lasect_agent_spool_write_failing` | gauge | 1 while the spool cannot be written (disk full) |
//! | `lasect_agent_spool_oldest_unacked_age_seconds` | gauge | age of the oldest unacknowledged batch (0 when none) |
//! | `lasect_agent_dropped_batches_total`, `lasect_agent_dropped_samples_total` | counter | metrics dropped for room, or lost for want of a batch seq (lifetime of the spool) |
//! | `lasect_agent_quarantined_batches_total` | counter | batches ingest refused for good (lifetime) |
//! | `lasect_agent_spool_corrupt_total` | counter | damaged spool parts or records found (lifetime) |
//! | `lasect_agent_batches_sent_total` | counter | Push calls started (this process) |
//! | `lasect_agent_send_retries_total` | counter | failed deliveries that were retried (this process) |
//! | `lasect_agent_batches_acked_total` | counter | batches acknowledged by ingest (this process) |
//! | `lasect_agent_collect_errors_total` | counter | instance collections that failed (this process) |

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::collect::now_unix_micros;
use crate::outbox::Outbox;

/// Counters of this process, updated where things happen.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    pub sent: Counter,
    pub retries: Counter,
    pub acked: Counter,
    pub collect_errors: Counter,
    /// Delta pushes sent (a part of `sent`).
    pub delta_sent: Counter,
    /// Delta pushes ingest could not rebuild, sent again whole.
    pub delta_resent: Counter,
}

/// Renders every figure in the Prometheus text format.
pub fn render<O: Outbox>(metrics: &AgentMetrics, outbox: &O) -> Result<String, std::fmt::Error> {
    let stats = outbox.stats();
    let mut r = Registry::with_prefix("lasect_agent");
    let gauge = |v: u64| ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    r.register(
        "spool_batches",
        "Batches waiting for an ack",
        gauge(stats.queued as u64),
    );
    r.register(
        "spool_bytes",
        "Bytes of spool segment files",
        gauge(stats.queued_bytes),
    );
    r.register(
        "spool_held_in_memory_batches",
        "Batches held in memory because the spool cannot be written",
        gauge(stats.held_in_memory as u64),
    );
    r.register(
        "spool_write_failing",
        "1 while the spool cannot be written (disk full)",
        gauge(u64::from(stats.write_failing)),
    );
    let age = stats.oldest_unacked_unix_micros.map_or(0.0, |t| {
        (now_unix_micros().saturating_sub(t)).max(0) as f64 / 1e6
    });
    let age_gauge: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    age_gauge.set(age);
    r.register(
        "spool_oldest_unacked_age_seconds",
        "Age of the oldest unacknowledged batch",
        age_gauge,
    );
    r.register(
        "dropped_batches",
        "Metrics batches dropped for room (lifetime of the spool)",
        ConstCounter::new(stats.dropped_batches),
    );
    r.register(
        "dropped_samples",
        "Samples in dropped batches (lifetime of the spool)",
        ConstCounter::new(stats.dropped_samples),
    );
    r.register(
        "quarantined_batches",
        "Batches ingest refused for good (lifetime of the spool)",
        ConstCounter::new(stats.quarantined),
    );
    r.register(
        "spool_corrupt",
        "Damaged spool parts or records found (lifetime of the spool)",
        ConstCounter::new(stats.corrupt),
    );
    r.register("batches_sent", "Push calls started", metrics.sent.clone());
    r.register(
        "send_retries",
        "Failed deliveries retried",
        metrics.retries.clone(),
    );
    r.register(
        "batches_acked",
        "Batches acknowledged by ingest",
        metrics.acked.clone(),
    );
    r.register(
        "delta_batches_sent",
        "Push calls that sent a batch as a delta against earlier ones",
        metrics.delta_sent.clone(),
    );
    r.register(
        "delta_batches_resent",
        "Delta pushes ingest could not rebuild (its bases were gone), sent again whole",
        metrics.delta_resent.clone(),
    );
    r.register(
        "collect_errors",
        "Instance collections that failed",
        metrics.collect_errors.clone(),
    );
    let mut text = String::new();
    encode(&mut text, &r)?;
    Ok(text)
}

struct Shared<O> {
    metrics: Arc<AgentMetrics>,
    outbox: Arc<O>,
}

async fn scrape<O: Outbox>(State(shared): State<Arc<Shared<O>>>) -> impl IntoResponse {
    match render(&shared.metrics, shared.outbox.as_ref()) {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Binds `addr` (plain HTTP; keep it on loopback or a private network).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `GET /metrics` until `shutdown` resolves.
pub async fn serve<O: Outbox>(
    listener: TcpListener,
    metrics: Arc<AgentMetrics>,
    outbox: Arc<O>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(scrape::<O>))
        .with_state(Arc::new(Shared { metrics, outbox }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
