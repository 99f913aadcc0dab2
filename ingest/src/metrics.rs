//! Prometheus metrics of ingest, served at `GET /metrics` (OpenMetrics text)
//! on their own plain-HTTP listener (`[metrics] listen`), separate from the
//! mTLS gRPC port so a scraper needs no agent certificate. The endpoint has
//! no authentication and is off unless configured; the documented default
//! address is loopback.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `lasect_ingest_batches_total` | counter | `outcome` = `stored` / `duplicate` |
//! | `lasect_ingest_rows_total` | counter | metric rows written |
//! | `lasect_ingest_samples_total` | counter | samples stored |
//! | `lasect_ingest_bytes_total` | counter | `kind` = `compressed` / `uncompressed` (of acknowledged pushes) |
//! | `lasect_ingest_errors_total` | counter | `kind` = `invalid`, `unauthenticated`, `store_unavailable`, `resource_exhausted`, `rate_limited`, `internal` |
//! | `lasect_ingest_write_groups_total` | counter | transactions that stored a group of batches (see `writer`) |
//! | `lasect_ingest_writing_batches` | gauge | pushes handed to the writers and not answered yet (queued or in a group being written) |
//! | `lasect_ingest_write_seconds` | histogram | time from admission to commit of stored and duplicate batches |
//! | `lasect_ingest_connected_agents` | gauge | distinct agents that pushed in the last minute |
//! | `lasect_ingest_inflight_batches` | gauge | pushes admitted right now |

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::identity::AgentId;
use crate::limits::Admission;

/// An agent counts as connected this long after its last push.
const CONNECTED_WINDOW: Duration = Duration::from_secs(60);

type Label = [(&'static str, &'static str); 1];

/// Why a push was not acknowledged, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Invalid,
    Unauthenticated,
    StoreUnavailable,
    ResourceExhausted,
    RateLimited,
    Internal,
    /// A delta push this ingest could not rebuild (FAILED_PRECONDITION).
    DeltaBase,
}

impl ErrorKind {
    fn label(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::StoreUnavailable => "store_unavailable",
            ErrorKind::ResourceExhausted => "resource_exhausted",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Internal => "internal",
            ErrorKind::DeltaBase => "delta_base",
        }
    }
}

/// What an acknowledged push contributed.
#[derive(Debug, Clone, Copy)]
pub struct Acked {
    pub duplicate: bool,
    pub rows: u64,
    pub samples: u64,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    pub write_time: Duration,
    /// The push was a delta push.
    pub delta: bool,
}

/// The metrics of one ingest process; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    batches: Family<Label, Counter>,
    rows: Counter,
    samples: Counter,
    bytes: Family<Label, Counter>,
    errors: Family<Label, Counter>,
    write_seconds: Histogram,
    write_groups: Counter,
    writing: Gauge,
    connected_agents: Gauge,
    inflight: Gauge,
    delta_batches: Counter,
    delta_bases_bytes: Gauge,
    last_push: Mutex<HashMap<AgentId, Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lasect_ingest");
        let batches = Family::<Label, Counter>::default();
        let rows = Counter::default();
        let samples = Counter::default();
        let bytes = Family::<Label, Counter>::default();
        let errors = Family::<Label, Counter>::default();
        // 1 ms .. ~16 s.
        let write_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let write_groups = Counter::default();
        let writing = Gauge::default();
        let connected_agents = Gauge::default();
        let inflight = Gauge::default();
        let delta_batches = Counter::default();
        let delta_bases_bytes = Gauge::default();
        registry.register(
            "delta_batches",
            "Acknowledged delta pushes (coded against kept bases)",
            delta_batches.clone(),
        );
        registry.register(
            "delta_bases_bytes",
            "Bytes of samples kept as bases for delta pushes",
            delta_bases_bytes.clone(),
        );
        registry.register(
            "batches",
            "Acknowledged batches by outcome",
            batches.clone(),
        );
        registry.register("rows", "Metric rows written", rows.clone());
        registry.register("samples", "Samples stored", samples.clone());
        registry.register(
            "bytes",
            "Payload bytes of acknowledged pushes",
            bytes.clone(),
        );
        registry.register(
            "errors",
            "Pushes refused or failed, by kind",
            errors.clone(),
        );
        registry.register(
            "write_seconds",
            "Time to write and commit a batch",
            write_seconds.clone(),
        );
        registry.register(
            "write_groups",
            "Transactions that stored a group of batches",
            write_groups.clone(),
        );
        registry.register(
            "writing_batches",
            "Pushes handed to the writers and not answered yet",
            writing.clone(),
        );
        registry.register(
            "connected_agents",
            "Distinct agents that pushed in the last minute",
            connected_agents.clone(),
        );
        registry.register(
            "inflight_batches",
            "Pushes admitted and not yet answered",
            inflight.clone(),
        );
        // Create the error series up front so every kind reads 0, not absent.
        for kind in [
            ErrorKind::Invalid,
            ErrorKind::Unauthenticated,
            ErrorKind::StoreUnavailable,
            ErrorKind::ResourceExhausted,
            ErrorKind::RateLimited,
            ErrorKind::Internal,
            ErrorKind::DeltaBase,
        ] {
            let _ = errors.get_or_create(&[("kind", kind.label())]);
        }
        Self {
            inner: Arc::new(Inner {
                registry,
                batches,
                rows,
                samples,
                bytes,
                errors,
                write_seconds,
                write_groups,
                writing,
                connected_agents,
                inflight,
                delta_batches,
                delta_bases_bytes,
                last_push: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// An identified agent pushed.
    pub fn agent_seen(&self, agent: &AgentId) {
        let mut seen = self
            .inner
            .last_push
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match seen.get_mut(agent) {
            Some(at) => *at = Instant::now(),
            None => {
                seen.insert(agent.clone(), Instant::now());
            }
        }
    }

    pub fn error(&self, kind: ErrorKind) {
        self.inner
            .errors
            .get_or_create(&[("kind", kind.label())])
            .inc();
    }

    pub fn acked(&self, ack: &Acked) {
        let i = &self.inner;
        let outcome = if ack.duplicate { "duplicate" } else { "stored" };
        i.batches.get_or_create(&[("outcome", outcome)]).inc();
        if !ack.duplicate {
            i.rows.inc_by(ack.rows);
            i.samples.inc_by(ack.samples);
        }
        i.bytes
            .get_or_create(&[("kind", "compressed")])
            .inc_by(ack.compressed_bytes);
        i.bytes
            .get_or_create(&[("kind", "uncompressed")])
            .inc_by(ack.uncompressed_bytes);
        i.write_seconds.observe(ack.write_time.as_secs_f64());
        if ack.delta {
            i.delta_batches.inc();
        }
    }

    /// What the delta bases hold now.
    pub fn delta_bases_bytes(&self, bytes: usize) {
        self.inner
            .delta_bases_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// A writer finished the transaction of a group of pushes (a group of
    /// duplicates only is rolled back, and counts too).
    pub fn group_written(&self) {
        self.inner.write_groups.inc();
    }

    /// Counts a push as handed to the writers until the guard is dropped.
    pub fn writing(&self) -> Writing {
        self.inner.writing.inc();
        Writing(self.inner.writing.clone())
    }

    /// The OpenMetrics text, with the gauges brought up to date.
    pub fn render(&self, inflight: usize) -> Result<String, std::fmt::Error> {
        let connected = {
            let mut seen = self
                .inner
                .last_push
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            seen.retain(|_, at| at.elapsed() < CONNECTED_WINDOW);
            seen.len()
        };
        self.inner
            .connected_agents
            .set(i64::try_from(connected).unwrap_or(i64::MAX));
        self.inner
            .inflight
            .set(i64::try_from(inflight).unwrap_or(i64::MAX));
        let mut text = String::new();
        encode(&mut text, &self.inner.registry)?;
        Ok(text)
    }
}

/// A push with the writers; see [`Metrics::writing`].
pub struct Writing(Gauge);

impl Drop for Writing {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Clone)]
struct Scrape {
    metrics: Metrics,
    admission: Admission,
}

/// Binds the metrics listener (so a bad address fails at start).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `GET /metrics` on `listener` until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    admission: Admission,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape { metrics, admission });
    axum::serve(listener, app).await
}

async fn scrape(State(s): State<Scrape>) -> impl IntoResponse {
    match s.metrics.render(s.admission.in_flight()) {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "cannot encode metrics\n".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_text_has_every_family() {
        let metrics = Metrics::new();
        let agent = AgentId::parse("agent-1").expect("valid id");
        metrics.agent_seen(&agent);
        metrics.agent_seen(&agent);
        metrics.acked(&Acked {
            duplicate: false,
            rows: 12,
            samples: 4,
            compressed_bytes: 100,
            uncompressed_bytes: 300,
            write_time: Duration::from_millis(3),
            delta: false,
        });
        metrics.acked(&Acked {
            duplicate: true,
            rows: 12,
            samples: 4,
            compressed_bytes: 100,
            uncompressed_bytes: 300,
            write_time: Duration::from_millis(1),
            delta: true,
        });
        metrics.error(ErrorKind::RateLimited);
        metrics.group_written();
        let text = metrics.render(3).expect("encode");
        for line in [
            "lasect_ingest_batches_total{outcome=\"stored\"} 1",
            "lasect_ingest_batches_total{outcome=\"duplicate\"} 1",
            "lasect_ingest_rows_total 12",
            "lasect_ingest_samples_total 4",
            "lasect_ingest_bytes_total{kind=\"compressed\"} 200",
            "lasect_ingest_bytes_total{kind=\"uncompressed\"} 600",
            "lasect_ingest_errors_total{kind=\"rate_limited\"} 1",
            "lasect_ingest_errors_total{kind=\"internal\"} 0",
            "lasect_ingest_write_seconds_count 2",
            "lasect_ingest_write_groups_total 1",
            "lasect_ingest_writing_batches 0",
            "lasect_ingest_connected_agents 1",
            "lasect_ingest_inflight_batches 3",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
