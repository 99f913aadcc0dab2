//! The outbox: events become deliveries ([`enqueue`]) and deliveries are sent
//! ([`deliver_one`]). Both are safe to run from any number of API processes at once.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lasect_pki::secrets::Keyring;

use super::channel::load_target;
use super::payload::{Links, Notification};
use super::send::{self, SendError};
use crate::alerts::selector::{self, Matcher};

/// Events read per pass of the cursor.
const BATCH: i64 = 500;
/// First retry after about this long; doubled per attempt up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 2,
        "warning" => 1,
        _ => 0,
    }
}

struct Route {
    id: i64,
    channel_id: i64,
    min_severity: String,
    matchers: Vec<Matcher>,
    repeat_secs: i32,
    send_resolved: bool,
    give_up_secs: i32,
}

impl Route {
    fn takes(&self, severity: &str, labels: &BTreeMap<String, String>) -> bool {
        severity_rank(severity) >= severity_rank(&self.min_severity)
            && selector::matches_all(&self.matchers, labels)
    }
}

async fn routes(conn: &mut sqlx::PgConnection) -> Result<Vec<Route>, sqlx::Error> {
    let rows: Vec<(i64, i64, String, String, i32, bool, i32)> = sqlx::query_as(
        "SELECT r.id, r.channel_id, r.min_severity, r.matchers, r.repeat_secs, r.send_resolved, \
         c.give_up_secs FROM alert_routes r JOIN alert_channels c ON c.id = r.channel_id \
         WHERE c.enabled ORDER BY r.id",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        // Validated when written; one that no longer parses routes nothing.
        .filter_map(
            |(id, channel_id, min_severity, m, repeat_secs, send_resolved, give_up)| {
                Some(Route {
                    id,
                    channel_id,
                    min_severity,
                    matchers: selector::parse(&m).ok()?,
                    repeat_secs,
                    send_resolved,
                    give_up_secs: give_up,
                })
            },
        )
        .collect())
}

#[derive(sqlx::FromRow)]
struct Event {
    id: i64,
    at: DateTime<Utc>,
    alert_id: Option<i64>,
    rule_name: String,
    severity: String,
    key: String,
    instance_id: Option<i64>,
    agent_id: Option<String>,
    from_state: String,
    to_state: String,
    value: Option<f64>,
    threshold: Option<f64>,
    labels: serde_json::Value,
    annotations: serde_json::Value,
    silenced: bool,
    fired_at: Option<DateTime<Utc>>,
}

fn string_map(v: serde_json::Value) -> BTreeMap<String, String> {
    serde_json::from_value(v).unwrap_or_default()
}

async fn insert(
    conn: &mut sqlx::PgConnection,
    route: &Route,
    event_id: Option<i64>,
    n: &Notification,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO alert_deliveries (idempotency_key, channel_id, route_id, alert_id, event_id, \
         kind, notification, give_up_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8)) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(&n.idempotency_key)
    .bind(route.channel_id)
    .bind(route.id)
    .bind(n.alert_id)
    .bind(event_id)
    .bind(&n.kind)
    .bind(serde_json::to_value(n).unwrap_or_default())
    .bind(f64::from(route.give_up_secs))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether `channel` was told that `alert` fires (so a resolution means something there).
async fn told_firing(
    conn: &mut sqlx::PgConnection,
    alert: Option<i64>,
    channel: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM alert_deliveries WHERE alert_id = $1 AND channel_id = $2 \
         AND kind IN ('firing', 'repeat'))",
    )
    .bind(alert)
    .bind(channel)
    .fetch_one(conn)
    .await
}

/// Passes the cursor over new events and enqueues their deliveries, then the repeats that
/// are due; all in one transaction under the cursor's row lock. Returns deliveries written.
pub async fn enqueue(pool: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let cursor: i64 =
        sqlx::query_scalar("SELECT last_event_id FROM alert_notifier WHERE id FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
    let routes = routes(&mut tx).await?;
    let events: Vec<Event> = sqlx::query_as(
        "SELECT e.id, e.at, e.alert_id, e.rule_name, e.severity, e.key, e.instance_id, \
         e.agent_id, e.from_state, e.to_state, e.value, e.threshold, e.labels, e.annotations, \
         e.silenced, (SELECT max(f.at) FROM alert_events f WHERE f.alert_id = e.alert_id \
           AND f.to_state = 'firing' AND f.id <= e.id) AS fired_at \
         FROM alert_events e WHERE e.id > $1 ORDER BY e.id LIMIT $2",
    )
    .bind(cursor)
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let mut written = 0;
    let last = events.last().map_or(cursor, |e| e.id);
    for e in events {
        let resolved = e.to_state == "resolved" && e.from_state == "firing";
        if e.silenced || !(e.to_state == "firing" || resolved) {
            continue;
        }
        let labels = string_map(e.labels);
        for route in routes.iter().filter(|r| r.takes(&e.severity, &labels)) {
            if resolved
                && (!route.send_resolved
                    || !told_firing(&mut tx, e.alert_id, route.channel_id).await?)
            {
                continue;
            }
            let kind = if resolved { "resolved" } else { "firing" };
            let n = Notification {
                version: 1,
                kind: kind.into(),
                idempotency_key: format!("lasect-ev{}-ch{}", e.id, route.channel_id),
                alert_id: e.alert_id,
                rule: e.rule_name.clone(),
                severity: e.severity.clone(),
                state: e.to_state.clone(),
                key: e.key.clone(),
                instance_id: e.instance_id,
                agent_id: e.agent_id.clone(),
                value: e.value,
                threshold: e.threshold,
                labels: labels.clone(),
                annotations: string_map(e.annotations.clone()),
                starts_at: e.fired_at.unwrap_or(e.at),
                ends_at: resolved.then_some(e.at),
                links: Links::of(&e.rule_name, e.instance_id),
            };
            if insert(&mut tx, route, Some(e.id), &n).await? {
                written += 1;
            }
        }
    }
    sqlx::query("UPDATE alert_notifier SET last_event_id = $1 WHERE id")
        .bind(last)
        .execute(&mut *tx)
        .await?;
    written += repeats(&mut tx, &routes).await?;
    tx.commit().await?;
    Ok(written)
}

#[derive(sqlx::FromRow)]
struct Firing {
    alert_id: i64,
    rule_name: String,
    severity: String,
    key: String,
    instance_id: Option<i64>,
    agent_id: Option<String>,
    last_value: Option<f64>,
    labels: serde_json::Value,
    annotations: serde_json::Value,
    since: DateTime<Utc>,
    last_delivery: i64,
}

/// Repeat notices for alerts still firing whose last notice to a channel (firing or repeat)
/// is older than the route's repeat interval, unless someone acknowledged them or a silence
/// now covers them.
async fn repeats(conn: &mut sqlx::PgConnection, routes: &[Route]) -> Result<u64, sqlx::Error> {
    let silences = crate::alerts::evaluator::active_silences(conn, Utc::now()).await?;
    let mut written = 0;
    for route in routes.iter().filter(|r| r.repeat_secs > 0) {
        let due: Vec<Firing> = sqlx::query_as(
            "SELECT a.id AS alert_id, r.name AS rule_name, r.severity, a.key, a.instance_id, \
             a.agent_id, a.last_value, a.labels, a.annotations, a.since, d.id AS last_delivery \
             FROM alert_instances a JOIN alert_rules r ON r.id = a.rule_id \
             JOIN LATERAL (SELECT id, kind, created_at FROM alert_deliveries \
                 WHERE alert_id = a.id AND channel_id = $1 ORDER BY id DESC LIMIT 1) d ON true \
             WHERE a.state = 'firing' AND a.acknowledged_at IS NULL \
               AND d.kind IN ('firing', 'repeat') \
               AND d.created_at < now() - make_interval(secs => $2)",
        )
        .bind(route.channel_id)
        .bind(f64::from(route.repeat_secs))
        .fetch_all(&mut *conn)
        .await?;
        for f in due {
            let labels = string_map(f.labels);
            if !route.takes(&f.severity, &labels)
                || silences.iter().any(|m| selector::matches_all(m, &labels))
            {
                continue;
            }
            let n = Notification {
                version: 1,
                kind: "repeat".into(),
                // Derived from the notice it repeats: two passes cannot write it twice.
                idempotency_key: format!("lasect-rep{}-ch{}", f.last_delivery, route.channel_id),
                alert_id: Some(f.alert_id),
                rule: f.rule_name.clone(),
                severity: f.severity,
                state: "firing".into(),
                key: f.key,
                instance_id: f.instance_id,
                agent_id: f.agent_id,
                value: f.last_value,
                threshold: None,
                labels,
                annotations: string_map(f.annotations),
                starts_at: f.since,
                ends_at: None,
                links: Links::of(&f.rule_name, f.instance_id),
            };
            if insert(&mut *conn, route, None, &n).await? {
                written += 1;
            }
        }
    }
    Ok(written)
}

/// Delay before attempt `attempts + 1`: doubled per attempt, capped, with jitter (50 % to
/// 100 % of it) so receivers coming back are not hit by every process at once.
pub fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    let full = BASE_BACKOFF
        .saturating_mul(2u32.saturating_pow(exp))
        .min(MAX_BACKOFF);
    full.mul_f64(rand::random_range(0.5..=1.0))
}

/// How one delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Retrying,
    Failed,
}

/// Claims and sends the oldest due delivery that has no older one pending for the same
/// alert and channel (order per alert), holding its row lock while the receiver is called.
/// `None`: nothing due.
pub async fn deliver_one(
    pool: &sqlx::PgPool,
    keyring: Option<&Keyring>,
) -> Result<Option<(i64, Outcome)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let claimed: Option<(i64, i64, serde_json::Value, i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT d.id, d.channel_id, d.notification, d.attempts, d.give_up_at \
         FROM alert_deliveries d \
         WHERE d.state = 'pending' AND d.next_attempt_at <= now() \
           AND NOT EXISTS (SELECT 1 FROM alert_deliveries e WHERE e.channel_id = d.channel_id \
               AND e.alert_id = d.alert_id AND e.state = 'pending' AND e.id < d.id) \
         ORDER BY d.id LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, channel_id, notification, attempts, give_up_at)) = claimed else {
        return Ok(None);
    };
    let attempt = attempts + 1;
    let result = match serde_json::from_value::<Notification>(notification) {
        Err(e) => Err(SendError::Refused {
            status: 0,
            message: format!("stored notification does not read: {e}"),
        }),
        Ok(n) => match load_target(&mut tx, channel_id, keyring).await {
            Ok(target) => send::send(&target, &n).await,
            Err(e) => Err(SendError::Retry {
                status: None,
                message: e.to_string(),
            }),
        },
    };
    let (outcome, status, error) = match &result {
        Ok(a) => (Outcome::Delivered, Some(i32::from(a.status)), None),
        Err(e) => {
            let status = e.status().map(i32::from).filter(|s| *s > 0);
            let gave_up = matches!(e, SendError::Refused { .. }) || Utc::now() >= give_up_at;
            let outcome = if gave_up {
                Outcome::Failed
            } else {
                Outcome::Retrying
            };
            (outcome, status, Some(e.to_string()))
        }
    };
    sqlx::query(
        "INSERT INTO alert_delivery_attempts (delivery_id, attempt, ok, status, error) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(attempt)
    .bind(outcome == Outcome::Delivered)
    .bind(status)
    .bind(&error)
    .execute(&mut *tx)
    .await?;
    let (state, delay) = match outcome {
        Outcome::Delivered => ("delivered", Duration::ZERO),
        Outcome::Failed => ("failed", Duration::ZERO),
        Outcome::Retrying => ("pending", backoff(attempt)),
    };
    sqlx::query(
        "UPDATE alert_deliveries SET state = $2, attempts = $3, last_status = $4, \
         last_error = $5, next_attempt_at = now() + make_interval(secs => $6), \
         finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END WHERE id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(attempt)
    .bind(status)
    .bind(&error)
    .bind(delay.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    match outcome {
        Outcome::Failed => {
            tracing::warn!(delivery = id, channel = channel_id, error = ?error, "alert notification given up")
        }
        Outcome::Retrying => {
            tracing::info!(delivery = id, channel = channel_id, error = ?error, "alert notification will be retried")
        }
        Outcome::Delivered => {}
    }
    Ok(Some((id, outcome)))
}

/// Sends every due delivery; returns how many were attempted.
pub async fn deliver_due(
    pool: &sqlx::PgPool,
    keyring: Option<&Keyring>,
) -> Result<usize, sqlx::Error> {
    let mut n = 0;
    while deliver_one(pool, keyring).await?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// How long finished deliveries (and their attempts) are kept, as the history of state changes.
pub const HISTORY_DAYS: i32 = crate::alerts::store::HISTORY_DAYS;

/// Deletes deliveries finished more than [`HISTORY_DAYS`] ago; pending ones always stay.
/// Run hourly with the store's maintenance. Returns the deliveries deleted.
pub async fn apply_retention(pool: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM alert_deliveries WHERE state <> 'pending' \
         AND coalesce(finished_at, created_at) < now() - make_interval(days => $1)",
    )
    .bind(HISTORY_DAYS)
    .execute(pool)
    .await?
    .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for attempts in 1..8 {
            let full = BASE_BACKOFF * 2u32.pow(u32::try_from(attempts - 1).expect("small"));
            let full = full.min(MAX_BACKOFF);
            let d = backoff(attempts);
            assert!(d >= full / 2 && d <= full, "attempt {attempts}: {d:?}");
        }
        assert!(backoff(60) <= MAX_BACKOFF);
    }
}
