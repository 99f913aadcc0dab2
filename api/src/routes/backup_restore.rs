//! Restores and restore drills with pgBackRest (docs/BACKUPS.md, "Restore", "Restore drills").
//!
//! - `POST /api/v1/instances/{id}/backup/repositories/{repo}/restore`: admin on the instance;
//!   a `backup_restore` run (class `restore`, opt-in on the agent).
//! - `POST …/{repo}/drills`: admin on it; a `backup_drill` run.
//! - `GET /api/v1/backups/drills?instance_id=`: viewer on the instance; the drills, newest
//!   first (a drill is its run: succeeded = passed, failed = failed with the reason), with the
//!   measured restore time and data window, never the check query's rows.
//! - `GET /api/v1/backups/running?instance_id=`: viewer on the instance; its backups queued or
//!   running with the progress the agent reports (`runs.progress`, migrations V30).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use lasect_runs::{
    BackupDrillParams, BackupRestoreParams, RestoreTargetType, RunParams, TablespaceMap,
};
use serde::Deserialize;
use sqlx::Row as _;

use super::backups::{backup_limits, repo_for_run};
use super::openapi::paths::RepositoryPath;
use super::openapi::responses::{ById, RunStarted};
use super::runs::WaitQuery;
use super::{ApiError, AppState};
use crate::auth::{Principal, Role};
use crate::runs::RunView;
use crate::runs::call::{Admin, RunCall};

pub use lasect_api_contract::backup_restore::{
    Drill, DrillList, DrillRequest, RestoreRequest, RunningBackup, RunningBackups,
    TablespaceMapping, TargetType,
};

const MAX_PATH: usize = 4096;
const MAX_CHECK_SQL: usize = 65_536;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DrillQuery {
    /// The instance whose drills to list.
    #[param(minimum = 1)]
    pub instance_id: i64,
    /// At most this many, newest first (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

fn unprocessable(message: String) -> ApiError {
    ApiError::unprocessable("invalid_restore", message)
}

fn one_line(name: &str, value: &str) -> Result<(), ApiError> {
    if value.contains(['\n', '\r', '\0']) {
        return Err(unprocessable(format!("{name} must be one line")));
    }
    Ok(())
}

/// What the schema cannot say about a restore: 422 with the reason.
fn restore_params(r: &RestoreRequest) -> Result<(RestoreTargetType, Option<String>), ApiError> {
    if r.to_dir.chars().count() > MAX_PATH || !r.to_dir.starts_with('/') {
        return Err(ApiError::bad_request(
            "invalid_body",
            "to_dir must be an absolute path of at most 4096 characters",
        ));
    }
    one_line("to_dir", &r.to_dir)?;
    if r.to_dir.split('/').any(|p| p == ".." || p == ".") || r.to_dir == "/" {
        return Err(unprocessable(
            "to_dir must be a directory below / without `.` or `..`".into(),
        ));
    }
    if let Some(t) = &r.target {
        if t.chars().count() > 64 {
            return Err(ApiError::bad_request(
                "invalid_body",
                "target must have at most 64 characters",
            ));
        }
        one_line("target", t)?;
    }
    if let Some(set) = &r.set
        && !lasect_runs::is_backup_label(set)
    {
        // Regex engines where `$` also matches before a final newline accept the document's
        // pattern with one: well-formed, but no label.
        if set
            .strip_suffix('\n')
            .is_some_and(lasect_runs::is_backup_label)
        {
            return Err(unprocessable("set must not end with a newline".into()));
        }
        return Err(ApiError::bad_request(
            "invalid_body",
            "set must be a backup label such as 20261207-083000F",
        ));
    }
    let kind = match r.target_type.unwrap_or(TargetType::Latest) {
        TargetType::Latest => RestoreTargetType::Latest,
        TargetType::Time => RestoreTargetType::Time,
        TargetType::Lsn => RestoreTargetType::Lsn,
        TargetType::Xid => RestoreTargetType::Xid,
        TargetType::Name => RestoreTargetType::Name,
    };
    let target = r.target.as_deref().map(str::trim);
    let ok = match (kind, target) {
        (RestoreTargetType::Latest, None) => true,
        (RestoreTargetType::Latest, Some(_)) => {
            return Err(unprocessable(
                "a restore to the latest point takes no target".into(),
            ));
        }
        (_, None) => {
            return Err(unprocessable(format!(
                "target_type {} needs a target",
                kind.as_str()
            )));
        }
        (RestoreTargetType::Time, Some(v)) => {
            v.as_bytes().first().is_some_and(u8::is_ascii_digit)
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b" :+-./".contains(&b))
        }
        (RestoreTargetType::Lsn, Some(v)) => v.split_once('/').is_some_and(|(hi, lo)| {
            [hi, lo]
                .iter()
                .all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit()))
        }),
        (RestoreTargetType::Xid, Some(v)) => v.parse::<u64>().is_ok(),
        (RestoreTargetType::Name, Some(v)) => {
            !v.is_empty() && !v.starts_with('-') && !v.contains(['\'', '"', '\\'])
        }
    };
    if !ok {
        return Err(unprocessable(format!(
            "target {:?} is not a valid {}",
            r.target.as_deref().unwrap_or_default(),
            kind.as_str()
        )));
    }
    if r.port == Some(0) {
        return Err(ApiError::bad_request(
            "invalid_body",
            "port must be 1..=65535",
        ));
    }
    if r.target_exclusive && matches!(kind, RestoreTargetType::Latest | RestoreTargetType::Name) {
        return Err(unprocessable(format!(
            "target_exclusive applies to time, lsn and xid targets, not to {}",
            kind.as_str()
        )));
    }
    tablespace_params(r)?;
    Ok((kind, target.map(str::to_owned)))
}

/// The tablespace remapping of a restore: the document's bounds (400), then what it cannot
/// say (422): names pgBackRest reads as `name=path`, each name and path once, plain paths.
fn tablespace_params(r: &RestoreRequest) -> Result<(), ApiError> {
    if r.tablespace_map.len() > 64 {
        return Err(ApiError::bad_request(
            "invalid_body",
            "tablespace_map has at most 64 entries",
        ));
    }
    let mut paths: Vec<&str> = Vec::new();
    for m in &r.tablespace_map {
        if !(1..=63).contains(&m.name.chars().count())
            || m.path.chars().count() > MAX_PATH
            || !m.path.starts_with('/')
        {
            return Err(ApiError::bad_request(
                "invalid_body",
                "a tablespace_map entry has a name of 1 to 63 characters and an absolute path \
                 of at most 4096",
            ));
        }
        if m.name.starts_with('-')
            || m.name.contains(['=', '/'])
            || m.name.chars().any(char::is_control)
        {
            return Err(unprocessable(format!(
                "tablespace_map: {:?} is not a tablespace name or oid (no `=`, `/`, leading `-` \
                 or control characters)",
                m.name
            )));
        }
        plain_dir("tablespace_map path", &m.path)?;
        if r.tablespace_map.iter().filter(|o| o.name == m.name).count() > 1 {
            return Err(unprocessable(format!(
                "tablespace_map names {:?} twice",
                m.name
            )));
        }
        if paths.contains(&m.path.as_str()) {
            return Err(unprocessable(format!(
                "tablespace_map sends two tablespaces to {}",
                m.path
            )));
        }
        paths.push(&m.path);
    }
    if let Some(all) = &r.tablespace_map_all {
        if all.chars().count() > MAX_PATH || !all.starts_with('/') {
            return Err(ApiError::bad_request(
                "invalid_body",
                "tablespace_map_all must be an absolute path of at most 4096 characters",
            ));
        }
        plain_dir("tablespace_map_all", all)?;
    }
    Ok(())
}

/// An absolute directory below / without `.` or `..`, on one line.
fn plain_dir(name: &str, path: &str) -> Result<(), ApiError> {
    if path.chars().any(char::is_control) {
        return Err(unprocessable(format!(
            "{name} must be one line without control characters"
        )));
    }
    if path.split('/').any(|p| p == ".." || p == ".") || path.trim_end_matches('/').is_empty() {
        return Err(unprocessable(format!(
            "{name} must be a directory below / without `.` or `..`"
        )));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/backup/repositories/{repo}/restore",
    tag = "backups",
    security(("bearer" = [])),
    params(RepositoryPath, WaitQuery),
    request_body = RestoreRequest,
    responses(
        RunStarted,
        (status = 200, description = "The run, ended; summary says where the restored cluster is (and its port and socket when started)", body = RunView),
        (status = 422, description = "A target that does not fit its type, or a repository this version cannot run yet", body = super::openapi::ErrorBody),
    )
)]
pub async fn restore(
    call: RunCall<RestoreRequest, Admin>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let RunCall { target, body: r } = call;
    let (target_type, point) = restore_params(&r)?;
    let (stanza, repo) =
        repo_for_run(target.state(), target.instance_id, target.id("repo")?).await?;
    let params = RunParams::BackupRestore(BackupRestoreParams {
        stanza,
        repo,
        to_dir: r.to_dir,
        target_type,
        target: point,
        set: r.set,
        delta: r.delta,
        start: r.start,
        port: r.port,
        target_exclusive: r.target_exclusive,
        tablespace_map: r
            .tablespace_map
            .into_iter()
            .map(|m| TablespaceMap {
                name: m.name,
                path: m.path,
            })
            .collect(),
        tablespace_map_all: r.tablespace_map_all,
    });
    target.start(params, backup_limits()?).await
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/backup/repositories/{repo}/drills",
    tag = "backups",
    security(("bearer" = [])),
    params(RepositoryPath, WaitQuery),
    request_body = DrillRequest,
    responses(
        RunStarted,
        (status = 200, description = "The run, ended: succeeded = the drill passed (summary: rto_seconds, rpo_seconds, checks), failed = it did not (error: why)", body = RunView),
        (status = 422, description = "A repository this version cannot run yet, or a text that is not one line", body = super::openapi::ErrorBody),
    )
)]
pub async fn drill(
    call: RunCall<DrillRequest, Admin>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let RunCall { target, body: r } = call;
    if let Some(sql) = &r.check_sql {
        if sql.chars().count() > MAX_CHECK_SQL {
            return Err(ApiError::bad_request(
                "invalid_body",
                "check_sql must have at most 65536 characters",
            ));
        }
        if sql.contains('\0') {
            return Err(unprocessable("check_sql must not hold NUL".into()));
        }
    }
    if let Some(dir) = &r.scratch_dir {
        if dir.chars().count() > MAX_PATH || !dir.starts_with('/') {
            return Err(ApiError::bad_request(
                "invalid_body",
                "scratch_dir must be an absolute path of at most 4096 characters",
            ));
        }
        one_line("scratch_dir", dir)?;
    }
    let (stanza, repo) =
        repo_for_run(target.state(), target.instance_id, target.id("repo")?).await?;
    let params = RunParams::BackupDrill(BackupDrillParams {
        stanza,
        repo,
        check_sql: r.check_sql,
        amcheck: r.amcheck.unwrap_or(true),
        scratch_dir: r.scratch_dir,
    });
    target.start(params, backup_limits()?).await
}

#[utoipa::path(
    get,
    path = "/api/v1/backups/drills",
    tag = "backups",
    security(("bearer" = [])),
    params(DrillQuery),
    responses(
        (status = 200, description = "The instance's restore drills, newest first", body = DrillList),
        ById,
    )
)]
/// Needs viewer on the instance.
pub async fn drills(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<DrillQuery>, QueryRejection>,
) -> Result<Json<DrillList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be 1..=100",
        ));
    }
    viewed_instance(&state, &principal, q.instance_id).await?;
    // Only the drill's outcome leaves the summary: the check query's rows are data, an
    // admin's (GET /api/v1/runs/{id}).
    let rows = sqlx::query(
        "SELECT id, instance_id, params ->> 'stanza' AS stanza, status, \
         CASE WHEN status = 'succeeded' THEN true \
              WHEN status IN ('failed', 'timed_out', 'cancelled', 'expired') THEN false END AS passed, \
         CASE WHEN status <> 'succeeded' THEN error END AS reason, \
         coalesce(summary ->> 'backup', error_detail ->> 'backup') AS backup, \
         (summary ->> 'rto_seconds')::float8 AS rto_seconds, \
         (summary ->> 'rpo_seconds')::float8 AS rpo_seconds, \
         to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS requested_at, \
         to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS finished_at \
         FROM runs WHERE instance_id = $1 AND kind = 'backup_drill' ORDER BY id DESC LIMIT $2",
    )
    .bind(q.instance_id)
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    let drills = rows
        .iter()
        .map(|r| {
            Ok(Drill {
                run_id: r.try_get("id")?,
                instance_id: r.try_get("instance_id")?,
                stanza: r.try_get("stanza")?,
                status: r.try_get("status")?,
                passed: r.try_get("passed")?,
                reason: r.try_get("reason")?,
                backup: r.try_get("backup")?,
                rto_seconds: r.try_get("rto_seconds")?,
                rpo_seconds: r.try_get("rpo_seconds")?,
                requested_at: r.try_get("requested_at")?,
                finished_at: r.try_get("finished_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(DrillList { drills }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunningQuery {
    /// The instance whose running backups to show.
    #[param(minimum = 1)]
    pub instance_id: i64,
}

/// The instance id of a query, checked, once the caller may view it and it exists.
async fn viewed_instance(state: &AppState, principal: &Principal, id: i64) -> Result<(), ApiError> {
    if id < 1 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "instance_id must be a positive integer",
        ));
    }
    principal
        .require_on_instance(&state.pool, id, Role::Viewer)
        .await?;
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT id FROM instances WHERE id = $1 AND state <> 'removed'")
            .bind(id)
            .fetch_optional(&state.pool)
            .await?;
    if exists.is_none() {
        return Err(ApiError::not_found(format!("no instance with id {id}")));
    }
    Ok(())
}

#[utoipa::path(
    get,
    path = "/api/v1/backups/running",
    tag = "backups",
    security(("bearer" = [])),
    params(RunningQuery),
    responses(
        (status = 200, description = "The instance's backups queued or running, with their live progress", body = RunningBackups),
        ById,
    )
)]
/// Needs viewer on the instance.
pub async fn running(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<RunningQuery>, QueryRejection>,
) -> Result<Json<RunningBackups>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    viewed_instance(&state, &principal, q.instance_id).await?;
    let rows = sqlx::query(
        "SELECT id, instance_id, kind, params ->> 'stanza' AS stanza, params ->> 'type' AS type, \
         status, progress ->> 'stage' AS stage, (progress ->> 'percent')::float8 AS percent, \
         (progress ->> 'bytes_done')::int8 AS bytes_done, \
         (progress ->> 'bytes_total')::int8 AS bytes_total, \
         to_char(progress_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS progress_at, \
         to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS started_at \
         FROM runs WHERE instance_id = $1 AND kind IN ('backup', 'backup_restore', 'backup_drill') \
         AND status IN ('queued', 'dispatched', 'running') ORDER BY id",
    )
    .bind(q.instance_id)
    .fetch_all(&state.pool)
    .await?;
    let backups = rows
        .iter()
        .map(|r| {
            Ok(RunningBackup {
                run_id: r.try_get("id")?,
                instance_id: r.try_get("instance_id")?,
                kind: r.try_get("kind")?,
                stanza: r.try_get("stanza")?,
                backup_type: r.try_get("type")?,
                status: r.try_get("status")?,
                stage: r.try_get("stage")?,
                percent: r.try_get("percent")?,
                bytes_done: r.try_get("bytes_done")?,
                bytes_total: r.try_get("bytes_total")?,
                progress_at: r.try_get("progress_at")?,
                started_at: r.try_get("started_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(RunningBackups { backups }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(
        body: serde_json::Value,
    ) -> Result<(RestoreTargetType, Option<String>), (u16, String)> {
        let r: RestoreRequest = serde_json::from_value(body).expect("a body");
        restore_params(&r).map_err(|e| (e.status().as_u16(), e.message().to_owned()))
    }

    #[test]
    fn targets_fit_their_type_or_are_422() {
        assert_eq!(
            check(json!({"to_dir": "/srv/r"})),
            Ok((RestoreTargetType::Latest, None))
        );
        assert_eq!(
            check(json!({"to_dir": "/srv/r", "target_type": "lsn", "target": "0/3000060"})),
            Ok((RestoreTargetType::Lsn, Some("0/3000060".into())))
        );
        for (body, status, needle) in [
            (
                json!({"to_dir": "/srv/r", "target_type": "time"}),
                422,
                "needs a target",
            ),
            (
                json!({"to_dir": "/srv/r", "target": "0/1"}),
                422,
                "no target",
            ),
            (
                json!({"to_dir": "/srv/r", "target_type": "lsn", "target": "0/zz"}),
                422,
                "lsn",
            ),
            (
                json!({"to_dir": "/srv/r", "target_type": "xid", "target": "-4"}),
                422,
                "xid",
            ),
            (
                json!({"to_dir": "/srv/r", "target_type": "time", "target": "--delta"}),
                422,
                "time",
            ),
            (json!({"to_dir": "/srv/../etc"}), 422, ".."),
            (json!({"to_dir": "/srv/r\n"}), 422, "one line"),
            (json!({"to_dir": "srv"}), 400, "absolute"),
            (json!({"to_dir": "/srv/r", "set": "latest"}), 400, "label"),
            (
                json!({"to_dir": "/srv/r", "set": "20261207-083000F\n"}),
                422,
                "newline",
            ),
            (
                json!({"to_dir": "/srv/r", "target_exclusive": true}),
                422,
                "target_exclusive",
            ),
            (
                json!({"to_dir": "/srv/r", "tablespace_map": [{"name": "ts", "path": "srv"}]}),
                400,
                "absolute",
            ),
            (
                json!({"to_dir": "/srv/r", "tablespace_map": [{"name": "a=b", "path": "/t"}]}),
                422,
                "tablespace name",
            ),
            (
                json!({"to_dir": "/srv/r", "tablespace_map": [{"name": "a", "path": "/t/../u"}]}),
                422,
                "..",
            ),
            (
                json!({"to_dir": "/srv/r", "tablespace_map": [
                    {"name": "a", "path": "/t"}, {"name": "a", "path": "/u"}]}),
                422,
                "twice",
            ),
            (
                json!({"to_dir": "/srv/r", "tablespace_map": [
                    {"name": "a", "path": "/t"}, {"name": "b", "path": "/t"}]}),
                422,
                "two tablespaces",
            ),
            (
                json!({"to_dir": "/srv/r", "tablespace_map_all": "/"}),
                422,
                "below /",
            ),
            (
                json!({"to_dir": "/srv/r", "tablespace_map_all": "t"}),
                400,
                "absolute",
            ),
        ] {
            let Err((got, message)) = check(body.clone()) else {
                panic!("{body} accepted");
            };
            assert_eq!(got, status, "{body}: {message}");
            assert!(message.contains(needle), "{body}: {message}");
        }
        assert!(lasect_runs::is_backup_label(
            "20261207-083000F_20261207-093000D"
        ));
        assert_eq!(
            check(
                json!({"to_dir": "/srv/r", "target_type": "xid", "target": "742",
                "target_exclusive": true, "tablespace_map": [{"name": "ts", "path": "/srv/ts"}],
                "tablespace_map_all": "/srv/rest"})
            ),
            Ok((RestoreTargetType::Xid, Some("742".into())))
        );
    }
}
