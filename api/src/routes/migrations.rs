//! Fleet schema migrations (002 R4; docs/CONTROL.md, "Fleet migrations"):
//! `POST|GET /api/v1/migrations`, `GET /api/v1/migrations/{id}`,
//! `POST /api/v1/migrations/{id}/cancel`. Global admin only.
//!
//! The API resolves the targets once, in name order, and stores the migration, its targets
//! and the first target's run in one transaction; the store advances from there (trigger
//! `runs_migration_ended`) and refuses a second running migration (unique index).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::auth_routes::body;
use super::instances::rfc3339;
use super::openapi::responses::{ById, RoleNeeded};
use super::runs::path_id;
use super::{ApiError, AppState};
use crate::auth::{Principal, Role};
use crate::runs;

pub use lasect_api_contract::migrations::{
    Migration, MigrationList, MigrationTarget, StartMigration, TargetSelector,
};

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_body", message)
}

fn bounded(name: &str, v: Option<i32>, default: i32, max: i32) -> Result<i32, ApiError> {
    match v {
        None => Ok(default),
        Some(v) if (1..=max).contains(&v) => Ok(v),
        Some(v) => Err(bad(format!("{name} must be 1..={max}, not {v}"))),
    }
}

/// The target instances, in name order (role `publisher`: its subscribers first, then the
/// publisher).
async fn resolve(
    state: &AppState,
    principal: &Principal,
    t: &TargetSelector,
) -> Result<Vec<(i64, String)>, ApiError> {
    let given = [t.instances.is_some(), t.labels.is_some(), t.role.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if given != 1 {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "targets needs exactly one of instances, labels or role",
        ));
    }
    if t.publication.is_some() && !matches!(t.role.as_deref(), Some("subscriber" | "publisher")) {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "targets.publication goes with role subscriber or publisher",
        ));
    }
    let rows: Vec<(i64, String)> = if let Some(ids) = &t.instances {
        if ids.is_empty() {
            return Err(bad("targets.instances is empty"));
        }
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, name FROM instances WHERE id = ANY($1) AND state = 'active' ORDER BY name, id",
        )
        .bind(ids)
        .fetch_all(&state.pool)
        .await?;
        if let Some(missing) = ids.iter().find(|id| !rows.iter().any(|(r, _)| r == *id)) {
            return Err(ApiError::not_found(format!(
                "no active instance with id {missing}"
            )));
        }
        rows
    } else if let Some(labels) = &t.labels {
        if labels.is_empty() || !labels.values().all(Value::is_string) {
            return Err(ApiError::unprocessable(
                "invalid_body",
                "targets.labels must be a non-empty object of strings",
            ));
        }
        sqlx::query_as(
            "SELECT id, name FROM instances WHERE labels @> $1 AND state = 'active' ORDER BY name, id",
        )
        .bind(Value::Object(labels.clone()))
        .fetch_all(&state.pool)
        .await?
    } else {
        match t.role.as_deref() {
            Some("primary") | Some("standby") => {
                sqlx::query_as(
                    "SELECT id, name FROM instances WHERE in_recovery = $1 AND state = 'active' \
                 ORDER BY name, id",
                )
                .bind(t.role.as_deref() == Some("standby"))
                .fetch_all(&state.pool)
                .await?
            }
            // Subscriptions and their publications come from the instance metadata
            // (refreshed hourly and by `lasect instance show --refresh`) and from the
            // replication topology (fresh samples: the subscribers of the publication's
            // streams); without a publication, recent `subscription` samples count too.
            Some("subscriber") => {
                let streams: Vec<i64> = match &t.publication {
                    Some(p) => super::replication::publication_pairs(&state.pool, principal, p)
                        .await?
                        .into_iter()
                        .map(|(_, subscriber)| subscriber)
                        .collect(),
                    None => Vec::new(),
                };
                sqlx::query_as(
                    "SELECT i.id, i.name FROM instances i WHERE i.state = 'active' AND ( \
                         i.id = ANY($2) OR \
                         EXISTS (SELECT 1 FROM jsonb_array_elements( \
                                     coalesce(i.metadata #> '{replication,subscriptions}', '[]')) s \
                                 WHERE jsonb_typeof(s) = 'object' \
                                   AND ($1::text IS NULL OR s -> 'publications' ? $1)) \
                         OR ($1::text IS NULL AND EXISTS ( \
                             SELECT 1 FROM metric_subscription m WHERE m.instance_id = i.id \
                             AND m.time > now() - interval '10 minutes'))) \
                     ORDER BY i.name, i.id",
                )
                .bind(&t.publication)
                .bind(&streams)
                .fetch_all(&state.pool)
                .await?
            }
            // The publisher of the publication and its subscribers, subscribers first: a
            // schema change reaches them before the publisher sends rows with a new column
            // (the chain runs in target order and stops at the first failure, so a subscriber
            // that cannot take the change keeps the publisher from getting it).
            Some("publisher") => {
                let Some(publication) = &t.publication else {
                    return Err(ApiError::unprocessable(
                        "invalid_body",
                        "targets.role publisher needs targets.publication",
                    ));
                };
                let pairs =
                    super::replication::publication_pairs(&state.pool, principal, publication)
                        .await?;
                return publisher_and_subscribers(state, publication, &pairs).await;
            }
            other => {
                return Err(bad(format!(
                    "targets.role must be primary, standby, subscriber or publisher, not {other:?}"
                )));
            }
        }
    };
    if rows.is_empty() {
        return Err(ApiError::unprocessable(
            "no_targets",
            "the targets match no active instance",
        ));
    }
    Ok(rows)
}

/// The subscribers of `pairs` (name order), then their publishers (name order): the order the
/// chain runs in.
async fn publisher_and_subscribers(
    state: &AppState,
    publication: &str,
    pairs: &[(i64, i64)],
) -> Result<Vec<(i64, String)>, ApiError> {
    let active = |ids: Vec<i64>| {
        sqlx::query_as::<_, (i64, String)>(
            "SELECT id, name FROM instances WHERE id = ANY($1) AND state = 'active' \
             ORDER BY name, id",
        )
        .bind(ids)
        .fetch_all(&state.pool)
    };
    let publishers = active(pairs.iter().map(|p| p.0).collect()).await?;
    if publishers.is_empty() {
        return Err(ApiError::unprocessable(
            "no_targets",
            format!(
                "no watched instance streams publication {publication:?} to a watched subscriber"
            ),
        ));
    }
    let mut targets = active(pairs.iter().map(|p| p.1).collect()).await?;
    for p in publishers {
        if !targets.iter().any(|t| t.0 == p.0) {
            targets.push(p);
        }
    }
    Ok(targets)
}

#[derive(sqlx::FromRow)]
struct TargetRow {
    position: i32,
    instance_id: i64,
    instance_name: String,
    status: String,
    run_id: Option<i64>,
    error: Option<String>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct MigrationRow {
    id: i64,
    name: String,
    status: String,
    dry_run: bool,
    requested_by: String,
    sql_sha256: String,
    targets: Value,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    error: Option<String>,
}

async fn load(state: &AppState, id: i64) -> Result<Option<Migration>, ApiError> {
    let row: Option<MigrationRow> = sqlx::query_as(
        "SELECT id, name, status, dry_run, requested_by, sql_sha256, targets, created_at, \
         finished_at, error FROM migrations WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    let Some(m) = row else { return Ok(None) };
    let targets: Vec<TargetRow> = sqlx::query_as(
        "SELECT position, instance_id, instance_name, status, run_id, error, started_at, \
             finished_at FROM migration_targets WHERE migration_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(&state.pool)
    .await?;
    Ok(Some(Migration {
        id: m.id,
        name: m.name,
        status: m.status,
        dry_run: m.dry_run,
        requested_by: m.requested_by,
        sql_sha256: m.sql_sha256,
        targets_selector: m.targets,
        created_at: rfc3339(m.created_at),
        finished_at: m.finished_at.map(rfc3339),
        error: m.error,
        targets: targets
            .into_iter()
            .map(|t| MigrationTarget {
                position: t.position,
                instance_id: t.instance_id,
                instance_name: t.instance_name,
                status: t.status,
                run_id: t.run_id,
                error: t.error,
                started_at: t.started_at.map(rfc3339),
                finished_at: t.finished_at.map(rfc3339),
            })
            .collect(),
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/migrations",
    tag = "migrations",
    security(("bearer" = [])),
    request_body = StartMigration,
    responses(
        (status = 201, description = "Started: the first target's run is queued", body = Migration),
        ById,
        (status = 409, description = "Another migration is running", body = super::openapi::ErrorBody),
        (status = 422, description = "Targets that select nothing, or a blank script", body = super::openapi::ErrorBody),
    )
)]
/// Needs the global admin role.
pub async fn start(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<StartMigration>, JsonRejection>,
) -> Result<(StatusCode, Json<Migration>), ApiError> {
    principal.require(Role::Admin)?;
    let r = body(request)?;
    if r.sql.is_empty() || r.sql.chars().count() > 4 << 20 {
        return Err(bad("sql must have 1 to 4194304 characters"));
    }
    if r.sql.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "sql is blank: there is no script to run",
        ));
    }
    let lock = bounded("lock_timeout_ms", r.lock_timeout_ms, 5000, 3_600_000)?;
    let statement = bounded(
        "statement_timeout_ms",
        r.statement_timeout_ms,
        60_000,
        3_600_000,
    )?;
    let timeout = bounded("timeout_ms", r.timeout_ms, 600_000, 3_600_000)?;
    let queue = bounded("queue_timeout_s", r.queue_timeout_s, 60, 3600)?;
    let targets = resolve(&state, &principal, &r.targets).await?;
    let selector = serde_json::to_value(&r.targets).map_err(ApiError::internal)?;
    let name = r
        .name
        .unwrap_or_else(|| format!("migration by {}", principal.username));
    let mut tx = state.pool.begin().await?;
    let inserted: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "INSERT INTO migrations (name, sql, sql_sha256, requested_by, targets, database, dry_run, \
         lock_timeout_ms, statement_timeout_ms, timeout_ms, queue_timeout_s) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(&name)
    .bind(&r.sql)
    .bind(lasect_pki::hash_token(&r.sql))
    .bind(runs::requested_by(&principal))
    .bind(selector)
    .bind(&r.database)
    .bind(r.dry_run)
    .bind(lock)
    .bind(statement)
    .bind(timeout)
    .bind(queue)
    .fetch_one(&mut *tx)
    .await;
    let id = match inserted {
        Ok(id) => id,
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505") => {
            drop(tx);
            let running: Option<i64> =
                sqlx::query_scalar("SELECT id FROM migrations WHERE status = 'running'")
                    .fetch_optional(&state.pool)
                    .await?;
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                match running {
                    Some(r) => format!("migration {r} is running; only one runs at a time"),
                    None => "another migration is running; only one runs at a time".to_owned(),
                },
            ));
        }
        Err(e) => return Err(e.into()),
    };
    for (position, (instance_id, instance_name)) in targets.iter().enumerate() {
        sqlx::query(
            "INSERT INTO migration_targets (migration_id, position, instance_id, instance_name) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(i32::try_from(position + 1).unwrap_or(i32::MAX))
        .bind(instance_id)
        .bind(instance_name)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("SELECT lasect_migration_queue_next($1)")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let m = load(&state, id)
        .await?
        .ok_or_else(|| ApiError::not_found("the migration vanished"))?;
    Ok((StatusCode::CREATED, Json(m)))
}

#[utoipa::path(
    get,
    path = "/api/v1/migrations",
    tag = "migrations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The last 100 migrations, newest first", body = MigrationList),
        RoleNeeded,
    )
)]
/// Needs the global admin role.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<MigrationList>, ApiError> {
    principal.require(Role::Admin)?;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM migrations ORDER BY id DESC LIMIT 100")
        .fetch_all(&state.pool)
        .await?;
    let mut migrations = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(m) = load(&state, id).await? {
            migrations.push(m);
        }
    }
    Ok(Json(MigrationList { migrations }))
}

#[utoipa::path(
    get,
    path = "/api/v1/migrations/{id}",
    tag = "migrations",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Migration id")),
    responses(
        (status = 200, description = "The migration and its per-instance report", body = Migration),
        ById,
    )
)]
/// Needs the global admin role.
pub async fn show(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Migration>, ApiError> {
    principal.require(Role::Admin)?;
    let id = path_id(path, "migration")?;
    load(&state, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no migration with id {id}")))
}

#[utoipa::path(
    post,
    path = "/api/v1/migrations/{id}/cancel",
    tag = "migrations",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Migration id")),
    responses(
        (status = 200, description = "Cancelled: the current run is cancelled, the rest skipped", body = Migration),
        ById,
        (status = 409, description = "The migration is not running", body = super::openapi::ErrorBody),
    )
)]
/// Needs the global admin role.
pub async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Migration>, ApiError> {
    principal.require(Role::Admin)?;
    let id = path_id(path, "migration")?;
    let mut tx = state.pool.begin().await?;
    let done = sqlx::query(
        "UPDATE migrations SET status = 'cancelled', finished_at = now(), \
         error = 'cancelled by ' || $2 WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .bind(&principal.username)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        drop(tx);
        return match load(&state, id).await? {
            Some(m) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("migration {id} is {}, not running", m.status),
            )),
            None => Err(ApiError::not_found(format!("no migration with id {id}"))),
        };
    }
    sqlx::query("UPDATE migration_targets SET status = 'skipped' WHERE migration_id = $1 AND status = 'pending'")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let current: Option<i64> = sqlx::query_scalar(
        "SELECT run_id FROM migration_targets WHERE migration_id = $1 AND status = 'running'",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .flatten();
    tx.commit().await?;
    if let Some(run) = current {
        runs::cancel(&state.pool, run).await?;
    }
    load(&state, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no migration with id {id}")))
}
