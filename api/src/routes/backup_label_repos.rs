//! Repositories registered for a label (docs/BACKUPS.md, "Repositories for a label"): one
//! repository serves every instance whose labels hold `label_key` = `label_value`, instances
//! gaining the label later included, each with its own stanza.
//!
//! - `GET /api/v1/backup/label-repositories`: those of the labels the caller views (viewer
//!   globally or by a grant on the label), with the instances each serves that the caller views.
//! - `POST /api/v1/backup/label-repositories`: admin globally or on exactly that label.
//! - `DELETE /api/v1/backup/label-repositories/{id}`: the same admin; the instances' rows go with
//!   it (their backups stay in the repository).
//!
//! Each instance served gets a row of `backup_repositories` (`label_repository_id`), so its
//! runs, schedules, catalogue, restores and drills are those of any repository. [`sync`] keeps
//! the rows in step with the labels: right after a registration, and every few seconds in every
//! API process ([`run`]; inserts are `ON CONFLICT DO NOTHING`, so processes never clash). An
//! instance that already has its own repository for the stanza keeps it. The template's
//! secrets are encrypted bound to the template; each row's copies bound to its instance, its
//! agent and the stanza, like any repository's (ingest hands them to that agent only).

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use lasect_pki::secrets::{KeyFile, Keyring};
use serde::Serialize;
use sqlx::{PgPool, Row as _};

use super::backups::{
    AddLabelRepository, AddRepository, CipherType, NewRow, RepoType, RetentionType,
    check_repository, insert_row, parse_repository, valid_stanza_name,
};
use super::openapi::responses::{ById, Filtered};
use super::runs::path_id;
use super::{ApiError, AppState};
use crate::auth::{Principal, Role};

/// How often every API process brings the rows in step with the labels.
const SYNC_EVERY: Duration = Duration::from_secs(5);

/// A repository registered for a label, without its secrets.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LabelRepository {
    pub id: i64,
    pub label_key: String,
    pub label_value: String,
    /// The stanza of every instance served; absent: each instance's is derived from its name.
    pub stanza: Option<String>,
    pub repo_type: String,
    pub path: String,
    pub config_path: Option<String>,
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub key_id: Option<String>,
    pub key_type: Option<String>,
    pub uri_style: Option<String>,
    pub storage_port: Option<i32>,
    pub verify_tls: Option<bool>,
    pub ca_file: Option<String>,
    /// Whether a secret key is stored (it is never shown).
    pub has_secret_key: bool,
    pub cipher_type: Option<String>,
    /// Whether a cipher passphrase is stored (it is never shown).
    pub has_cipher_pass: bool,
    pub retention_full: Option<i32>,
    pub retention_diff: Option<i32>,
    pub retention_full_type: Option<String>,
    /// The instances it serves (those the caller views).
    pub instances: Vec<Served>,
    pub created_at: String,
    pub created_by: String,
}

/// An instance a label repository serves, and the repository it has for it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Served {
    pub instance_id: i64,
    pub instance_name: String,
    pub stanza: String,
    /// Its `backup_repositories` id: the `{repo}` of the instance's backup routes.
    pub repository_id: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LabelRepositoryList {
    pub label_repositories: Vec<LabelRepository>,
}

const SELECT: &str = "SELECT id, label_key, label_value, stanza, repo_type, path, config_path, \
     bucket, endpoint, region, key_id, key_type, uri_style, storage_port, verify_tls, ca_file, \
     secret_key_ciphertext IS NOT NULL AS has_secret_key, cipher_type, \
     cipher_pass_ciphertext IS NOT NULL AS has_cipher_pass, retention_full, retention_diff, \
     retention_full_type, \
     to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at, \
     created_by FROM backup_label_repositories";

fn label_repository(r: &sqlx::postgres::PgRow) -> Result<LabelRepository, sqlx::Error> {
    Ok(LabelRepository {
        id: r.try_get("id")?,
        label_key: r.try_get("label_key")?,
        label_value: r.try_get("label_value")?,
        stanza: r.try_get("stanza")?,
        repo_type: r.try_get("repo_type")?,
        path: r.try_get("path")?,
        config_path: r.try_get("config_path")?,
        bucket: r.try_get("bucket")?,
        endpoint: r.try_get("endpoint")?,
        region: r.try_get("region")?,
        key_id: r.try_get("key_id")?,
        key_type: r.try_get("key_type")?,
        uri_style: r.try_get("uri_style")?,
        storage_port: r.try_get("storage_port")?,
        verify_tls: r.try_get("verify_tls")?,
        ca_file: r.try_get("ca_file")?,
        has_secret_key: r.try_get("has_secret_key")?,
        cipher_type: r.try_get("cipher_type")?,
        has_cipher_pass: r.try_get("has_cipher_pass")?,
        retention_full: r.try_get("retention_full")?,
        retention_diff: r.try_get("retention_diff")?,
        retention_full_type: r.try_get("retention_full_type")?,
        instances: Vec::new(),
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
    })
}

fn label(key: &str, value: &str) -> serde_json::Value {
    let mut labels = serde_json::Map::new();
    labels.insert(key.to_owned(), serde_json::Value::String(value.to_owned()));
    serde_json::Value::Object(labels)
}

fn may(principal: &Principal, labels: &serde_json::Value, role: Role) -> bool {
    principal.role_for_labels(labels).is_some_and(|r| r >= role)
}

/// The associated data of a template's secret: bound to the template row and the field.
pub(crate) fn template_aad(id: i64, field: &str) -> Vec<u8> {
    format!("lasect-backup-label-repository:v1|{field}|{id}").into_bytes()
}

/// Encrypts a template's secret (`secret_key`, `cipher_pass`).
pub(crate) fn seal_template(
    keyring: &Keyring,
    id: i64,
    field: &str,
    plain: &str,
) -> Result<Vec<u8>, lasect_pki::secrets::SecretsError> {
    keyring.encrypt(plain.as_bytes(), &template_aad(id, field))
}

/// Decrypts what [`seal_template`] made.
pub(crate) fn open_template(
    keyring: &Keyring,
    id: i64,
    field: &str,
    ciphertext: &[u8],
) -> Result<String, lasect_pki::secrets::SecretsError> {
    keyring.decrypt_string(ciphertext, &template_aad(id, field))
}

/// The instances each label repository serves, by label repository.
async fn served(pool: &PgPool) -> Result<HashMap<i64, Vec<(Served, serde_json::Value)>>, ApiError> {
    let rows = sqlx::query(
        "SELECT b.label_repository_id, b.instance_id, i.name, b.stanza, b.id, \
                coalesce(i.labels, '{}') AS labels \
         FROM backup_repositories b JOIN instances i ON i.id = b.instance_id \
         WHERE b.label_repository_id IS NOT NULL ORDER BY i.name, b.id",
    )
    .fetch_all(pool)
    .await?;
    let mut by: HashMap<i64, Vec<(Served, serde_json::Value)>> = HashMap::new();
    for r in rows {
        by.entry(r.try_get(0)?).or_default().push((
            Served {
                instance_id: r.try_get(1)?,
                instance_name: r.try_get(2)?,
                stanza: r.try_get(3)?,
                repository_id: r.try_get(4)?,
            },
            r.try_get(5)?,
        ));
    }
    Ok(by)
}

#[utoipa::path(
    get,
    path = "/api/v1/backup/label-repositories",
    tag = "backups",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The label repositories the caller may view, with the instances each serves, without secrets", body = LabelRepositoryList),
        Filtered,
    )
)]
/// Viewer globally or on the label.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<LabelRepositoryList>, ApiError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SELECT} ORDER BY label_key, label_value, id"
    )))
    .fetch_all(&state.pool)
    .await?;
    let mut served = served(&state.pool).await?;
    let mut out = Vec::new();
    for r in &rows {
        let mut repo = label_repository(r)?;
        if !may(
            &principal,
            &label(&repo.label_key, &repo.label_value),
            Role::Viewer,
        ) {
            continue;
        }
        repo.instances = served
            .remove(&repo.id)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, labels)| may(&principal, labels, Role::Viewer))
            .map(|(s, _)| s)
            .collect();
        out.push(repo);
    }
    Ok(Json(LabelRepositoryList {
        label_repositories: out,
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/backup/label-repositories",
    tag = "backups",
    security(("bearer" = [])),
    request_body = AddLabelRepository,
    responses(
        (status = 201, description = "Registered, with the instances it serves already (secrets stored encrypted, not shown)", body = LabelRepository),
        Filtered,
        (status = 422, description = "Inconsistent repository (e.g. a cipher without passphrase)", body = super::openapi::ErrorBody),
    )
)]
/// Admin globally or on exactly that label.
pub async fn add(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<(StatusCode, Json<LabelRepository>), ApiError> {
    let (r, present) = parse_repository(request)?;
    let repo_type = check_repository(&r, &present, true)?;
    let (Some(key), Some(value)) = (&r.label_key, &r.label_value) else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "label_key and label_value are required",
        ));
    };
    if !may(&principal, &label(key, value), Role::Admin) {
        return Err(ApiError::forbidden(format!(
            "a repository for label {key}={value} needs role admin globally or on that label"
        )));
    }
    let keyring = state.keyring("repository secrets")?;
    let mut tx = state.pool.begin().await?;
    // The id first: the secrets are bound to it.
    let id: i64 = sqlx::query_scalar(
        "SELECT nextval(pg_get_serial_sequence('backup_label_repositories', 'id'))",
    )
    .fetch_one(&mut *tx)
    .await?;
    let seal = |field: &str, secret: &Option<String>| {
        secret
            .as_deref()
            .map(|s| seal_template(&keyring, id, field, s))
            .transpose()
            .map_err(ApiError::internal)
    };
    sqlx::query(
        "INSERT INTO backup_label_repositories (id, label_key, label_value, stanza, repo_type, \
         path, config_path, bucket, endpoint, region, key_id, key_type, uri_style, storage_port, \
         verify_tls, ca_file, secret_key_ciphertext, cipher_type, cipher_pass_ciphertext, \
         retention_full, retention_diff, retention_full_type, created_by) \
         OVERRIDING SYSTEM VALUE \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
                 $19, $20, $21, $22, $23)",
    )
    .bind(id)
    .bind(key)
    .bind(value)
    .bind(&r.stanza)
    .bind(repo_type.as_str())
    .bind(&r.path)
    .bind(&r.config_path)
    .bind(&r.bucket)
    .bind(&r.endpoint)
    .bind(&r.region)
    .bind(&r.key_id)
    .bind(&r.key_type)
    .bind(&r.uri_style)
    .bind(r.storage_port)
    .bind(r.verify_tls)
    .bind(&r.ca_file)
    .bind(seal("secret_key", &r.secret_key)?)
    .bind(r.cipher_type.map(|_| "aes-256-cbc"))
    .bind(seal("cipher_pass", &r.cipher_pass)?)
    .bind(r.retention_full)
    .bind(r.retention_diff)
    .bind(r.retention_full_type.map(RetentionType::as_str))
    .bind(crate::runs::requested_by(&principal))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sync(&state.pool, &keyring).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
        .bind(id)
        .fetch_one(&state.pool)
        .await?;
    let mut repo = label_repository(&row)?;
    repo.instances = served(&state.pool)
        .await?
        .remove(&id)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, labels)| may(&principal, labels, Role::Viewer))
        .map(|(s, _)| s)
        .collect();
    Ok((StatusCode::CREATED, Json(repo)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/backup/label-repositories/{id}",
    tag = "backups",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Label repository id")),
    responses(
        (status = 204, description = "Removed, with the instances' repositories it made (the backups stay in the repository)"),
        ById,
    )
)]
/// Admin globally or on the label.
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(path, "label repository")?;
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT label_key, label_value FROM backup_label_repositories WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    let missing = || ApiError::not_found(format!("no label repository {id}"));
    let (key, value) = row.ok_or_else(missing)?;
    let labels = label(&key, &value);
    if !may(&principal, &labels, Role::Viewer) {
        return Err(missing());
    }
    if !may(&principal, &labels, Role::Admin) {
        return Err(ApiError::forbidden(format!(
            "removing the repository of label {key}={value} needs role admin globally or on \
             that label"
        )));
    }
    sqlx::query("DELETE FROM backup_label_repositories WHERE id = $1")
        .bind(id)
        .execute(&state.pool)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A stanza from an instance's name: its characters pgBackRest does not take become `-`.
pub(crate) fn stanza_of(name: &str, instance_id: i64) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed: String = mapped
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .take(64)
        .collect();
    if valid_stanza_name(&trimmed) {
        trimmed
    } else {
        format!("instance-{instance_id}")
    }
}

/// Brings the rows of every label repository in step with the instances' labels: a row for
/// each instance carrying the label (not removed), none for the others. Returns how many rows
/// were added and removed.
pub async fn sync(pool: &PgPool, keyring: &Keyring) -> Result<(u64, u64), ApiError> {
    let templates = sqlx::query(
        "SELECT id, label_key, label_value, stanza, repo_type, path, config_path, bucket, \
                endpoint, region, key_id, key_type, uri_style, storage_port, verify_tls, \
                ca_file, secret_key_ciphertext, cipher_type, cipher_pass_ciphertext, \
                retention_full, retention_diff, retention_full_type, created_by \
         FROM backup_label_repositories ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    let (mut added, mut removed) = (0, 0);
    for t in templates {
        let id: i64 = t.try_get("id")?;
        let key: String = t.try_get("label_key")?;
        let value: String = t.try_get("label_value")?;
        removed += sqlx::query(
            "DELETE FROM backup_repositories b WHERE b.label_repository_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = b.instance_id \
                             AND i.state <> 'removed' AND i.labels ->> $2 = $3)",
        )
        .bind(id)
        .bind(&key)
        .bind(&value)
        .execute(pool)
        .await?
        .rows_affected();
        let wanting: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT i.id, i.name, i.agent_id FROM instances i \
             WHERE i.state <> 'removed' AND i.labels ->> $2 = $3 \
               AND NOT EXISTS (SELECT 1 FROM backup_repositories b \
                               WHERE b.instance_id = i.id AND b.label_repository_id = $1) \
             ORDER BY i.id",
        )
        .bind(id)
        .bind(&key)
        .bind(&value)
        .fetch_all(pool)
        .await?;
        if wanting.is_empty() {
            continue;
        }
        let open = |field: &str| -> Result<Option<String>, ApiError> {
            let c: Option<Vec<u8>> = t.try_get(format!("{field}_ciphertext").as_str())?;
            c.map(|c| open_template(keyring, id, field, &c))
                .transpose()
                .map_err(|e| {
                    ApiError::internal(format!(
                        "label repository {id}: its {field} does not decrypt ({e})"
                    ))
                })
        };
        let secret_key = open("secret_key")?;
        let cipher_pass = open("cipher_pass")?;
        let repo_type = match t.try_get::<String, _>("repo_type")?.as_str() {
            "s3" => RepoType::S3,
            "azure" => RepoType::Azure,
            "gcs" => RepoType::Gcs,
            _ => RepoType::Posix,
        };
        let spec = AddRepository {
            path: t.try_get("path")?,
            config_path: t.try_get("config_path")?,
            bucket: t.try_get("bucket")?,
            endpoint: t.try_get("endpoint")?,
            region: t.try_get("region")?,
            key_id: t.try_get("key_id")?,
            key_type: t.try_get("key_type")?,
            uri_style: t.try_get("uri_style")?,
            storage_port: t.try_get("storage_port")?,
            verify_tls: t.try_get("verify_tls")?,
            ca_file: t.try_get("ca_file")?,
            cipher_type: t
                .try_get::<Option<String>, _>("cipher_type")?
                .map(|_| CipherType::Aes256Cbc),
            retention_full: t.try_get("retention_full")?,
            retention_diff: t.try_get("retention_diff")?,
            retention_full_type: match t
                .try_get::<Option<String>, _>("retention_full_type")?
                .as_deref()
            {
                Some("time") => Some(RetentionType::Time),
                Some(_) => Some(RetentionType::Count),
                None => None,
            },
            ..AddRepository::default()
        };
        let given: Option<String> = t.try_get("stanza")?;
        let created_by = format!("label-repository:{id}");
        // Two instances of one name (on two agents) must not share a stanza in one repository.
        let mut taken: std::collections::HashSet<String> = sqlx::query_scalar(
            "SELECT stanza FROM backup_repositories WHERE label_repository_id = $1",
        )
        .bind(id)
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect();
        for (instance_id, name, agent) in wanting {
            let stanza = given.clone().unwrap_or_else(|| {
                let derived = stanza_of(&name, instance_id);
                if taken.contains(&derived) {
                    let suffix = format!("-{instance_id}");
                    let base: String = derived.chars().take(64 - suffix.len()).collect();
                    format!("{base}{suffix}")
                } else {
                    derived
                }
            });
            taken.insert(stanza.clone());
            // Instances of one host must not share a persistent config: `{stanza}` in its path
            // gives each its own.
            let mut own = spec.clone();
            own.config_path = own.config_path.map(|c| c.replace("{stanza}", &stanza));
            let new = NewRow {
                instance_id,
                agent: &agent,
                stanza: &stanza,
                repo_type,
                spec: &own,
                secret_key: secret_key.as_deref(),
                cipher_pass: cipher_pass.as_deref(),
                created_by: &created_by,
                label_repository_id: Some(id),
            };
            match insert_row(pool, Some(keyring), &new).await? {
                Some(_) => added += 1,
                // The instance has its own repository for the stanza: it keeps it.
                None => tracing::debug!(
                    instance_id,
                    stanza,
                    label_repository = id,
                    "the instance already has a repository for the stanza"
                ),
            }
        }
    }
    Ok((added, removed))
}

/// [`sync`] every few seconds until the task is aborted (every API process; nothing without a
/// secrets key file, since rows need their secrets encrypted for their instance).
pub async fn run(pool: PgPool, secrets: Option<std::sync::Arc<KeyFile>>) {
    let Some(secrets) = secrets else {
        return;
    };
    let mut ticks = tokio::time::interval(SYNC_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let keyring = match secrets.keyring() {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "label repositories: the secrets key file cannot be read");
                continue;
            }
        };
        if let Err(e) = sync(&pool, &keyring).await {
            tracing::warn!(error = %e.message(), "label repositories: sync failed; the next round retries");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas_from_instance_names_are_pgbackrests() {
        assert_eq!(stanza_of("db-prod.1", 7), "db-prod.1");
        assert_eq!(stanza_of("orders db/eu", 7), "orders-db-eu");
        assert_eq!(stanza_of("_hidden", 7), "hidden");
        assert_eq!(stanza_of("ü", 7), "instance-7");
        assert_eq!(stanza_of(&"x".repeat(80), 7).len(), 64);
    }
}
