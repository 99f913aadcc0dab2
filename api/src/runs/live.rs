//! Runs on the live WebSocket (`GET /api/v1/live`, message `run`): status changes and the
//! progress an agent reports, as they are stored.
//!
//! A run's status change is announced by the store's trigger `runs_notify_status` (V15) on
//! [`lasect_runs::STATUS_CHANNEL`] (`<id> <status>`), whichever statement made it, and its
//! creation the same way by `runs_notify_created` (V40, `<id> queued`); ingest's
//! progress statement ([`lasect_runs::progress_sql`]) announces the run on
//! [`lasect_runs::PROGRESS_CHANNEL`] (`<id>`). Both are sent inside the writing transaction, so
//! they arrive after the commit, in commit order and in every API process. A process with a
//! client wanting runs keeps one listener connection of its own on both channels (started by
//! the first such client); announcements wait in a queue of
//! [`NOTIFY_QUEUE`] (more are dropped and counted), a reader reads each announced run once and
//! publishes it on a broadcast of [`CAPACITY`]; each client forwards the runs it may see, by the
//! rule of `GET /api/v1/runs/{id}` ([`super::access::access`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lasect_runs::RunStatus;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{OnceCell, broadcast, mpsc};

use super::access::{self, RunAccess};
use crate::auth::Principal;
use crate::pg_listen::dedicated_listener;
use crate::routes::instances::rfc3339;

/// Run changes kept for slow clients (a client further behind is closed as too slow).
pub const CAPACITY: usize = 256;
/// Announcements waiting to be read; more are dropped (and counted).
pub const NOTIFY_QUEUE: usize = 1024;

/// What the agent reported last, as the running-backups view shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Progress {
    pub stage: Option<String>,
    pub percent: Option<f64>,
    pub bytes_done: Option<i64>,
    pub bytes_total: Option<i64>,
}

/// The `run` message's body.
#[derive(Debug, Clone, Serialize)]
pub struct RunEvent {
    pub id: i64,
    pub kind: String,
    pub instance_id: i64,
    pub instance_name: String,
    pub status: String,
    /// `status` or `progress`: what the announcement was about.
    pub change: String,
    pub progress: Option<Progress>,
    pub progress_at: Option<String>,
    /// When the run last changed (its latest timestamp).
    pub at: String,
    pub cancel_requested: bool,
    /// Only for callers who may read the run's details (as in `GET /api/v1/runs/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One announced run and what decides who may see it.
#[derive(Debug)]
pub struct PushedRun {
    pub event: RunEvent,
    params: Value,
    requested_by: String,
    labels: Value,
}

impl PushedRun {
    /// The message for `principal`, `None` when it may not see the run: the same rule as
    /// `GET /api/v1/runs/{id}` (a run hidden there is never pushed; its error only with its
    /// details).
    pub fn message_for(&self, principal: &Principal) -> Option<Value> {
        let seen = access::access(
            principal,
            &self.event.kind,
            &self.params,
            &self.requested_by,
            &self.labels,
        )?;
        let mut event = self.event.clone();
        if seen != RunAccess::Full {
            event.error = None;
        }
        Some(serde_json::json!({"type": "run", "run": event}))
    }
}

/// Which runs a client wants; an empty list: no restriction on that field.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RunFilter {
    pub instances: Vec<i64>,
    pub runs: Vec<i64>,
    pub kinds: Vec<String>,
}

impl RunFilter {
    pub fn matches(&self, event: &RunEvent) -> bool {
        (self.instances.is_empty() || self.instances.contains(&event.instance_id))
            && (self.runs.is_empty() || self.runs.contains(&event.id))
            && (self.kinds.is_empty() || self.kinds.contains(&event.kind))
    }
}

/// The announced runs of this process, started when the first client subscribes.
#[derive(Debug, Clone)]
pub struct RunFeed {
    inner: Arc<FeedInner>,
}

#[derive(Debug)]
struct FeedInner {
    pool: PgPool,
    events: broadcast::Sender<Arc<PushedRun>>,
    started: OnceCell<()>,
    dropped_notifications: AtomicUsize,
}

/// One announced change.
struct Announcement {
    run: i64,
    /// The status the change set; `None`: a progress report (the run is running).
    status: Option<String>,
}

impl Announcement {
    fn parse(channel: &str, payload: &str) -> Option<Announcement> {
        if channel == lasect_runs::PROGRESS_CHANNEL {
            return Some(Announcement {
                run: payload.parse().ok()?,
                status: None,
            });
        }
        let (id, status) = payload.split_once(' ')?;
        Some(Announcement {
            run: id.parse().ok()?,
            status: Some(status.to_owned()),
        })
    }
}

impl RunFeed {
    pub fn new(pool: PgPool) -> Self {
        let (events, _) = broadcast::channel(CAPACITY);
        RunFeed {
            inner: Arc::new(FeedInner {
                pool,
                events,
                started: OnceCell::new(),
                dropped_notifications: AtomicUsize::new(0),
            }),
        }
    }

    /// Announcements dropped because the reader was behind, since start.
    pub fn dropped_notifications(&self) -> usize {
        self.inner.dropped_notifications.load(Ordering::Relaxed)
    }

    /// A receiver of every announced run from now on; starts the listener on first use and
    /// returns once it is LISTENing, so no change committed after this is missed.
    pub async fn subscribe(&self) -> Result<broadcast::Receiver<Arc<PushedRun>>, sqlx::Error> {
        let receiver = self.inner.events.subscribe();
        self.inner
            .started
            .get_or_try_init(|| async {
                let mut listener =
                    dedicated_listener(&self.inner.pool, lasect_runs::STATUS_CHANNEL).await?;
                listener.listen(lasect_runs::PROGRESS_CHANNEL).await?;
                let (queue, announcements) = mpsc::channel(NOTIFY_QUEUE);
                tokio::spawn(listen(listener, queue, Arc::clone(&self.inner)));
                tokio::spawn(read(announcements, Arc::clone(&self.inner)));
                tracing::info!("live runs listening");
                Ok::<(), sqlx::Error>(())
            })
            .await?;
        Ok(receiver)
    }
}

/// Moves announcements from the listener connection to the reader's bounded queue.
async fn listen(
    mut listener: PgListener,
    queue: mpsc::Sender<Announcement>,
    inner: Arc<FeedInner>,
) {
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => {
                let Some(a) = Announcement::parse(n.channel(), n.payload()) else {
                    tracing::warn!("live runs: unreadable announcement ignored");
                    continue;
                };
                if queue.try_send(a).is_err() {
                    inner.dropped_notifications.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(None) => tracing::warn!(
                "live runs: listener connection lost; run changes meanwhile are not pushed"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "live runs: listener failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn read(mut announcements: mpsc::Receiver<Announcement>, inner: Arc<FeedInner>) {
    while let Some(a) = announcements.recv().await {
        if inner.events.receiver_count() == 0 {
            continue;
        }
        match load(&inner.pool, a).await {
            // An error only means nobody listens right now.
            Ok(Some(run)) => {
                let _ = inner.events.send(Arc::new(run));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "live runs: reading a run failed"),
        }
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    kind: String,
    instance_id: i64,
    instance_name: String,
    status: String,
    requested_by: String,
    params: Value,
    labels: Value,
    error: Option<String>,
    cancel_requested: bool,
    stage: Option<String>,
    percent: Option<f64>,
    bytes_done: Option<i64>,
    bytes_total: Option<i64>,
    has_progress: bool,
    progress_at: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
}

/// The announced run (`None`: it is gone). The status is the announcement's, so every change
/// is pushed as it was even when the run moved on before it is read; the rest is read now (the
/// latest progress), the error only with the status that set it.
async fn load(pool: &PgPool, a: Announcement) -> Result<Option<PushedRun>, sqlx::Error> {
    // A field of the agent's report with an unexpected type reads as absent, not as an error.
    let row: Option<Row> = sqlx::query_as(
        "SELECT r.id, r.kind, r.instance_id, i.name AS instance_name, r.status, r.requested_by, \
         r.params, i.labels, r.error, r.cancel_requested_at IS NOT NULL AS cancel_requested, \
         CASE WHEN jsonb_typeof(r.progress->'stage') = 'string' \
              THEN r.progress->>'stage' END AS stage, \
         CASE WHEN jsonb_typeof(r.progress->'percent') = 'number' \
              THEN (r.progress->>'percent')::float8 END AS percent, \
         CASE WHEN jsonb_typeof(r.progress->'bytes_done') = 'number' \
              AND abs((r.progress->>'bytes_done')::numeric) < 1e18 THEN trunc((r.progress->>'bytes_done')::numeric)::int8 END AS bytes_done, \
         CASE WHEN jsonb_typeof(r.progress->'bytes_total') = 'number' \
              AND abs((r.progress->>'bytes_total')::numeric) < 1e18 THEN trunc((r.progress->>'bytes_total')::numeric)::int8 END AS bytes_total, \
         r.progress IS NOT NULL AS has_progress, r.progress_at, \
         greatest(r.created_at, r.dispatched_at, r.started_at, r.finished_at, \
                  r.cancel_requested_at, r.progress_at) AS at \
         FROM runs r JOIN instances i ON i.id = r.instance_id WHERE r.id = $1",
    )
    .bind(a.run)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| PushedRun {
        event: RunEvent {
            id: r.id,
            kind: r.kind,
            instance_id: r.instance_id,
            instance_name: r.instance_name,
            // The error belongs to the status that set it, not to an earlier change read late.
            error: r
                .error
                .filter(|_| a.status.as_deref() == Some(r.status.as_str())),
            change: if a.status.is_some() {
                "status".to_owned()
            } else {
                "progress".to_owned()
            },
            // Progress is stored only while the run is running.
            status: a
                .status
                .unwrap_or_else(|| RunStatus::Running.as_str().to_owned()),
            progress: r.has_progress.then_some(Progress {
                stage: r.stage,
                percent: r.percent,
                bytes_done: r.bytes_done,
                bytes_total: r.bytes_total,
            }),
            progress_at: r.progress_at.map(rfc3339),
            at: rfc3339(r.at),
            cancel_requested: r.cancel_requested,
        },
        params: r.params,
        requested_by: r.requested_by,
        labels: r.labels,
    }))
}
