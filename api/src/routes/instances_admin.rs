//! Instances added through the API (docs/CONTROL.md, "Secrets"):
//! `POST /api/v1/instances`, `GET|DELETE /api/v1/instances/{id}`,
//! `POST /api/v1/instances/{id}/test`, `POST /api/v1/instances/{id}/refresh`.
//!
//! Adding validates before saving: the instance is stored `validating`, the serving agent runs
//! an `instance_check` over its own connection, and only a passing check makes it `active`. The
//! DSN is parsed here (a malformed one is refused before anything is stored), kept only as
//! AES-256-GCM ciphertext plus a redacted form for display, and never returned or logged.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::config::Host;

use lasect_pki::secrets::{FIELD_DSN, FIELD_RUN_DSN, encrypt_instance_secret};
use lasect_runs::{InstanceCheckParams, InstanceMetadataParams, RunParams};

use super::auth_routes::body;
use super::instances::{find, rfc3339};
use super::openapi::paths::InstancePath;
use super::openapi::responses::{ById, RunAnswered};
use super::runs::{WaitQuery, ask, path_id};
use super::{ApiError, AppState};
use crate::auth::{Principal, Role};
use crate::runs::call::RunCall;
use crate::runs::{self, NewRun, RunLimits, RunView};
pub use lasect_api_contract::instances::{AddInstance, AddedInstance, CheckResult, InstanceDetail};

const CHECK_WAIT: Duration = Duration::from_secs(30);
/// Longest DSN accepted, in characters (as JSON Schema counts them).
const MAX_DSN_CHARS: usize = 4096;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckFailed {
    pub error: super::openapi::ErrorDetail,
    /// The run that failed; absent when the request was refused before any run (an unusable
    /// DSN, no agent chosen).
    pub run_id: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub check: Option<Value>,
}

/// The DSN without its password, for display.
pub fn redact(pg: &tokio_postgres::Config) -> String {
    let mut parts = Vec::new();
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    if !hosts.is_empty() {
        parts.push(format!("host={}", hosts.join(",")));
    }
    let ports: Vec<String> = pg.get_ports().iter().map(u16::to_string).collect();
    if !ports.is_empty() {
        parts.push(format!("port={}", ports.join(",")));
    }
    if let Some(user) = pg.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(db) = pg.get_dbname() {
        parts.push(format!("dbname={db}"));
    }
    if pg.get_password().is_some() {
        parts.push("password=********".to_owned());
    }
    parts.join(" ")
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn default_name(pg: &tokio_postgres::Config) -> String {
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(_)) | None => "local".to_owned(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let db = pg.get_dbname().unwrap_or("postgres");
    let raw = format!("{host}-{port}-{db}");
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let mut name: String = trimmed.chars().take(63).collect();
    if name.is_empty() {
        name = "instance".to_owned();
    }
    name
}

async fn serving_agent(state: &AppState, asked: Option<&str>) -> Result<String, ApiError> {
    let agents: Vec<String> =
        sqlx::query_scalar("SELECT id FROM agents WHERE disabled_at IS NULL ORDER BY id")
            .fetch_all(&state.pool)
            .await?;
    match asked {
        Some(a) if agents.iter().any(|x| x == a) => Ok(a.to_owned()),
        Some(a) => Err(ApiError::not_found(format!(
            "no enabled agent with id {a:?}"
        ))),
        None if agents.len() == 1 => Ok(agents[0].clone()),
        None if agents.is_empty() => Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_body",
            "no agent is enrolled yet: an instance is served by an agent",
        )),
        None => Err(ApiError::unprocessable(
            "invalid_body",
            format!(
                "there are {} agents; say which one serves the instance with \"agent\": one of {}",
                agents.len(),
                agents.join(", ")
            ),
        )),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/instances",
    tag = "instances",
    security(("bearer" = [])),
    request_body = AddInstance,
    responses(
        (status = 201, description = "Checked by its agent and saved", body = AddedInstance),
        RunAnswered,
        (status = 202, description = "Saved as validating; its agent has not answered within 30 s. The check run goes on: the instance becomes active when it passes and is removed when it fails or expires", body = crate::runs::RunView),
        (status = 404, description = "No such agent", body = super::openapi::ErrorBody),
        (status = 409, description = "The agent already has an instance of that name", body = super::openapi::ErrorBody),
        (status = 503, description = "Store unavailable or no secrets key", body = super::openapi::ErrorBody),
    )
)]
/// Adds an instance once its agent has checked it. Needs the global admin role.
pub async fn add(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<AddInstance>, JsonRejection>,
) -> Result<Response, ApiError> {
    principal.require(Role::Admin)?;
    let request = body(request)?;
    if request.dsn.chars().count() > MAX_DSN_CHARS {
        return Err(ApiError::bad_request(
            "invalid_dsn",
            "the DSN is longer than 4096 characters",
        ));
    }
    // The parse errors name the problem, never the DSN's text. libpq's TLS keys are
    // accepted; their files are on the agent's host, so they are not read here.
    let pg: tokio_postgres::Config = lasect_pgtls::parse_dsn(&request.dsn)
        .map(|(pg, _)| pg)
        .map_err(|e| {
            ApiError::unprocessable(
                "invalid_dsn",
                format!("the DSN is not a valid connection string: {e}"),
            )
        })?;
    let run_pg =
        match &request.run_dsn {
            Some(run_dsn) if run_dsn.chars().count() > MAX_DSN_CHARS => {
                return Err(ApiError::bad_request(
                    "invalid_dsn",
                    "run_dsn is longer than 4096 characters",
                ));
            }
            Some(run_dsn) => Some(lasect_pgtls::parse_dsn(run_dsn).map(|(pg, _)| pg).map_err(
                |e| {
                    ApiError::unprocessable(
                        "invalid_dsn",
                        format!("run_dsn is not a valid connection string: {e}"),
                    )
                },
            )?),
            None => None,
        };
    let name = match request.name {
        Some(n) if valid_name(&n) => n,
        Some(n) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!("name {n:?} must match [A-Za-z0-9][A-Za-z0-9._-]{{0,62}}"),
            ));
        }
        None => default_name(&pg),
    };
    if !request.labels.values().all(Value::is_string) {
        return Err(ApiError::bad_request(
            "invalid_body",
            "label values must be strings",
        ));
    }
    let keyring = state.keyring("DSNs")?;
    let agent = serving_agent(&state, request.agent.as_deref()).await?;
    // The ciphertexts are bound to the row's id (their associated data), which the insert
    // makes: stored in the same transaction, so no one sees the row without them.
    let mut tx = state.pool.begin().await?;
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO instances (name, agent_id, labels, source, state, dsn_ciphertext, dsn_redacted, \
             run_dsn_ciphertext, run_dsn_redacted, allow_privileged_runs) \
         VALUES ($1, $2, $3, 'api', 'validating', $4, $5, $6, $7, $8) \
         ON CONFLICT (agent_id, name) DO UPDATE SET labels = EXCLUDED.labels, source = 'api', \
             state = 'validating', dsn_ciphertext = EXCLUDED.dsn_ciphertext, \
             dsn_redacted = EXCLUDED.dsn_redacted, \
             run_dsn_ciphertext = EXCLUDED.run_dsn_ciphertext, \
             run_dsn_redacted = EXCLUDED.run_dsn_redacted, \
             allow_privileged_runs = EXCLUDED.allow_privileged_runs \
         WHERE instances.state = 'removed' \
         RETURNING id",
    )
    .bind(&name)
    .bind(&agent)
    .bind(Value::Object(request.labels))
    .bind(None::<Vec<u8>>)
    .bind(redact(&pg))
    .bind(None::<Vec<u8>>)
    .bind(run_pg.as_ref().map(redact))
    .bind(request.allow_privileged_runs)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("agent {agent} already has an instance named {name:?}"),
        ));
    };
    let ciphertext = encrypt_dsn(&keyring, id, &agent, FIELD_DSN, &request.dsn)?;
    let run_ciphertext = match &request.run_dsn {
        Some(run_dsn) => Some(encrypt_dsn(&keyring, id, &agent, FIELD_RUN_DSN, run_dsn)?),
        None => None,
    };
    sqlx::query("UPDATE instances SET dsn_ciphertext = $2, run_dsn_ciphertext = $3 WHERE id = $1")
        .bind(id)
        .bind(ciphertext)
        .bind(run_ciphertext)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    match check(&state, &principal, id).await? {
        Ok(run) => {
            let instance = find(&state, id)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("instance {id} vanished")))?;
            let check = run.summary.unwrap_or(Value::Null);
            Ok((StatusCode::CREATED, Json(AddedInstance { instance, check })).into_response())
        }
        // The agent has not answered yet: the instance stays `validating` until its check
        // ends (active when it passes; removed by the sweeper when it fails or expires).
        Err(answer) if answer.status() == StatusCode::ACCEPTED => Ok(answer),
        Err(answer) => {
            // Nothing is kept of a failed add but the run's history.
            sqlx::query(
                "UPDATE instances SET state = 'removed', dsn_ciphertext = NULL, \
                 run_dsn_ciphertext = NULL WHERE id = $1 AND state = 'validating'",
            )
            .bind(id)
            .execute(&state.pool)
            .await?;
            Ok(answer)
        }
    }
}

/// Encrypts one of an instance's connection strings (`field` is `dsn` or `run_dsn`), bound to
/// the instance and its agent (`lasect_pki::secrets::encrypt_instance_secret`).
fn encrypt_dsn(
    keyring: &lasect_pki::secrets::Keyring,
    id: i64,
    agent: &str,
    field: &str,
    dsn: &str,
) -> Result<Vec<u8>, ApiError> {
    encrypt_instance_secret(keyring, id, agent, field, dsn.as_bytes()).map_err(ApiError::internal)
}

fn instance_check() -> RunParams {
    RunParams::InstanceCheck(InstanceCheckParams {})
}

/// The limits of an `instance_check` or `instance_metadata` run: it expires with the wait.
fn check_limits() -> Result<(i64, i64, i64, i64), ApiError> {
    Ok(RunLimits {
        queue_timeout_s: Some(CHECK_WAIT.as_secs() as i64),
        ..RunLimits::default()
    }
    .resolve(1, 1 << 20)?)
}

/// Queues the `instance_check` of an instance being added and waits for it.
async fn check(
    state: &AppState,
    principal: &Principal,
    id: i64,
) -> Result<Result<RunView, Response>, ApiError> {
    let run = NewRun {
        instance_id: id,
        params: instance_check(),
        requested_by: runs::requested_by(principal),
        limits: check_limits()?,
        input: None,
    };
    ask(state, run, CHECK_WAIT).await
}

async fn detail(state: &AppState, id: i64) -> Result<InstanceDetail, ApiError> {
    let instance = find(state, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no instance with id {id}")))?;
    let (metadata, at, run_dsn_redacted, allow_privileged_runs): (
        Option<Value>,
        Option<DateTime<Utc>>,
        Option<String>,
        bool,
    ) = sqlx::query_as(
        "SELECT metadata, metadata_at, run_dsn_redacted, allow_privileged_runs \
         FROM instances WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&state.pool)
    .await?;
    Ok(InstanceDetail {
        instance,
        metadata,
        metadata_at: at.map(rfc3339),
        run_dsn_redacted,
        allow_privileged_runs,
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}",
    tag = "instances",
    security(("bearer" = [])),
    params(InstancePath),
    responses(
        (status = 200, description = "The instance and its last metadata", body = InstanceDetail),
        ById,
    )
)]
/// Needs viewer on the instance.
pub async fn show(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<InstanceDetail>, ApiError> {
    let id = path_id(path, "instance")?;
    principal
        .require_on_instance(&state.pool, id, Role::Viewer)
        .await?;
    Ok(Json(detail(&state, id).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/instances/{id}",
    tag = "instances",
    security(("bearer" = [])),
    params(InstancePath),
    responses(
        (status = 204, description = "Removed: no longer listed or assigned, DSN erased; its data stays"),
        ById,
        (status = 409, description = "Defined in its agent's config file and still collected", body = super::openapi::ErrorBody),
    )
)]
/// Needs admin on the instance.
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(path, "instance")?;
    principal
        .require_on_instance(&state.pool, id, Role::Admin)
        .await?;
    refuse_removing_a_collected_config_instance(&state, id).await?;
    let done = sqlx::query(
        "UPDATE instances SET state = 'removed', dsn_ciphertext = NULL, run_dsn_ciphertext = NULL \
         WHERE id = $1 AND state <> 'removed'",
    )
    .bind(id)
    .execute(&state.pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("no instance with id {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// How recently the samples of a config-file instance must have arrived for its removal to be
/// refused: a few refresh intervals of ingest's `last_seen`, well above any family's interval.
const STILL_COLLECTED: &str = "15 minutes";

/// An instance defined in an agent's config file is collected by that agent whatever the store
/// says: removing it here while its samples keep arriving would only hide it. 409, naming where
/// it is defined, unless its agent is disabled or has not sent it for [`STILL_COLLECTED`]
/// (ingest brings it back if it reappears).
async fn refuse_removing_a_collected_config_instance(
    state: &AppState,
    id: i64,
) -> Result<(), ApiError> {
    let collected: Option<(String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT i.name, i.agent_id, i.last_seen FROM instances i \
         JOIN agents a ON a.id = i.agent_id \
         WHERE i.id = $1 AND i.source = 'agent' AND i.state <> 'removed' \
           AND a.disabled_at IS NULL AND i.last_seen > now() - $2::interval",
    )
    .bind(id)
    .bind(STILL_COLLECTED)
    .fetch_optional(&state.pool)
    .await?;
    match collected {
        None => Ok(()),
        Some((name, agent, last_seen)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "defined_in_agent_config",
            format!(
                "instance {name:?} is defined in the config file of agent {agent:?} \
                 ([[instances]] name = {name:?}) and its samples still arrive (last at {}): \
                 remove it from that file and restart the agent, then remove it here once \
                 nothing arrives for {STILL_COLLECTED} (or disable the agent)",
                rfc3339(last_seen)
            ),
        )),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/test",
    tag = "instances",
    security(("bearer" = [])),
    params(InstancePath, WaitQuery),
    request_body = CheckRequest,
    responses(
        (status = 200, description = "The agent connected; what works and what does not", body = CheckResult),
        RunAnswered,
    )
)]
/// Has the agent check the instance (`?wait=` default 30 s). Needs user on it.
pub async fn test(call: RunCall<CheckRequest>) -> Result<Response, ApiError> {
    let target = call.target;
    Ok(
        match target
            .ask(instance_check(), check_limits()?, CHECK_WAIT)
            .await?
        {
            Ok(run) => Json(CheckResult {
                run_id: run.id,
                check: run.summary.unwrap_or(Value::Null),
            })
            .into_response(),
            Err(answer) => answer,
        },
    )
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/refresh",
    tag = "instances",
    security(("bearer" = [])),
    params(InstancePath, WaitQuery),
    request_body = CheckRequest,
    responses(
        (status = 200, description = "The instance with fresh metadata", body = InstanceDetail),
        RunAnswered,
    )
)]
/// Has the agent read the instance's metadata again (`?wait=` default 30 s). Needs user on it.
pub async fn refresh(call: RunCall<CheckRequest>) -> Result<Response, ApiError> {
    let target = call.target;
    let params = RunParams::InstanceMetadata(InstanceMetadataParams {});
    Ok(
        match target.ask(params, check_limits()?, CHECK_WAIT).await? {
            Ok(_) => Json(detail(target.state(), target.instance_id).await?).into_response(),
            Err(answer) => answer,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_never_shows_the_password() {
        for dsn in [
            "host=db port=5433 user=app password='p@ss word' dbname=x",
            "postgresql://app:p%40ss%20word@db:5433/x",
            "postgres://app:s3cr'et@db/x?sslmode=disable",
        ] {
            let pg: tokio_postgres::Config = dsn.parse().expect("parses");
            let shown = redact(&pg);
            assert!(
                !shown.contains("p@ss") && !shown.contains("s3cr") && !shown.contains("ss word"),
                "{shown}"
            );
            assert!(
                shown.contains("password=********") && shown.contains("host=db"),
                "{shown}"
            );
        }
    }

    #[test]
    fn default_names_are_valid_agent_names() {
        for dsn in [
            "host=/var/run/postgresql dbname=app",
            "postgresql://u@db.example.com:6432/sales",
            "user=x",
        ] {
            let pg: tokio_postgres::Config = dsn.parse().expect("parses");
            let name = default_name(&pg);
            assert!(valid_name(&name), "{name}");
        }
        assert!(!valid_name("-x") && !valid_name("a b") && !valid_name(""));
    }
}
