//! Runs from the API's side (docs/CONTROL.md): creating one (the only way
//! the API asks for work on a monitored database), reading it back, its
//! result pages, waiting for it to end, cancelling it. Who may read what of a run: [`access`].
//! The statements that change a run's status are [`lasect_runs::Transition`]'s, shared with
//! ingest; this module executes the API's (cancel, expiry) with sqlx.

pub mod access;
pub mod call;
pub mod live;

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use lasect_runs::{RunStatus, Transition};

use crate::auth::Principal;
use crate::routes::ApiError;
use crate::routes::instances::rfc3339;

pub use lasect_api_contract::runs::{
    DEFAULT_MAX_BYTES, DEFAULT_MAX_ROWS, DEFAULT_QUEUE_TIMEOUT_S, DEFAULT_TIMEOUT_MS,
    LimitOutOfRange, MAX_MAX_BYTES, MAX_MAX_ROWS, MAX_TIMEOUT_MS, RunLimits, RunView,
};
pub const MAX_WAIT_SECS: u64 = 120;

/// A limit out of range is a body that breaks the documented schema.
impl From<LimitOutOfRange> for ApiError {
    fn from(e: LimitOutOfRange) -> Self {
        ApiError::bad_request("invalid_body", e.0)
    }
}

#[derive(sqlx::FromRow)]
pub struct RunRow {
    id: i64,
    kind: String,
    instance_id: i64,
    instance_name: String,
    agent_id: String,
    status: String,
    requested_by: String,
    params: Value,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    dispatched_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    timeout_ms: i32,
    max_rows: i64,
    max_bytes: i64,
    rows: Option<i64>,
    bytes: Option<i64>,
    truncated: bool,
    pages: i32,
    error: Option<String>,
    error_detail: Option<Value>,
    summary: Option<Value>,
    migration_id: Option<i64>,
    cancel_requested_at: Option<DateTime<Utc>>,
    /// For visibility checks.
    pub labels: Value,
    /// The run's agent has not been heard of for 30 s (ingest writes `last_seen` every few
    /// seconds while it is connected).
    agent_silent: bool,
}

pub const SELECT_RUNS: &str = "SELECT r.id, r.kind, r.instance_id, i.name AS instance_name, \
     r.agent_id, r.status, r.requested_by, r.params, r.created_at, r.expires_at, \
     r.dispatched_at, r.started_at, r.finished_at, r.timeout_ms, r.max_rows, r.max_bytes, \
     r.rows, r.bytes, r.truncated, r.pages, r.error, r.error_detail, r.summary, \
     r.migration_id, r.cancel_requested_at, i.labels, \
     a.last_seen < now() - interval '30 seconds' AS agent_silent \
     FROM runs r JOIN instances i ON i.id = r.instance_id JOIN agents a ON a.id = r.agent_id";

impl From<RunRow> for RunView {
    fn from(r: RunRow) -> Self {
        let duration_ms = match (r.started_at.or(r.dispatched_at), r.finished_at) {
            (Some(s), Some(f)) => Some((f - s).num_milliseconds().max(0)),
            _ => None,
        };
        RunView {
            id: r.id,
            kind: r.kind,
            instance_id: r.instance_id,
            instance_name: r.instance_name,
            agent_id: r.agent_id,
            status: r.status,
            requested_by: r.requested_by,
            params: Some(r.params),
            created_at: rfc3339(r.created_at),
            expires_at: rfc3339(r.expires_at),
            dispatched_at: r.dispatched_at.map(rfc3339),
            started_at: r.started_at.map(rfc3339),
            finished_at: r.finished_at.map(rfc3339),
            duration_ms,
            timeout_ms: r.timeout_ms,
            max_rows: r.max_rows,
            max_bytes: r.max_bytes,
            rows: r.rows,
            bytes: r.bytes,
            truncated: r.truncated,
            pages: r.pages,
            error: r.error,
            error_detail: r.error_detail,
            summary: r.summary,
            migration_id: r.migration_id,
            cancel_requested: r.cancel_requested_at.is_some(),
            details_hidden: false,
        }
    }
}

impl RunRow {
    /// What `principal` may see of this run; `None`: nothing (it cannot view the instance).
    pub fn access(&self, principal: &Principal) -> Option<access::RunAccess> {
        access::access(
            principal,
            &self.kind,
            &self.params,
            &self.requested_by,
            &self.labels,
        )
    }

    /// The role needed to create this run ([`access::role_to_create`]).
    pub fn role_to_create(&self) -> crate::auth::Role {
        access::role_to_create(&self.kind, &self.params)
    }
}

/// What a caller may see of a [`RunView`] (the type is shared with the CLI, the rule is the
/// API's).
pub trait ForAccess {
    /// The view for a caller with `access`: with [`access::RunAccess::Metadata`] the parameters,
    /// summary and errors (which quote the database's data) are cleared.
    fn for_access(self, access: access::RunAccess) -> Self;
}

impl ForAccess for RunView {
    fn for_access(mut self, access: access::RunAccess) -> Self {
        if access == access::RunAccess::Metadata {
            self.params = None;
            self.summary = None;
            self.error = None;
            self.error_detail = None;
            self.details_hidden = true;
        }
        self
    }
}

/// How the store names who asked: `user:<name>`, or `token:<id>:<name>`.
pub fn requested_by(principal: &Principal) -> String {
    match principal.api_token {
        Some((id, _)) => format!("token:{id}:{}", principal.username),
        None => format!("user:{}", principal.username),
    }
}

/// What to create; the kind is the parameters' arm.
pub struct NewRun<'a> {
    pub instance_id: i64,
    pub params: lasect_runs::RunParams,
    pub requested_by: String,
    pub limits: (i64, i64, i64, i64),
    /// Raw input (import_csv), stored zstd-compressed.
    pub input: Option<&'a [u8]>,
}

/// Inserts a queued run (and its input) in one transaction.
pub async fn create(pool: &PgPool, run: NewRun<'_>) -> Result<i64, ApiError> {
    let (timeout_ms, max_rows, max_bytes, queue_timeout_s) = run.limits;
    let mut tx = pool.begin().await?;
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO runs (kind, instance_id, agent_id, params, requested_by, timeout_ms, \
         max_rows, max_bytes, expires_at) \
         SELECT $1, id, agent_id, $3, $4, $5, $6, $7, now() + make_interval(secs => $8::float8) \
         FROM instances WHERE id = $2 AND state <> 'removed' RETURNING id",
    )
    .bind(run.params.kind().as_str())
    .bind(run.instance_id)
    .bind(run.params.to_json())
    .bind(&run.requested_by)
    .bind(i32::try_from(timeout_ms).unwrap_or(i32::MAX))
    .bind(max_rows)
    .bind(max_bytes)
    .bind(queue_timeout_s as f64)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        return Err(ApiError::not_found(format!(
            "no instance with id {}",
            run.instance_id
        )));
    };
    // A disabled agent is refused by ingest: its run would only wait and expire.
    let disabled: Option<String> = sqlx::query_scalar(
        "SELECT a.id FROM instances i JOIN agents a ON a.id = i.agent_id \
         WHERE i.id = $1 AND a.disabled_at IS NOT NULL",
    )
    .bind(run.instance_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(agent) = disabled {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "agent_disabled",
            format!(
                "agent {agent:?}, which serves instance {}, is disabled: it runs nothing",
                run.instance_id
            ),
        ));
    }
    if let Some(input) = run.input {
        let data = zstd::bulk::compress(input, 3).map_err(ApiError::internal)?;
        sqlx::query("INSERT INTO run_inputs (run_id, bytes, data) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(i64::try_from(input.len()).unwrap_or(i64::MAX))
            .bind(data)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(id)
}

pub async fn load(pool: &PgPool, id: i64) -> Result<Option<RunRow>, ApiError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_RUNS} WHERE r.id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// Reads the run until it is terminal or `wait` has passed, or while it is still queued for
/// an agent that is offline (nothing will happen before it reconnects: the caller gets the
/// queued run at once instead of waiting in vain; the run waits for its queue timeout).
pub async fn wait(pool: &PgPool, id: i64, wait: Duration) -> Result<RunView, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(50);
    loop {
        let row = load(pool, id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no run with id {id}")))?;
        let offline = row.agent_silent && row.status == RunStatus::Queued.as_str();
        let run = RunView::from(row);
        if run.is_terminal() || offline || tokio::time::Instant::now() >= deadline {
            return Ok(run);
        }
        tokio::time::sleep(pause.min(deadline - tokio::time::Instant::now())).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Asks for a cancel ([`Transition::Cancel`]): a queued run is cancelled here and now;
/// otherwise the ingest holding the agent forwards it (trigger `runs_notify_cancel`).
pub async fn cancel(pool: &PgPool, id: i64) -> Result<(), ApiError> {
    sqlx::query(Transition::Cancel.sql())
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// One stored page, decompressed.
pub async fn page(pool: &PgPool, id: i64, page: i32) -> Result<Option<Vec<u8>>, ApiError> {
    let data: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT data FROM run_results WHERE run_id = $1 AND page = $2")
            .bind(id)
            .bind(page)
            .fetch_optional(pool)
            .await?;
    data.map(|d| zstd::stream::decode_all(&d[..]).map_err(ApiError::internal))
        .transpose()
}

/// Expires queued runs whose agent never took them ([`Transition::Expire`], which ingest's
/// sweep executes too), so runs expire even when no ingest runs.
pub async fn expire_queued(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let expired: i64 = sqlx::query_scalar(Transition::Expire.sql())
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(expired).unwrap_or(0))
}

/// Queues a `schema_snapshot` run (requested by `system`) for every active instance whose
/// agent is connected, accepts the `schema` class and has had no snapshot run in the last
/// `every`; returns how many. Snapshots keep the change history current without anyone asking.
pub async fn queue_periodic_snapshots(pool: &PgPool, every: Duration) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "INSERT INTO runs (kind, instance_id, agent_id, params, requested_by, timeout_ms, \
                           max_rows, max_bytes, expires_at) \
         SELECT 'schema_snapshot', i.id, i.agent_id, '{}', 'system', 60000, 1, 268435456, \
                now() + interval '5 minutes' \
         FROM instances i JOIN agents a ON a.id = i.agent_id \
         WHERE i.state = 'active' AND a.disabled_at IS NULL \
           AND a.last_seen > now() - interval '5 minutes' \
           AND 'schema' = ANY (a.control_allowed) \
           AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.instance_id = i.id \
                           AND r.kind = 'schema_snapshot' \
                           AND r.created_at > now() - make_interval(secs => $1::float8))",
    )
    .bind(every.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected())
}

/// Queues an `instance_metadata` run (always allowed) for every active instance of a connected
/// agent whose metadata is older than `every` and that has none not ended yet; returns how many.
pub async fn queue_periodic_metadata(pool: &PgPool, every: Duration) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(PERIODIC_METADATA.as_str())
        .bind(every.as_secs_f64())
        .execute(pool)
        .await?
        .rows_affected())
}

/// Removes instances added through the API whose check ended without passing after the add
/// request stopped waiting (it answered 202): their latest `instance_check` failed, timed out,
/// was cancelled or expired. Returns how many.
pub async fn remove_failed_additions(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(REMOVE_FAILED_ADDITIONS.as_str())
        .execute(pool)
        .await?
        .rows_affected())
}

/// The statements below that select runs by status, their lists rendered from [`RunStatus`].
static PERIODIC_METADATA: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO runs (kind, instance_id, agent_id, params, requested_by, timeout_ms, \
                           max_rows, max_bytes, expires_at) \
         SELECT 'instance_metadata', i.id, i.agent_id, '{{}}', 'system', 30000, 1, 16777216, \
                now() + interval '5 minutes' \
         FROM instances i JOIN agents a ON a.id = i.agent_id \
         WHERE i.state = 'active' AND a.disabled_at IS NULL \
           AND a.control_connected_at IS NOT NULL \
           AND a.last_seen > now() - interval '5 minutes' \
           AND coalesce(i.metadata_at, '-infinity') < now() - make_interval(secs => $1::float8) \
           AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.instance_id = i.id \
                           AND r.kind = 'instance_metadata' \
                           AND r.status IN ({}))",
        RunStatus::sql_list(&not_terminal())
    )
});

static REMOVE_FAILED_ADDITIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE instances i SET state = 'removed', dsn_ciphertext = NULL, \
                run_dsn_ciphertext = NULL \
         WHERE i.state = 'validating' AND i.source = 'api' \
           AND (SELECT r.status FROM runs r WHERE r.instance_id = i.id \
                AND r.kind = 'instance_check' ORDER BY r.id DESC LIMIT 1) \
               IN ({})",
        RunStatus::sql_list(&ended_unsuccessfully())
    )
});

fn not_terminal() -> Vec<RunStatus> {
    RunStatus::ALL
        .into_iter()
        .filter(|s| !s.is_terminal())
        .collect()
}

fn ended_unsuccessfully() -> Vec<RunStatus> {
    RunStatus::ALL
        .into_iter()
        .filter(|s| s.is_terminal() && *s != RunStatus::Succeeded)
        .collect()
}

/// Deletes result pages and inputs past their TTL.
pub async fn delete_expired_results(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let pages = sqlx::query(
        "DELETE FROM run_results rr USING runs r \
         WHERE rr.run_id = r.id AND r.result_expires_at < now()",
    )
    .execute(pool)
    .await?
    .rows_affected();
    let inputs = sqlx::query(
        "DELETE FROM run_inputs ri USING runs r \
         WHERE ri.run_id = r.id AND r.finished_at IS NOT NULL \
           AND coalesce(r.result_expires_at, r.finished_at) < now()",
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(pages + inputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store_pool;
    use crate::store_dsn::StoreDsn;
    use lasect_testkit::{PgCluster, PgOptions};

    /// The maintenance statements that pick runs by status, on a migrated store: a run not
    /// ended yet holds back the next metadata run, and only an unsuccessful end of its check
    /// removes an instance still validating.
    #[tokio::test]
    async fn maintenance_picks_runs_by_status() {
        let pg = PgCluster::start(PgOptions::default()).expect("start pg");
        let dsn = pg.store_dsn().await.expect("migrated store");
        let pool = store_pool(&StoreDsn::new(dsn), Duration::from_secs(10)).expect("pool");
        sqlx::raw_sql(
            "INSERT INTO agents (id, control_connected_at) VALUES ('a', now());
             INSERT INTO instances (name, agent_id) VALUES ('main', 'a');",
        )
        .execute(&pool)
        .await
        .expect("seed");
        let every = Duration::from_secs(3000);
        assert_eq!(
            queue_periodic_metadata(&pool, every).await.expect("queue"),
            1
        );
        for status in RunStatus::ALL {
            sqlx::query("UPDATE runs SET status = $1 WHERE kind = 'instance_metadata'")
                .bind(status.as_str())
                .execute(&pool)
                .await
                .expect("set status");
            let queued = queue_periodic_metadata(&pool, every).await.expect("queue");
            assert_eq!(
                queued,
                u64::from(status.is_terminal()),
                "after a {status} run"
            );
        }

        for status in RunStatus::ALL {
            sqlx::query(
                "WITH i AS (INSERT INTO instances (name, agent_id, source, state) \
                            VALUES ($1, 'a', 'api', 'validating') RETURNING id) \
                 INSERT INTO runs (kind, instance_id, agent_id, requested_by, timeout_ms, \
                                   max_rows, max_bytes, expires_at, status) \
                 SELECT 'instance_check', id, 'a', 'system', 1000, 1, 1, \
                        now() + interval '1 hour', $1 FROM i",
            )
            .bind(status.as_str())
            .execute(&pool)
            .await
            .expect("validating instance");
        }
        assert_eq!(remove_failed_additions(&pool).await.expect("remove"), 4);
        let mut removed: Vec<String> =
            sqlx::query_scalar("SELECT name FROM instances WHERE state = 'removed'")
                .fetch_all(&pool)
                .await
                .expect("removed");
        removed.sort();
        assert_eq!(removed, ["cancelled", "expired", "failed", "timed_out"]);
    }
}
