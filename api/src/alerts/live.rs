//! Alert state changes on the live WebSocket (`GET /api/v1/live`, message `alert`).
//!
//! The evaluation round announces the `alert_events` rows it wrote with `pg_notify` on
//! [`CHANNEL`] inside its transaction, so the announcement arrives after the commit and in
//! every API process (the round runs in one of them). Each process that has a client wanting
//! alerts keeps one listener connection of its own, reads the announced rows once and
//! publishes them on a bounded broadcast; each client forwards those it may see (the same
//! rule as the alert list and history: [`crate::routes::alerts::may_see`]).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{OnceCell, broadcast};

use crate::pg_listen::dedicated_listener;
use crate::routes::alerts::{AlertEvent, events_between};

/// The channel the evaluation round notifies on.
pub const CHANNEL: &str = "lasect_alerts";
/// Announced batches kept for slow clients (a client further behind is closed as too slow).
pub const CAPACITY: usize = 64;

/// One state change and the labels of its instance (`None`: an agent's), for visibility.
#[derive(Debug)]
pub struct Pushed {
    pub event: AlertEvent,
    pub instance_labels: Option<serde_json::Value>,
}

/// The announced state changes of this process, started when the first client subscribes.
#[derive(Debug, Clone)]
pub struct AlertFeed {
    inner: Arc<FeedInner>,
}

#[derive(Debug)]
struct FeedInner {
    pool: PgPool,
    events: broadcast::Sender<Arc<Vec<Pushed>>>,
    started: OnceCell<()>,
}

#[derive(Deserialize)]
struct Announcement {
    v: u32,
    after: i64,
    up_to: i64,
}

/// Announces the events with ids in `(after, up_to]`, in the transaction that wrote them.
pub async fn announce(
    tx: &mut sqlx::PgConnection,
    after: i64,
    up_to: i64,
) -> Result<(), sqlx::Error> {
    let payload = serde_json::json!({"v": 1, "after": after, "up_to": up_to}).to_string();
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(tx)
        .await?;
    Ok(())
}

impl AlertFeed {
    pub fn new(pool: PgPool) -> Self {
        let (events, _) = broadcast::channel(CAPACITY);
        AlertFeed {
            inner: Arc::new(FeedInner {
                pool,
                events,
                started: OnceCell::new(),
            }),
        }
    }

    /// A receiver of every announced batch from now on; starts the listener on first use
    /// and returns once it is LISTENing, so no change committed after this is missed.
    pub async fn subscribe(&self) -> Result<broadcast::Receiver<Arc<Vec<Pushed>>>, sqlx::Error> {
        let receiver = self.inner.events.subscribe();
        self.inner
            .started
            .get_or_try_init(|| async {
                let listener = dedicated_listener(&self.inner.pool, CHANNEL).await?;
                tokio::spawn(listen(listener, Arc::clone(&self.inner)));
                tracing::info!(channel = CHANNEL, "live alerts listening");
                Ok::<(), sqlx::Error>(())
            })
            .await?;
        Ok(receiver)
    }
}

async fn listen(mut listener: PgListener, inner: Arc<FeedInner>) {
    loop {
        let payload = match listener.try_recv().await {
            Ok(Some(n)) => n.payload().to_owned(),
            Ok(None) => {
                tracing::warn!(
                    "live alerts: listener connection lost; changes meanwhile are not pushed"
                );
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "live alerts: listener failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let a: Announcement = match serde_json::from_str::<Announcement>(&payload) {
            Ok(a) if a.v == 1 => a,
            _ => {
                tracing::warn!("live alerts: unreadable announcement ignored");
                continue;
            }
        };
        if inner.events.receiver_count() == 0 {
            continue;
        }
        match events_between(&inner.pool, a.after, a.up_to).await {
            Ok(rows) if !rows.is_empty() => {
                let batch = rows
                    .into_iter()
                    .map(|(event, instance_labels)| Pushed {
                        event,
                        instance_labels,
                    })
                    .collect();
                // An error only means nobody listens right now.
                let _ = inner.events.send(Arc::new(batch));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "live alerts: reading announced changes failed"),
        }
    }
}
