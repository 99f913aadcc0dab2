//! `GET /api/v1/backups?instance_id=`: the stored backup catalogue of an instance
//! ([`crate::backup_catalogue`]), answered from the store without asking the agent. Viewer on
//! the instance.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::Row as _;
use utoipa::IntoParams;

pub use lasect_api_contract::backups::{Catalogue, CatalogueBackup, RepositoryCatalogue};

use super::instances::rfc3339;
use super::openapi::responses::ById;
use super::{ApiError, AppState};
use crate::auth::{Principal, Role};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CatalogueQuery {
    #[param(minimum = 1)]
    pub instance_id: i64,
}

#[utoipa::path(
    get,
    path = "/api/v1/backups",
    tag = "backups",
    security(("bearer" = [])),
    params(CatalogueQuery),
    responses(
        (status = 200, description = "The instance's stored backup catalogue, per repository", body = Catalogue),
        ById,
    )
)]
/// Needs viewer on the instance.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    q: Result<Query<CatalogueQuery>, QueryRejection>,
) -> Result<Json<Catalogue>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let id = q.instance_id;
    if id < 1 {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("instance_id must be a positive integer, not {id}"),
        ));
    }
    principal
        .require_on_instance(&state.pool, id, Role::Viewer)
        .await?;
    // A global viewer passes the role check whatever the id: a missing instance is a 404.
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT id FROM instances WHERE id = $1 AND state <> 'removed'")
            .bind(id)
            .fetch_optional(&state.pool)
            .await?;
    if exists.is_none() {
        return Err(ApiError::not_found(format!("no instance with id {id}")));
    }
    let repos = sqlx::query(
        "SELECT b.id, b.stanza, c.refreshed_at, c.run_id, c.status_code, c.status_message, \
                c.archive_id, c.archive_min, c.archive_max, c.earliest_restorable, \
                c.latest_restorable, c.problem \
         FROM backup_repositories b LEFT JOIN backup_catalogues c ON c.repository_id = b.id \
         WHERE b.instance_id = $1 ORDER BY b.stanza",
    )
    .bind(id)
    .fetch_all(&state.pool)
    .await?;
    let entries = sqlx::query(
        "SELECT e.repository_id, e.label, e.backup_type, e.prior, e.started_at, e.stopped_at, \
                e.database_size, e.delta_size, e.repo_size, e.repo_delta_size, e.wal_start, \
                e.wal_stop, e.lsn_start, e.lsn_stop, e.error \
         FROM backup_catalogue_entries e JOIN backup_repositories b ON b.id = e.repository_id \
         WHERE b.instance_id = $1 ORDER BY e.repository_id, e.started_at, e.label",
    )
    .bind(id)
    .fetch_all(&state.pool)
    .await?;
    let time = |r: &sqlx::postgres::PgRow, c: &str| -> Result<Option<String>, sqlx::Error> {
        Ok(r.try_get::<Option<DateTime<Utc>>, _>(c)?.map(rfc3339))
    };
    let mut repositories = Vec::new();
    for r in &repos {
        let repository_id: i64 = r.try_get("id")?;
        let mut backups = Vec::new();
        for e in entries
            .iter()
            .filter(|e| e.try_get::<i64, _>("repository_id").ok() == Some(repository_id))
        {
            let started: DateTime<Utc> = e.try_get("started_at")?;
            let stopped: DateTime<Utc> = e.try_get("stopped_at")?;
            backups.push(CatalogueBackup {
                label: e.try_get("label")?,
                backup_type: e.try_get("backup_type")?,
                prior: e.try_get("prior")?,
                started_at: rfc3339(started),
                stopped_at: rfc3339(stopped),
                duration_secs: (stopped - started).num_seconds(),
                database_size: e.try_get("database_size")?,
                delta_size: e.try_get("delta_size")?,
                repo_size: e.try_get("repo_size")?,
                repo_delta_size: e.try_get("repo_delta_size")?,
                wal_start: e.try_get("wal_start")?,
                wal_stop: e.try_get("wal_stop")?,
                lsn_start: e.try_get("lsn_start")?,
                lsn_stop: e.try_get("lsn_stop")?,
                error: e.try_get("error")?,
            });
        }
        repositories.push(RepositoryCatalogue {
            repository_id,
            stanza: r.try_get("stanza")?,
            refreshed_at: time(r, "refreshed_at")?,
            run_id: r.try_get("run_id")?,
            status_code: r.try_get("status_code")?,
            status_message: r.try_get("status_message")?,
            archive_id: r.try_get("archive_id")?,
            archive_min: r.try_get("archive_min")?,
            archive_max: r.try_get("archive_max")?,
            earliest_restorable: time(r, "earliest_restorable")?,
            latest_restorable: time(r, "latest_restorable")?,
            problem: r.try_get("problem")?,
            backups,
        });
    }
    Ok(Json(Catalogue {
        instance_id: id,
        repositories,
    }))
}
