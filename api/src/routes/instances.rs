//! `GET /api/v1/instances`: the monitored PostgreSQL instances.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, SecondsFormat, Utc};

use super::AppState;
use super::api_error::ApiError;
use super::openapi::responses::SignedIn;
use crate::auth::{Principal, Role};

pub use lasect_api_contract::instances::{Instance, InstanceList, KeyFigures};

#[derive(sqlx::FromRow)]
struct InstanceRow {
    id: i64,
    name: String,
    agent_id: String,
    server_version_num: Option<i32>,
    version: Option<String>,
    in_recovery: Option<bool>,
    labels: serde_json::Value,
    created_at: DateTime<Utc>,
    last_seen: Option<DateTime<Utc>>,
    source: String,
    state: String,
    dsn_redacted: Option<String>,
    health: Option<serde_json::Value>,
    health_at: Option<DateTime<Utc>>,
}

impl From<InstanceRow> for Instance {
    fn from(r: InstanceRow) -> Self {
        Instance {
            id: r.id,
            name: r.name,
            agent_id: r.agent_id,
            server_version_num: r.server_version_num,
            version: r.version,
            in_recovery: r.in_recovery,
            labels: r.labels,
            created_at: rfc3339(r.created_at),
            last_seen: r.last_seen.map(rfc3339),
            source: r.source,
            state: r.state,
            dsn: r.dsn_redacted,
            health: r.health,
            health_at: r.health_at.map(rfc3339),
            figures: None,
        }
    }
}

pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Every instance with its key figures, in one statement: per instance, a few index scans
/// (`(instance_id, time DESC)`) over the last hour of five families, never one query per row.
/// A database whose statistics were reset between the two latest samples gives no rate.
const LIST_INSTANCES: &str = "SELECT i.id, i.name, i.agent_id, i.server_version_num, i.version, \
     i.in_recovery, i.labels, i.created_at, i.last_seen, i.source, i.state, i.dsn_redacted, \
     i.health, i.health_at, \
     act.time AS activity_at, act.total_sessions, act.max_connections, \
     db.time AS database_at, db.size_bytes, db.xacts, db.blks_hit, db.blks_read, db.seconds, \
     sb.time AS standby_at, sb.replay_delay_seconds, sb.replay_lag_bytes AS standby_lag_bytes, \
     rp.time AS replication_at, rp.lag_seconds AS sender_lag_seconds, rp.lag_bytes AS sender_lag_bytes, \
     fs.time AS filesystem_at, fs.used_percent \
     FROM instances i \
     LEFT JOIN LATERAL (SELECT time, total_sessions, max_connections FROM metric_activity \
       WHERE instance_id = i.id AND time > now() - interval '1 hour' \
       ORDER BY time DESC LIMIT 1) act ON true \
     LEFT JOIN LATERAL ( \
       WITH times AS (SELECT DISTINCT time FROM metric_database \
           WHERE instance_id = i.id AND time > now() - interval '1 hour' ORDER BY time DESC LIMIT 2), \
         cur AS (SELECT * FROM metric_database WHERE instance_id = i.id \
           AND time = (SELECT max(time) FROM times)), \
         prev AS (SELECT * FROM metric_database WHERE instance_id = i.id \
           AND time = (SELECT min(time) FROM times) AND (SELECT count(*) FROM times) = 2) \
       SELECT (SELECT max(time) FROM times) AS time, \
         (SELECT sum(size_bytes)::int8 FROM cur) AS size_bytes, \
         sum(c.xact_commit + c.xact_rollback - p.xact_commit - p.xact_rollback)::float8 AS xacts, \
         sum(c.blks_hit - p.blks_hit)::float8 AS blks_hit, \
         sum(c.blks_read - p.blks_read)::float8 AS blks_read, \
         extract(epoch FROM max(c.time) - max(p.time))::float8 AS seconds \
       FROM cur c JOIN prev p USING (datname) \
       WHERE c.xact_commit >= p.xact_commit AND c.xact_rollback >= p.xact_rollback \
         AND c.blks_hit >= p.blks_hit AND c.blks_read >= p.blks_read) db ON true \
     LEFT JOIN LATERAL (SELECT time, replay_delay_seconds, replay_lag_bytes FROM metric_standby \
       WHERE instance_id = i.id AND time > now() - interval '1 hour' \
       ORDER BY time DESC LIMIT 1) sb ON true \
     LEFT JOIN LATERAL (SELECT max(time) AS time, max(replay_lag_seconds) AS lag_seconds, \
         max(replay_lag_bytes) AS lag_bytes FROM metric_replication \
       WHERE instance_id = i.id AND time = (SELECT max(time) FROM metric_replication \
         WHERE instance_id = i.id AND time > now() - interval '1 hour')) rp ON true \
     LEFT JOIN LATERAL (SELECT max(time) AS time, \
         max(used_bytes::float8 * 100 / NULLIF(total_bytes, 0)) AS used_percent \
       FROM metric_host_filesystem \
       WHERE instance_id = i.id AND time = (SELECT max(time) FROM metric_host_filesystem \
         WHERE instance_id = i.id AND time > now() - interval '1 hour')) fs ON true \
     WHERE i.state <> 'removed' ORDER BY i.agent_id, i.name, i.id";
const FIND_INSTANCE: &str = "SELECT id, name, agent_id, server_version_num, version, \
     in_recovery, labels, created_at, last_seen, source, state, dsn_redacted, health, health_at \
     FROM instances WHERE id = $1 AND state <> 'removed'";

/// Only the instances the caller may see: all with a global role, else those whose labels
/// match one of the caller's grants; each with its key figures of the last hour.
#[utoipa::path(
    get,
    path = "/api/v1/instances",
    tag = "instances",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every monitored instance", body = InstanceList),
        SignedIn,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<InstanceList>, ApiError> {
    let rows: Vec<ListRow> = sqlx::query_as(LIST_INSTANCES)
        .fetch_all(&state.pool)
        .await?;
    Ok(Json(InstanceList {
        instances: rows
            .into_iter()
            .filter(|r| principal.role_for_labels(&r.instance.labels) >= Some(Role::Viewer))
            .map(ListRow::into_instance)
            .collect(),
    }))
}

/// A row of [`LIST_INSTANCES`]: the instance and what its figures are made of.
#[derive(sqlx::FromRow)]
struct ListRow {
    #[sqlx(flatten)]
    instance: InstanceRow,
    activity_at: Option<DateTime<Utc>>,
    total_sessions: Option<i64>,
    max_connections: Option<i64>,
    database_at: Option<DateTime<Utc>>,
    size_bytes: Option<i64>,
    xacts: Option<f64>,
    blks_hit: Option<f64>,
    blks_read: Option<f64>,
    seconds: Option<f64>,
    standby_at: Option<DateTime<Utc>>,
    replay_delay_seconds: Option<f64>,
    standby_lag_bytes: Option<i64>,
    replication_at: Option<DateTime<Utc>>,
    sender_lag_seconds: Option<f64>,
    sender_lag_bytes: Option<i64>,
    filesystem_at: Option<DateTime<Utc>>,
    used_percent: Option<f64>,
}

impl ListRow {
    fn into_instance(self) -> Instance {
        let seconds = self.seconds.filter(|s| *s > 0.0);
        let tps = self.xacts.zip(seconds).map(|(x, s)| x / s);
        let cache_hit_percent = match (self.blks_hit, self.blks_read) {
            (Some(hit), Some(read)) if hit + read > 0.0 => Some(100.0 * hit / (hit + read)),
            _ => None,
        };
        // A standby reports its own delay; a primary the lag of its slowest sender.
        let (replication_lag_seconds, replication_lag_bytes) = if self.standby_at.is_some() {
            (self.replay_delay_seconds, self.standby_lag_bytes)
        } else {
            (self.sender_lag_seconds, self.sender_lag_bytes)
        };
        let sampled_at = [
            self.activity_at,
            self.database_at,
            self.standby_at,
            self.replication_at,
            self.filesystem_at,
        ]
        .into_iter()
        .flatten()
        .max();
        let figures = sampled_at.map(|at| KeyFigures {
            connections: self.total_sessions,
            max_connections: self.max_connections,
            tps,
            cache_hit_percent,
            replication_lag_seconds,
            replication_lag_bytes,
            disk_used_percent: self.used_percent,
            database_size_bytes: self.size_bytes,
            sampled_at: Some(rfc3339(at)),
        });
        Instance {
            figures,
            ..Instance::from(self.instance)
        }
    }
}

/// The instance with `id`, or `None`.
pub(crate) async fn find(state: &AppState, id: i64) -> Result<Option<Instance>, ApiError> {
    let row: Option<InstanceRow> = sqlx::query_as(FIND_INSTANCE)
        .bind(id)
        .fetch_optional(&state.pool)
        .await?;
    Ok(row.map(Instance::from))
}
