//! Backups with pgBackRest (docs/BACKUPS.md): the repository of each stanza of an instance,
//! and the runs the agent serving the instance executes with it.
//!
//! - `GET /api/v1/instances/{id}/backup/repositories`: viewer on the instance; secrets never
//!   leave the store (only whether they are set).
//! - `POST …/backup/repositories`, `DELETE …/backup/repositories/{repo}`: admin on it.
//! - `POST …/backup/repositories/{repo}/stanza|backups|info`: admin on it; each creates a run
//!   (`backup_stanza`, `backup`, `backup_info`) of the agent's opt-in class `backup`.
//!
//! Secrets (the cipher passphrase, an object store's secret key) are encrypted at rest like
//! instance DSNs, bound to the instance, its agent and the stanza.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use lasect_pki::secrets::encrypt_instance_secret;
use lasect_runs::{
    BackupInfoParams, BackupParams, BackupRepo, BackupStanzaParams, BackupType, RunParams,
    StanzaAction,
};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use super::auth_routes::body;
use super::openapi::paths::{InstancePath, RepositoryPath};
use super::openapi::responses::{ById, RunStarted};
use super::runs::{WaitQuery, path_id, positive_id};
use super::{ApiError, AppState};
use crate::auth::{Principal, Role};
use crate::runs::call::{Admin, RunCall, RunTarget};
use crate::runs::{self, RunLimits, RunView};

/// A stanza name: a pgBackRest config section and a command-line value.
const STANZA_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$";
const MAX_TEXT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RepoType {
    Posix,
    S3,
    Gcs,
    Azure,
}

impl RepoType {
    const fn as_str(self) -> &'static str {
        match self {
            RepoType::Posix => "posix",
            RepoType::S3 => "s3",
            RepoType::Gcs => "gcs",
            RepoType::Azure => "azure",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub enum CipherType {
    #[serde(rename = "aes-256-cbc")]
    Aes256Cbc,
}

/// A repository to register for one stanza of the instance.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddRepository {
    /// The pgBackRest stanza (unique per instance).
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    pub stanza: String,
    /// Default `posix`.
    #[serde(default)]
    pub repo_type: Option<RepoType>,
    /// `repo1-path`: an absolute directory on the database host (posix), or the prefix in the
    /// bucket.
    #[schema(pattern = "^/", max_length = 4096)]
    pub path: String,
    /// A pgBackRest config file the agent writes and keeps, for the server's
    /// `archive_command` (`pgbackrest --config=<file> --stanza=<stanza> archive-push %p`).
    #[schema(pattern = "^/.*\\.conf$", max_length = 4096)]
    pub config_path: Option<String>,
    #[schema(max_length = 4096)]
    pub bucket: Option<String>,
    #[schema(max_length = 4096)]
    pub endpoint: Option<String>,
    #[schema(max_length = 4096)]
    pub region: Option<String>,
    #[schema(max_length = 4096)]
    pub key_id: Option<String>,
    /// The object store's secret key: stored encrypted, never returned.
    #[schema(max_length = 4096)]
    pub secret_key: Option<String>,
    pub cipher_type: Option<CipherType>,
    /// With `cipher_type`: stored encrypted, never returned.
    #[schema(max_length = 4096)]
    pub cipher_pass: Option<String>,
    #[serde(default, deserialize_with = "crate::routes::json_integer::option")]
    #[schema(minimum = 1, maximum = 9999999)]
    pub retention_full: Option<i32>,
    #[serde(default, deserialize_with = "crate::routes::json_integer::option")]
    #[schema(minimum = 1, maximum = 9999999)]
    pub retention_diff: Option<i32>,
    /// `repo1-retention-full-type`: `count` (default) or `time` (retention_full in days).
    pub retention_full_type: Option<RetentionType>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RetentionType {
    Count,
    Time,
}

impl RetentionType {
    const fn as_str(self) -> &'static str {
        match self {
            RetentionType::Count => "count",
            RetentionType::Time => "time",
        }
    }
}

/// A registered repository, without its secrets.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Repository {
    pub id: i64,
    pub instance_id: i64,
    pub stanza: String,
    pub repo_type: String,
    pub path: String,
    pub config_path: Option<String>,
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub key_id: Option<String>,
    /// Whether a secret key is stored (it is never shown).
    pub has_secret_key: bool,
    pub cipher_type: Option<String>,
    /// Whether a cipher passphrase is stored (it is never shown).
    pub has_cipher_pass: bool,
    pub retention_full: Option<i32>,
    pub retention_diff: Option<i32>,
    /// `count` or `time`; absent: pgBackRest's default (`count`).
    pub retention_full_type: Option<String>,
    pub created_at: String,
    pub created_by: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RepositoryList {
    pub repositories: Vec<Repository>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StanzaRequest {
    /// `create`, `upgrade` or `check` (check also reports what is wrong with archiving).
    pub action: StanzaVerb,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StanzaVerb {
    Create,
    Upgrade,
    Check,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    #[serde(rename = "type")]
    pub backup_type: BackupKind,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    Full,
    Diff,
    Incr,
}

/// The columns of a [`Repository`] (never a ciphertext), then `$tail`.
macro_rules! select {
    ($tail:literal) => {
        concat!("SELECT id, instance_id, stanza, repo_type, path, config_path, bucket, \
    endpoint, region, key_id, secret_key_ciphertext IS NOT NULL AS has_secret_key, cipher_type, \
    cipher_pass_ciphertext IS NOT NULL AS has_cipher_pass, retention_full, retention_diff, \
    retention_full_type, \
    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at, \
    created_by FROM backup_repositories ",
            $tail
        )
    };
}

fn repository(r: &sqlx::postgres::PgRow) -> Result<Repository, sqlx::Error> {
    Ok(Repository {
        id: r.try_get("id")?,
        instance_id: r.try_get("instance_id")?,
        stanza: r.try_get("stanza")?,
        repo_type: r.try_get("repo_type")?,
        path: r.try_get("path")?,
        config_path: r.try_get("config_path")?,
        bucket: r.try_get("bucket")?,
        endpoint: r.try_get("endpoint")?,
        region: r.try_get("region")?,
        key_id: r.try_get("key_id")?,
        has_secret_key: r.try_get("has_secret_key")?,
        cipher_type: r.try_get("cipher_type")?,
        has_cipher_pass: r.try_get("has_cipher_pass")?,
        retention_full: r.try_get("retention_full")?,
        retention_diff: r.try_get("retention_diff")?,
        retention_full_type: r.try_get("retention_full_type")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
    })
}

/// `{id}` and `{repo}` of a route that only the instance's admins may use, once the caller
/// is known to be one.
async fn admin_ids(
    state: &AppState,
    principal: &Principal,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(i64, i64), ApiError> {
    let Path((id, repo)) =
        path.map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    let (id, repo) = (
        positive_id(&id, "instance")?,
        positive_id(&repo, "repository")?,
    );
    principal
        .require_on_instance(&state.pool, id, Role::Admin)
        .await?;
    Ok((id, repo))
}

/// The instance's agent, or 404 (a global admin passes the role check without one).
async fn instance_agent(state: &AppState, id: i64) -> Result<String, ApiError> {
    sqlx::query_scalar("SELECT agent_id FROM instances WHERE id = $1 AND state <> 'removed'")
        .bind(id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no instance with id {id}")))
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/backup/repositories",
    tag = "backups",
    security(("bearer" = [])),
    params(InstancePath),
    responses(
        (status = 200, description = "The instance's repositories, without secrets", body = RepositoryList),
        ById,
    )
)]
/// Needs viewer on the instance.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RepositoryList>, ApiError> {
    let id = path_id(path, "instance")?;
    principal
        .require_on_instance(&state.pool, id, Role::Viewer)
        .await?;
    instance_agent(&state, id).await?;
    let rows = sqlx::query(select!("WHERE instance_id = $1 ORDER BY stanza"))
        .bind(id)
        .fetch_all(&state.pool)
        .await?;
    let repositories = rows.iter().map(repository).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(RepositoryList { repositories }))
}

/// What the schema cannot say about a new repository: 422 with the reason.
fn check_repository(r: &AddRepository) -> Result<RepoType, ApiError> {
    let bad = |m: String| ApiError::unprocessable("invalid_repository", m);
    if r.retention_full_type == Some(RetentionType::Time) && r.retention_full.is_none() {
        return Err(bad(
            "retention_full_type time needs retention_full (the days full backups are kept)".into(),
        ));
    }
    for (name, value) in [
        ("path", Some(&r.path)),
        ("config_path", r.config_path.as_ref()),
        ("bucket", r.bucket.as_ref()),
        ("endpoint", r.endpoint.as_ref()),
        ("region", r.region.as_ref()),
        ("key_id", r.key_id.as_ref()),
        ("secret_key", r.secret_key.as_ref()),
        ("cipher_pass", r.cipher_pass.as_ref()),
    ] {
        if let Some(v) = value {
            if v.chars().count() > MAX_TEXT {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    format!("{name} must have at most {MAX_TEXT} characters"),
                ));
            }
            if v.contains(['\n', '\r', '\0']) {
                return Err(bad(format!("{name} must be one line")));
            }
        }
    }
    // The document's patterns (`^/`, `^/.*\.conf$`): breaking them is a bad body.
    if !r.path.starts_with('/') {
        return Err(ApiError::bad_request(
            "invalid_body",
            "path must be absolute (start with /)",
        ));
    }
    if let Some(c) = &r.config_path
        && !(c.starts_with('/') && c.ends_with(".conf"))
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            "config_path must be an absolute path ending in .conf",
        ));
    }
    if r.path.split('/').any(|part| part == "..") {
        return Err(bad("path must not contain `..`".into()));
    }
    let repo_type = r.repo_type.unwrap_or(RepoType::Posix);
    match (r.cipher_type, &r.cipher_pass) {
        (Some(_), Some(p)) if p.chars().count() >= 16 => {}
        (Some(_), Some(_)) => {
            return Err(bad("cipher_pass must have at least 16 characters".into()));
        }
        (Some(_), None) => return Err(bad("cipher_type needs a cipher_pass".into())),
        (None, Some(_)) => return Err(bad("cipher_pass needs a cipher_type".into())),
        (None, None) => {}
    }
    if repo_type != RepoType::Posix && (r.bucket.is_none() || r.region.is_none()) {
        return Err(bad(format!(
            "a {} repository needs a bucket and a region",
            repo_type.as_str()
        )));
    }
    if repo_type == RepoType::Posix
        && (r.bucket.is_some()
            || r.endpoint.is_some()
            || r.region.is_some()
            || r.key_id.is_some()
            || r.secret_key.is_some())
    {
        return Err(bad(
            "a posix repository takes no bucket, endpoint, region, key_id or secret_key".into(),
        ));
    }
    Ok(repo_type)
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/backup/repositories",
    tag = "backups",
    security(("bearer" = [])),
    params(InstancePath),
    request_body = AddRepository,
    responses(
        (status = 201, description = "Registered (secrets stored encrypted, not shown)", body = Repository),
        ById,
        (status = 409, description = "The instance already has a repository for this stanza", body = super::openapi::ErrorBody),
        (status = 422, description = "Inconsistent repository (e.g. a cipher without passphrase)", body = super::openapi::ErrorBody),
    )
)]
/// Needs admin on the instance.
pub async fn add(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    request: Result<Json<AddRepository>, JsonRejection>,
) -> Result<(StatusCode, Json<Repository>), ApiError> {
    let id = path_id(path, "instance")?;
    principal
        .require_on_instance(&state.pool, id, Role::Admin)
        .await?;
    let r = body(request)?;
    if !valid_stanza_name(&r.stanza) {
        // Regex engines where `$` also matches before a final newline accept "main\n": the
        // document's pattern allows it, the stanza cannot be.
        if r.stanza.strip_suffix('\n').is_some_and(valid_stanza_name) {
            return Err(ApiError::unprocessable(
                "invalid_repository",
                "stanza must not end with a newline",
            ));
        }
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("stanza must match {STANZA_PATTERN}"),
        ));
    }
    for (name, value) in [
        ("retention_full", r.retention_full),
        ("retention_diff", r.retention_diff),
    ] {
        if value.is_some_and(|n| !(1..=9_999_999).contains(&n)) {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!("{name} must be 1..=9999999"),
            ));
        }
    }
    let repo_type = check_repository(&r)?;
    let agent = instance_agent(&state, id).await?;
    let secret_key = encrypt(&state, id, &agent, &r.stanza, "secret_key", &r.secret_key)?;
    let cipher_pass = encrypt(&state, id, &agent, &r.stanza, "cipher_pass", &r.cipher_pass)?;
    let inserted = sqlx::query_scalar::<_, i64>(
        "INSERT INTO backup_repositories (instance_id, stanza, repo_type, path, config_path, \
         bucket, endpoint, region, key_id, secret_key_ciphertext, cipher_type, \
         cipher_pass_ciphertext, retention_full, retention_diff, created_by, \
         retention_full_type) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (instance_id, stanza) DO NOTHING RETURNING id",
    )
    .bind(id)
    .bind(&r.stanza)
    .bind(repo_type.as_str())
    .bind(&r.path)
    .bind(&r.config_path)
    .bind(&r.bucket)
    .bind(&r.endpoint)
    .bind(&r.region)
    .bind(&r.key_id)
    .bind(secret_key)
    .bind(r.cipher_type.map(|_| "aes-256-cbc"))
    .bind(cipher_pass)
    .bind(r.retention_full)
    .bind(r.retention_diff)
    .bind(runs::requested_by(&principal))
    .bind(r.retention_full_type.map(RetentionType::as_str))
    .fetch_optional(&state.pool)
    .await?;
    let Some(repo) = inserted else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "repository_exists",
            format!(
                "instance {id} already has a repository for stanza {:?}; remove it first",
                r.stanza
            ),
        ));
    };
    Ok((StatusCode::CREATED, Json(fetch(&state, id, repo).await?)))
}

pub(crate) fn valid_stanza_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

fn encrypt(
    state: &AppState,
    id: i64,
    agent: &str,
    stanza: &str,
    field: &str,
    secret: &Option<String>,
) -> Result<Option<Vec<u8>>, ApiError> {
    let Some(secret) = secret else {
        return Ok(None);
    };
    let keyring = state.keyring("repository secrets")?;
    encrypt_instance_secret(
        &keyring,
        id,
        agent,
        &format!("backup:{stanza}:{field}"),
        secret.as_bytes(),
    )
    .map(Some)
    .map_err(ApiError::internal)
}

async fn fetch(state: &AppState, id: i64, repo: i64) -> Result<Repository, ApiError> {
    let row = sqlx::query(select!("WHERE instance_id = $1 AND id = $2"))
        .bind(id)
        .bind(repo)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("instance {id} has no backup repository {repo}"))
        })?;
    Ok(repository(&row)?)
}

#[utoipa::path(
    delete,
    path = "/api/v1/instances/{id}/backup/repositories/{repo}",
    tag = "backups",
    security(("bearer" = [])),
    params(RepositoryPath),
    responses(
        (status = 204, description = "Removed from Lasect (the backups stay in the repository)"),
        ById,
    )
)]
/// Needs admin on the instance.
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (id, repo) = admin_ids(&state, &principal, path).await?;
    let removed = sqlx::query("DELETE FROM backup_repositories WHERE instance_id = $1 AND id = $2")
        .bind(id)
        .bind(repo)
        .execute(&state.pool)
        .await?
        .rows_affected();
    if removed == 0 {
        return Err(ApiError::not_found(format!(
            "instance {id} has no backup repository {repo}"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The repository as the agent needs it; 422 for what this version cannot hand it yet.
pub(super) async fn repo_for_run(
    state: &AppState,
    id: i64,
    repo: i64,
) -> Result<(String, BackupRepo), ApiError> {
    let r = fetch(state, id, repo).await?;
    if r.repo_type != "posix" || r.has_secret_key {
        return Err(ApiError::unprocessable(
            "repository_not_supported_yet",
            format!(
                "repository {repo} is {}: this version runs pgBackRest on posix repositories \
                 only (object store keys are not handed to agents yet)",
                r.repo_type
            ),
        ));
    }
    let to_u32 = |v: Option<i32>| v.and_then(|n| u32::try_from(n).ok());
    Ok((
        r.stanza,
        BackupRepo {
            repository_id: Some(r.id),
            path: r.path,
            config_path: r.config_path,
            cipher_type: r.cipher_type,
            retention_full: to_u32(r.retention_full),
            retention_diff: to_u32(r.retention_diff),
            retention_full_type: r.retention_full_type,
            // Added by ingest on delivery: never in `runs.params`.
            cipher_pass: None,
        },
    ))
}

/// Backups run long: the longest timeout the API allows (the agent clamps it to its own
/// `max_timeout_secs`).
pub(super) fn backup_limits() -> Result<(i64, i64, i64, i64), ApiError> {
    Ok(RunLimits {
        timeout_ms: Some(runs::MAX_TIMEOUT_MS),
        ..RunLimits::default()
    }
    .resolve(1, 1 << 20)?)
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/backup/repositories/{repo}/stanza",
    tag = "backups",
    security(("bearer" = [])),
    params(RepositoryPath, WaitQuery),
    request_body = StanzaRequest,
    responses(
        RunStarted,
    )
)]
/// Needs admin on the instance.
pub async fn stanza(
    call: RunCall<StanzaRequest, Admin>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let RunCall { target, body: r } = call;
    let (stanza, repo) =
        repo_for_run(target.state(), target.instance_id, target.id("repo")?).await?;
    let action = match r.action {
        StanzaVerb::Create => StanzaAction::Create,
        StanzaVerb::Upgrade => StanzaAction::Upgrade,
        StanzaVerb::Check => StanzaAction::Check,
    };
    let params = RunParams::BackupStanza(BackupStanzaParams {
        stanza,
        action,
        repo,
    });
    target.start(params, backup_limits()?).await
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/backup/repositories/{repo}/backups",
    tag = "backups",
    security(("bearer" = [])),
    params(RepositoryPath, WaitQuery),
    request_body = BackupRequest,
    responses(
        RunStarted,
        (status = 200, description = "The run, ended; summary.backup is the new backup", body = RunView),
        (status = 409, description = "A backup of this stanza is already queued or running, or the agent is disabled", body = super::openapi::ErrorBody),
    )
)]
/// Needs admin on the instance.
pub async fn backup(
    call: RunCall<BackupRequest, Admin>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let RunCall { target, body: r } = call;
    let (state, id) = (target.state(), target.instance_id);
    let (stanza, repo) = repo_for_run(state, id, target.id("repo")?).await?;
    let backup_type = match r.backup_type {
        BackupKind::Full => BackupType::Full,
        BackupKind::Diff => BackupType::Diff,
        BackupKind::Incr => BackupType::Incr,
    };
    let params = RunParams::Backup(BackupParams {
        stanza: stanza.clone(),
        backup_type,
        repo,
    });
    // The store's unique index (migrations V26) settles a race between two API processes;
    // this answers the common case with the run in the way.
    let running: Option<(i64, String)> = sqlx::query_as(
        "SELECT id, status FROM runs WHERE instance_id = $1 AND kind = 'backup' \
         AND params ->> 'stanza' = $2 AND status IN ('queued', 'dispatched', 'running') LIMIT 1",
    )
    .bind(id)
    .bind(&stanza)
    .fetch_optional(&state.pool)
    .await?;
    let busy = |run: Option<(i64, String)>| {
        let what = run.map_or_else(
            || "another backup".to_owned(),
            |(run, status)| format!("backup run {run} ({status})"),
        );
        ApiError::new(
            StatusCode::CONFLICT,
            "backup_running",
            format!(
                "stanza {stanza:?} of instance {id} is being backed up by {what}: wait for it \
                 to end or cancel it (POST /api/v1/runs/{{id}}/cancel)"
            ),
        )
    };
    if running.is_some() {
        return Err(busy(running));
    }
    match target.start(params, backup_limits()?).await {
        // Lost the race to another API process: its run holds the unique index.
        Err(e) if e.status() == StatusCode::INTERNAL_SERVER_ERROR => {
            let now: Option<(i64, String)> = sqlx::query_as(
                "SELECT id, status FROM runs WHERE instance_id = $1 AND kind = 'backup' \
                 AND params ->> 'stanza' = $2 AND status IN ('queued', 'dispatched', 'running') \
                 LIMIT 1",
            )
            .bind(id)
            .bind(&stanza)
            .fetch_optional(&state.pool)
            .await?;
            Err(if now.is_some() { busy(now) } else { e })
        }
        other => other,
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/backup/repositories/{repo}/info",
    tag = "backups",
    security(("bearer" = [])),
    params(RepositoryPath, WaitQuery),
    responses(
        RunStarted,
        (status = 200, description = "The run, ended; summary is the catalogue (backups with type, label, times, sizes, WAL and LSN range; the archive's WAL range)", body = RunView),
    )
)]
/// Needs admin on the instance.
pub async fn info(target: RunTarget<Admin>) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let (stanza, repo) =
        repo_for_run(target.state(), target.instance_id, target.id("repo")?).await?;
    let params = RunParams::BackupInfo(BackupInfoParams { stanza, repo });
    target.start(params, backup_limits()?).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn repo(body: serde_json::Value) -> AddRepository {
        serde_json::from_value(body).expect("a body")
    }

    fn refusal(body: serde_json::Value) -> (StatusCode, String) {
        let e = check_repository(&repo(body)).expect_err("refused");
        (e.status(), e.message().to_owned())
    }

    #[test]
    fn what_the_schema_cannot_say_is_422_and_what_it_says_is_400() {
        assert_eq!(
            check_repository(&repo(json!({"stanza": "main", "path": "/r"}))).ok(),
            Some(RepoType::Posix)
        );
        let cases = [
            (
                json!({"stanza": "m", "path": "/r", "cipher_type": "aes-256-cbc"}),
                422,
                "cipher_pass",
            ),
            (
                json!({"stanza": "m", "path": "/r", "cipher_type": "aes-256-cbc", "cipher_pass": "short"}),
                422,
                "16",
            ),
            (
                json!({"stanza": "m", "path": "/r", "cipher_pass": "a-long-enough-passphrase"}),
                422,
                "cipher_type",
            ),
            (
                json!({"stanza": "m", "path": "/r", "repo_type": "s3"}),
                422,
                "bucket",
            ),
            (
                json!({"stanza": "m", "path": "/r", "bucket": "b"}),
                422,
                "posix",
            ),
            (json!({"stanza": "m", "path": "/a/../b"}), 422, ".."),
            (
                json!({"stanza": "m", "path": "/r", "retention_full_type": "time"}),
                422,
                "days",
            ),
            (
                json!({"stanza": "m", "path": "/r\n[global]"}),
                422,
                "one line",
            ),
            (json!({"stanza": "m", "path": "relative"}), 400, "absolute"),
            (
                json!({"stanza": "m", "path": "/r", "config_path": "/etc/x.txt"}),
                400,
                ".conf",
            ),
        ];
        for (body, status, needle) in cases {
            let (got, message) = refusal(body.clone());
            assert_eq!(got.as_u16(), status, "{body}: {message}");
            assert!(message.contains(needle), "{body}: {message}");
        }
    }

    #[test]
    fn stanza_names_follow_the_documented_pattern() {
        assert!(valid_stanza_name("main-16.a_b"));
        for bad in ["", "-x", "a b", "a]", &"x".repeat(65)] {
            assert!(!valid_stanza_name(bad), "{bad:?}");
        }
    }
}
