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
    pub(crate) const fn as_str(self) -> &'static str {
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

/// A repository to register: for one stanza of an instance (`POST
/// /api/v1/instances/{id}/backup/repositories`, [`AddRepository`]'s schema) or for the instances
/// of a label (`POST /api/v1/backup/label-repositories`, [`AddLabelRepository`]'s). One body
/// type for both: which fields each repository type takes is checked by [`check_repository`],
/// exactly as the documents' `oneOf` says (documented in [`repository_schema`]).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddRepository {
    /// Label routes only.
    pub label_key: Option<String>,
    pub label_value: Option<String>,
    /// Required for an instance; a label repository without one derives each instance's stanza
    /// from the instance's name.
    pub stanza: Option<String>,
    #[serde(default)]
    pub repo_type: Option<RepoType>,
    pub path: String,
    pub config_path: Option<String>,
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub key_id: Option<String>,
    pub key_type: Option<String>,
    pub uri_style: Option<String>,
    #[serde(default, deserialize_with = "crate::routes::json_integer::option")]
    pub storage_port: Option<i32>,
    pub verify_tls: Option<bool>,
    pub ca_file: Option<String>,
    pub secret_key: Option<String>,
    pub cipher_type: Option<CipherType>,
    pub cipher_pass: Option<String>,
    #[serde(default, deserialize_with = "crate::routes::json_integer::option")]
    pub retention_full: Option<i32>,
    #[serde(default, deserialize_with = "crate::routes::json_integer::option")]
    pub retention_diff: Option<i32>,
    pub retention_full_type: Option<RetentionType>,
}

/// The object-store fields each repository type takes (the others take none), the ones it
/// requires, and its `key_type`s.
struct TypeFields {
    repo_type: RepoType,
    takes: &'static [&'static str],
    requires: &'static [&'static str],
    key_types: &'static [&'static str],
}

const TYPE_FIELDS: [TypeFields; 4] = [
    TypeFields {
        repo_type: RepoType::Posix,
        takes: &[],
        requires: &[],
        key_types: &[],
    },
    TypeFields {
        repo_type: RepoType::S3,
        // S3 takes every object-store field.
        takes: &OBJECT_STORE_FIELDS,
        requires: &["bucket", "endpoint", "region"],
        key_types: &["shared", "auto", "web-id"],
    },
    TypeFields {
        repo_type: RepoType::Azure,
        takes: &[
            "bucket",
            "endpoint",
            "key_id",
            "key_type",
            "uri_style",
            "storage_port",
            "verify_tls",
            "ca_file",
            "secret_key",
        ],
        requires: &["bucket", "key_id"],
        key_types: &["shared", "sas"],
    },
    TypeFields {
        repo_type: RepoType::Gcs,
        takes: &[
            "bucket",
            "endpoint",
            "key_type",
            "storage_port",
            "verify_tls",
            "ca_file",
            "secret_key",
        ],
        requires: &["bucket"],
        key_types: &["service", "token", "auto"],
    },
];

const OBJECT_STORE_FIELDS: [&str; 10] = [
    "bucket",
    "endpoint",
    "region",
    "key_id",
    "key_type",
    "uri_style",
    "storage_port",
    "verify_tls",
    "ca_file",
    "secret_key",
];

fn type_fields(t: RepoType) -> &'static TypeFields {
    TYPE_FIELDS
        .iter()
        .find(|f| f.repo_type == t)
        .unwrap_or(&TYPE_FIELDS[0])
}

/// What each field says, for the documents.
fn field_description(name: &str) -> &'static str {
    match name {
        "stanza" => "The pgBackRest stanza (unique per instance).",
        "repo_type" => "posix (default), s3, azure or gcs.",
        "path" => {
            "repo1-path: an absolute directory on the database host (posix), or the prefix in the bucket."
        }
        "config_path" => {
            "A pgBackRest config file the agent writes and keeps, for the server's archive_command (it then holds the repository's secrets too, 0600). In a label repository, {stanza} stands for each instance's stanza."
        }
        "bucket" => "The bucket (S3, GCS) or container (Azure).",
        "endpoint" => "repo1-s3-endpoint (required for S3), -azure-endpoint, -gcs-endpoint.",
        "region" => "repo1-s3-region.",
        "key_id" => {
            "S3: the access key id (repo1-s3-key); Azure: the storage account (repo1-azure-account). Not secret."
        }
        "key_type" => "repo1-<type>-key-type; default shared (S3, Azure) or service (GCS).",
        "uri_style" => "repo1-<type>-uri-style: host (default) or path.",
        "storage_port" => {
            "repo1-storage-port (default 443); for GCS the agent adds it to the endpoint."
        }
        "verify_tls" => "repo1-storage-verify-tls (default true).",
        "ca_file" => "repo1-storage-ca-file: a CA file on the database host.",
        "secret_key" => {
            "S3 secret access key, Azure shared key or SAS, GCS service key JSON or token: stored encrypted, never returned."
        }
        "cipher_type" => "repo1-cipher-type.",
        "cipher_pass" => "With cipher_type: stored encrypted, never returned.",
        "retention_full" => "repo1-retention-full.",
        "retention_diff" => "repo1-retention-diff.",
        "retention_full_type" => "count (default) or time (retention_full in days).",
        "label_key" => "The label the instances served carry.",
        "label_value" => "Its value.",
        _ => "",
    }
}

/// The JSON schema of one field.
fn field_schema(name: &str, t: &TypeFields, nullable: bool) -> serde_json::Value {
    use serde_json::json;
    let text = |extra: serde_json::Value| {
        let mut s = json!({"type": "string", "maxLength": MAX_TEXT});
        if let (Some(s), Some(e)) = (s.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        s
    };
    let mut schema = match name {
        "stanza" => json!({"type": "string", "pattern": STANZA_PATTERN}),
        "repo_type" => json!({"type": "string", "enum": [t.repo_type.as_str()]}),
        "path" => text(json!({"pattern": "^/"})),
        "config_path" => text(json!({"pattern": "^/.*\\.conf$"})),
        "ca_file" => text(json!({"pattern": "^/"})),
        "key_type" => json!({"type": "string", "enum": t.key_types}),
        "uri_style" => json!({"type": "string", "enum": ["host", "path"]}),
        "storage_port" => json!({"type": "integer", "minimum": 1, "maximum": 65535}),
        "verify_tls" => json!({"type": "boolean"}),
        "cipher_type" => json!({"type": "string", "enum": ["aes-256-cbc"]}),
        "retention_full" | "retention_diff" => {
            json!({"type": "integer", "minimum": 1, "maximum": 9_999_999})
        }
        "retention_full_type" => json!({"type": "string", "enum": ["count", "time"]}),
        "label_key" => json!({"type": "string", "minLength": 1, "maxLength": LABEL_KEY_MAX}),
        "label_value" => json!({"type": "string", "minLength": 1, "maxLength": LABEL_VALUE_MAX}),
        _ => text(json!({})),
    };
    if let Some(o) = schema.as_object_mut() {
        o.insert("description".into(), field_description(name).into());
        // An optional field may be null (serde reads it as absent), a required one may not.
        if nullable {
            if let Some(t) = o.get("type").cloned() {
                o.insert("type".into(), json!([t, "null"]));
            }
            if let Some(serde_json::Value::Array(e)) = o.get_mut("enum") {
                e.push(serde_json::Value::Null);
            }
        }
    }
    schema
}

pub(crate) const LABEL_KEY_MAX: usize = 63;
pub(crate) const LABEL_VALUE_MAX: usize = 255;

/// The request body's schema: one object per repository type (`oneOf`), each taking exactly
/// its fields; `label` adds the label selector (required) and makes the stanza optional.
fn repository_schema(label: bool) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use serde_json::json;
    let common = [
        "stanza",
        "repo_type",
        "path",
        "config_path",
        "cipher_type",
        "cipher_pass",
        "retention_full",
        "retention_diff",
        "retention_full_type",
    ];
    let variants: Vec<serde_json::Value> = TYPE_FIELDS
        .iter()
        .map(|t| {
            let mut required: Vec<&str> = vec!["path"];
            if label {
                required.extend(["label_key", "label_value"]);
            } else {
                required.push("stanza");
            }
            if t.repo_type != RepoType::Posix {
                required.push("repo_type");
            }
            required.extend(t.requires);
            let mut properties = serde_json::Map::new();
            let names = if label {
                ["label_key", "label_value"].as_slice()
            } else {
                [].as_slice()
            };
            for name in names.iter().chain(&common).chain(t.takes) {
                let nullable = !required.contains(name);
                properties.insert((*name).to_owned(), field_schema(name, t, nullable));
            }
            json!({
                "type": "object",
                "title": t.repo_type.as_str(),
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            })
        })
        .collect();
    let schema = json!({
        "oneOf": variants,
        "description": "A pgBackRest repository: posix (repo_type may be left out), s3, azure or gcs, each with its own options.",
    });
    serde_json::from_value(schema).unwrap_or_else(|e| {
        // Built from constants above: a failure is a bug caught by the OpenAPI tests.
        tracing::error!(error = %e, "the repository schema does not deserialize");
        utoipa::openapi::ObjectBuilder::new().into()
    })
}

impl utoipa::PartialSchema for AddRepository {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        repository_schema(false)
    }
}

impl utoipa::ToSchema for AddRepository {}

/// The body of `POST /api/v1/backup/label-repositories` in the documents (read as an
/// [`AddRepository`]).
pub struct AddLabelRepository;

impl utoipa::PartialSchema for AddLabelRepository {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        repository_schema(true)
    }
}

impl utoipa::ToSchema for AddLabelRepository {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RetentionType {
    Count,
    Time,
}

impl RetentionType {
    pub(crate) const fn as_str(self) -> &'static str {
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
    /// `count` or `time`; absent: pgBackRest's default (`count`).
    pub retention_full_type: Option<String>,
    /// The label repository this row serves the instance for (removed with it); absent:
    /// registered for this instance.
    pub label_repository_id: Option<i64>,
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
        concat!(
            "SELECT id, instance_id, stanza, repo_type, path, config_path, bucket, \
    endpoint, region, key_id, key_type, uri_style, storage_port, verify_tls, ca_file, \
    secret_key_ciphertext IS NOT NULL AS has_secret_key, cipher_type, \
    cipher_pass_ciphertext IS NOT NULL AS has_cipher_pass, retention_full, retention_diff, \
    retention_full_type, label_repository_id, \
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
        label_repository_id: r.try_get("label_repository_id")?,
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

/// A repository body and the names of the fields it has (`null` ones included: a field the
/// body's type does not take must be absent, not null); 400 when it is no such body.
pub(crate) fn parse_repository(
    request: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<(AddRepository, Vec<String>), ApiError> {
    let value = body(request)?;
    let present = value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let r = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("invalid body: {e}")))?;
    Ok((r, present))
}

/// Checks a new repository against the documents' schema (400 with the reason) and then what
/// the schema cannot say (422); its type. `present`: the body's field names; `label`: the
/// body of a label repository.
pub(crate) fn check_repository(
    r: &AddRepository,
    present: &[String],
    label: bool,
) -> Result<RepoType, ApiError> {
    let schema = |m: String| ApiError::bad_request("invalid_body", m);
    let bad = |m: String| ApiError::unprocessable("invalid_repository", m);
    let repo_type = r.repo_type.unwrap_or(RepoType::Posix);
    let fields = type_fields(repo_type);
    let has = |name: &str| present.iter().any(|p| p == name);
    if !label && let Some(f) = ["label_key", "label_value"].into_iter().find(|f| has(f)) {
        return Err(schema(format!(
            "{f} belongs to POST /api/v1/backup/label-repositories"
        )));
    }
    // Which object-store fields are there (null or not), to hold against the type's.
    let given: Vec<&str> = OBJECT_STORE_FIELDS.into_iter().filter(|f| has(f)).collect();
    if let Some(extra) = given.iter().find(|g| !fields.takes.contains(g)) {
        return Err(schema(format!(
            "a {} repository takes no {extra} (it takes: {})",
            repo_type.as_str(),
            if fields.takes.is_empty() {
                "no object-store option".to_owned()
            } else {
                fields.takes.join(", ")
            }
        )));
    }
    // Required ones must also not be null.
    let set = |name: &str| match name {
        "bucket" => r.bucket.is_some(),
        "endpoint" => r.endpoint.is_some(),
        "region" => r.region.is_some(),
        "key_id" => r.key_id.is_some(),
        _ => has(name),
    };
    if let Some(missing) = fields.requires.iter().find(|f| !set(f)) {
        return Err(schema(format!(
            "a {} repository needs {missing}",
            repo_type.as_str()
        )));
    }
    if repo_type != RepoType::Posix && r.repo_type.is_none() {
        return Err(schema("repo_type is required for an object store".into()));
    }
    match (label, &r.label_key, &r.label_value, &r.stanza) {
        (false, None, None, Some(_)) => {}
        (false, _, _, None) => return Err(schema("stanza is required".into())),
        (false, _, _, _) => {}
        (true, Some(k), Some(v), _) => {
            let chars = |s: &str| s.chars().count();
            if !(1..=LABEL_KEY_MAX).contains(&chars(k))
                || !(1..=LABEL_VALUE_MAX).contains(&chars(v))
            {
                return Err(schema(format!(
                    "label_key is 1 to {LABEL_KEY_MAX} characters, label_value 1 to \
                     {LABEL_VALUE_MAX}"
                )));
            }
        }
        (true, _, _, _) => return Err(schema("label_key and label_value are required".into())),
    }
    // Regex engines where `$` also matches before a final newline accept "main\n": the
    // document's pattern allows it, the stanza cannot be (422, once the schema is checked).
    let stanza_newline = match &r.stanza {
        Some(stanza) if !valid_stanza_name(stanza) => {
            if !stanza.strip_suffix('\n').is_some_and(valid_stanza_name) {
                return Err(schema(format!("stanza must match {STANZA_PATTERN}")));
            }
            true
        }
        _ => false,
    };
    if let Some(k) = &r.key_type
        && !fields.key_types.contains(&k.as_str())
    {
        return Err(schema(format!(
            "key_type of a {} repository is one of {}",
            repo_type.as_str(),
            fields.key_types.join(", ")
        )));
    }
    if let Some(u) = &r.uri_style
        && !["host", "path"].contains(&u.as_str())
    {
        return Err(schema("uri_style is host or path".into()));
    }
    for (name, value, range) in [
        ("retention_full", r.retention_full, 1..=9_999_999),
        ("retention_diff", r.retention_diff, 1..=9_999_999),
        ("storage_port", r.storage_port, 1..=65_535),
    ] {
        if value.is_some_and(|n| !range.contains(&n)) {
            return Err(schema(format!(
                "{name} must be {}..={}",
                range.start(),
                range.end()
            )));
        }
    }
    for (name, value) in [
        ("path", Some(&r.path)),
        ("config_path", r.config_path.as_ref()),
        ("bucket", r.bucket.as_ref()),
        ("endpoint", r.endpoint.as_ref()),
        ("region", r.region.as_ref()),
        ("key_id", r.key_id.as_ref()),
        ("ca_file", r.ca_file.as_ref()),
        ("secret_key", r.secret_key.as_ref()),
        ("cipher_pass", r.cipher_pass.as_ref()),
    ] {
        if let Some(v) = value
            && v.chars().count() > MAX_TEXT
        {
            return Err(schema(format!(
                "{name} must have at most {MAX_TEXT} characters"
            )));
        }
    }
    // The document's patterns (`^/`, `^/.*\.conf$`): breaking them is a bad body.
    if !r.path.starts_with('/') {
        return Err(schema("path must be absolute (start with /)".into()));
    }
    if let Some(c) = &r.config_path
        && !(c.starts_with('/') && c.ends_with(".conf"))
    {
        return Err(schema(
            "config_path must be an absolute path ending in .conf".into(),
        ));
    }
    if r.ca_file.as_ref().is_some_and(|c| !c.starts_with('/')) {
        return Err(schema("ca_file must be an absolute path".into()));
    }
    // What the schema cannot say: 422.
    if stanza_newline {
        return Err(bad("stanza must not end with a newline".into()));
    }
    for (name, value) in [
        ("path", Some(&r.path)),
        ("config_path", r.config_path.as_ref()),
        ("bucket", r.bucket.as_ref()),
        ("endpoint", r.endpoint.as_ref()),
        ("region", r.region.as_ref()),
        ("key_id", r.key_id.as_ref()),
        ("ca_file", r.ca_file.as_ref()),
        ("cipher_pass", r.cipher_pass.as_ref()),
    ] {
        if let Some(v) = value {
            if v.contains(['\n', '\r', '\0']) {
                return Err(bad(format!("{name} must be one line")));
            }
            if name != "cipher_pass" && v.is_empty() {
                return Err(bad(format!("{name} must not be empty")));
            }
        }
    }
    // A GCS service key is a JSON document (several lines); the others are one line.
    let service_key =
        repo_type == RepoType::Gcs && matches!(r.key_type.as_deref(), None | Some("service"));
    if let Some(secret) = &r.secret_key {
        if secret.is_empty() || secret.contains('\0') {
            return Err(bad("secret_key must not be empty".into()));
        }
        if !service_key && secret.contains(['\n', '\r']) {
            return Err(bad("secret_key must be one line".into()));
        }
        if service_key && serde_json::from_str::<serde_json::Value>(secret).is_err() {
            return Err(bad(
                "secret_key of a GCS repository with key_type service is the service key \
                 file's JSON"
                    .into(),
            ));
        }
    }
    if r.retention_full_type == Some(RetentionType::Time) && r.retention_full.is_none() {
        return Err(bad(
            "retention_full_type time needs retention_full (the days full backups are kept)".into(),
        ));
    }
    if r.path.split('/').any(|part| part == "..") {
        return Err(bad("path must not contain `..`".into()));
    }
    match (r.cipher_type, &r.cipher_pass) {
        (Some(_), Some(p)) if p.chars().count() >= 16 => {}
        (Some(_), Some(_)) => {
            return Err(bad("cipher_pass must have at least 16 characters".into()));
        }
        (Some(_), None) => return Err(bad("cipher_type needs a cipher_pass".into())),
        (None, Some(_)) => return Err(bad("cipher_pass needs a cipher_type".into())),
        (None, None) => {}
    }
    // Who signs the requests: a shared key needs both halves; a key pgBackRest finds itself
    // (an instance role, a web identity, the metadata server) takes neither.
    let key_type = r.key_type.as_deref();
    let needs_secret = match repo_type {
        RepoType::Posix => false,
        RepoType::S3 => matches!(key_type, None | Some("shared")),
        RepoType::Azure => true,
        RepoType::Gcs => !matches!(key_type, Some("auto")),
    };
    if needs_secret && r.secret_key.is_none() {
        return Err(bad(format!(
            "a {} repository{} needs a secret_key",
            repo_type.as_str(),
            key_type
                .map(|k| format!(" with key_type {k}"))
                .unwrap_or_default()
        )));
    }
    if !needs_secret && repo_type != RepoType::Posix && r.secret_key.is_some() {
        return Err(bad(format!(
            "key_type {} takes no secret_key (pgBackRest finds the credentials itself)",
            key_type.unwrap_or_default()
        )));
    }
    if repo_type == RepoType::S3 && needs_secret && r.key_id.is_none() {
        return Err(bad("an s3 repository with a shared key needs key_id".into()));
    }
    if repo_type == RepoType::S3 && !needs_secret && r.key_id.is_some() {
        return Err(bad(format!(
            "key_type {} takes no key_id",
            key_type.unwrap_or_default()
        )));
    }
    if r.verify_tls == Some(false) && r.ca_file.is_some() {
        return Err(bad(
            "ca_file is for verifying the store's certificate: not with verify_tls false".into(),
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
    request: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<(StatusCode, Json<Repository>), ApiError> {
    let id = path_id(path, "instance")?;
    principal
        .require_on_instance(&state.pool, id, Role::Admin)
        .await?;
    let (r, present) = parse_repository(request)?;
    let repo_type = check_repository(&r, &present, false)?;
    let stanza = r.stanza.clone().unwrap_or_default();
    let agent = instance_agent(&state, id).await?;
    let keyring = match (&r.secret_key, &r.cipher_pass) {
        (None, None) => None,
        _ => Some(state.keyring("repository secrets")?),
    };
    let new = NewRow {
        instance_id: id,
        agent: &agent,
        stanza: &stanza,
        repo_type,
        spec: &r,
        secret_key: r.secret_key.as_deref(),
        cipher_pass: r.cipher_pass.as_deref(),
        created_by: &runs::requested_by(&principal),
        label_repository_id: None,
    };
    let inserted = insert_row(&state.pool, keyring.as_deref(), &new).await?;
    let Some(repo) = inserted else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "repository_exists",
            format!(
                "instance {id} already has a repository for stanza {stanza:?}; remove it first"
            ),
        ));
    };
    Ok((StatusCode::CREATED, Json(fetch(&state, id, repo).await?)))
}

/// One `backup_repositories` row to insert: an instance's own, or one a label repository
/// serves the instance with.
pub(crate) struct NewRow<'a> {
    pub instance_id: i64,
    pub agent: &'a str,
    pub stanza: &'a str,
    pub repo_type: RepoType,
    pub spec: &'a AddRepository,
    pub secret_key: Option<&'a str>,
    pub cipher_pass: Option<&'a str>,
    pub created_by: &'a str,
    pub label_repository_id: Option<i64>,
}

/// Inserts `new`, its secrets encrypted bound to the instance, its agent and the stanza;
/// `None` when the instance already has a repository for the stanza.
pub(crate) async fn insert_row(
    db: impl sqlx::PgExecutor<'_>,
    keyring: Option<&lasect_pki::secrets::Keyring>,
    new: &NewRow<'_>,
) -> Result<Option<i64>, ApiError> {
    let seal = |field: &str, secret: Option<&str>| -> Result<Option<Vec<u8>>, ApiError> {
        let Some(secret) = secret else {
            return Ok(None);
        };
        let keyring = keyring.ok_or_else(|| {
            ApiError::internal("a repository secret to store without the secrets key")
        })?;
        encrypt_instance_secret(
            keyring,
            new.instance_id,
            new.agent,
            &format!("backup:{}:{field}", new.stanza),
            secret.as_bytes(),
        )
        .map(Some)
        .map_err(ApiError::internal)
    };
    let r = new.spec;
    let inserted = sqlx::query_scalar::<_, i64>(
        "INSERT INTO backup_repositories (instance_id, stanza, repo_type, path, config_path, \
         bucket, endpoint, region, key_id, secret_key_ciphertext, cipher_type, \
         cipher_pass_ciphertext, retention_full, retention_diff, created_by, \
         retention_full_type, key_type, uri_style, storage_port, verify_tls, ca_file, \
         label_repository_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
                 $18, $19, $20, $21, $22) \
         ON CONFLICT (instance_id, stanza) DO NOTHING RETURNING id",
    )
    .bind(new.instance_id)
    .bind(new.stanza)
    .bind(new.repo_type.as_str())
    .bind(&r.path)
    .bind(&r.config_path)
    .bind(&r.bucket)
    .bind(&r.endpoint)
    .bind(&r.region)
    .bind(&r.key_id)
    .bind(seal("secret_key", new.secret_key)?)
    .bind(r.cipher_type.map(|_| "aes-256-cbc"))
    .bind(seal("cipher_pass", new.cipher_pass)?)
    .bind(r.retention_full)
    .bind(r.retention_diff)
    .bind(new.created_by)
    .bind(r.retention_full_type.map(RetentionType::as_str))
    .bind(&r.key_type)
    .bind(&r.uri_style)
    .bind(r.storage_port)
    .bind(r.verify_tls)
    .bind(&r.ca_file)
    .bind(new.label_repository_id)
    .fetch_optional(db)
    .await?;
    Ok(inserted)
}

pub(crate) fn valid_stanza_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
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
        (status = 409, description = "The repository serves the instance for a label repository: remove that", body = super::openapi::ErrorBody),
    )
)]
/// Needs admin on the instance.
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (id, repo) = admin_ids(&state, &principal, path).await?;
    let served: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT label_repository_id FROM backup_repositories WHERE instance_id = $1 AND id = $2",
    )
    .bind(id)
    .bind(repo)
    .fetch_optional(&state.pool)
    .await?;
    match served {
        None => {
            return Err(ApiError::not_found(format!(
                "instance {id} has no backup repository {repo}"
            )));
        }
        // It would come back on the next round: the label decides.
        Some(Some(label_repo)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "served_by_label",
                format!(
                    "repository {repo} serves instance {id} for label repository {label_repo}: \
                     remove that one (DELETE /api/v1/backup/label-repositories/{label_repo}) or \
                     the instance's label"
                ),
            ));
        }
        Some(None) => {}
    }
    sqlx::query(
        "DELETE FROM backup_repositories WHERE instance_id = $1 AND id = $2 \
         AND label_repository_id IS NULL",
    )
    .bind(id)
    .bind(repo)
    .execute(&state.pool)
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The repository as the agent needs it, secrets aside (ingest adds them on delivery).
pub(super) async fn repo_for_run(
    state: &AppState,
    id: i64,
    repo: i64,
) -> Result<(String, BackupRepo), ApiError> {
    let r = fetch(state, id, repo).await?;
    Ok((r.stanza.clone(), backup_repo(r)))
}

/// The run parameters' view of a stored repository (for the routes and the scheduler).
pub(crate) fn backup_repo(r: Repository) -> BackupRepo {
    let to_u32 = |v: Option<i32>| v.and_then(|n| u32::try_from(n).ok());
    BackupRepo {
        repository_id: Some(r.id),
        path: r.path,
        config_path: r.config_path,
        cipher_type: r.cipher_type,
        retention_full: to_u32(r.retention_full),
        retention_diff: to_u32(r.retention_diff),
        retention_full_type: r.retention_full_type,
        repo_type: (r.repo_type != "posix").then_some(r.repo_type),
        bucket: r.bucket,
        endpoint: r.endpoint,
        region: r.region,
        key_id: r.key_id,
        key_type: r.key_type,
        uri_style: r.uri_style,
        storage_port: r.storage_port.and_then(|p| u16::try_from(p).ok()),
        verify_tls: r.verify_tls,
        ca_file: r.ca_file,
        // Added by ingest on delivery: never in `runs.params`.
        cipher_pass: None,
        secret_key: None,
    }
}

/// Repository `id` as a run needs it, read through `db` (the scheduler's transaction).
pub(crate) async fn backup_repo_by_id(
    db: impl sqlx::PgExecutor<'_>,
    id: i64,
) -> Result<BackupRepo, sqlx::Error> {
    let row = sqlx::query(select!("WHERE id = $1"))
        .bind(id)
        .fetch_one(db)
        .await?;
    Ok(backup_repo(repository(&row)?))
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

    fn check(body: serde_json::Value, label: bool) -> Result<RepoType, ApiError> {
        let (r, present) = parse_repository(Ok(Json(body))).expect("a body");
        check_repository(&r, &present, label)
    }

    fn refusal(body: serde_json::Value) -> (StatusCode, String) {
        let e = check(body, false).expect_err("refused");
        (e.status(), e.message().to_owned())
    }

    #[test]
    fn what_the_schema_cannot_say_is_422_and_what_it_says_is_400() {
        assert_eq!(
            check(json!({"stanza": "main", "path": "/r"}), false).ok(),
            Some(RepoType::Posix)
        );
        // An optional field may be null, as the document says.
        assert_eq!(
            check(
                json!({"stanza": "main", "path": "/r", "config_path": null, "repo_type": null}),
                false
            )
            .ok(),
            Some(RepoType::Posix)
        );
        let s3 = json!({"stanza": "m", "path": "/lasect", "repo_type": "s3", "bucket": "b",
            "endpoint": "s3.eu-west-1.amazonaws.com", "region": "eu-west-1",
            "key_id": "AKIA2LASECTAPIKEY001", "secret_key": "k"});
        assert_eq!(check(s3.clone(), false).ok(), Some(RepoType::S3));
        let with = |extra: serde_json::Value| {
            let mut b = s3.clone();
            if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
                b.extend(e.clone());
            }
            b
        };
        let without = |field: &str| {
            let mut b = s3.clone();
            b.as_object_mut().map(|o| o.remove(field));
            b
        };
        let azure = json!({"stanza": "m", "path": "/p", "repo_type": "azure", "bucket": "c",
            "key_id": "account", "secret_key": "k", "uri_style": "path"});
        assert_eq!(check(azure, false).ok(), Some(RepoType::Azure));
        let gcs = json!({"stanza": "m", "path": "/p", "repo_type": "gcs", "bucket": "b",
            "key_type": "token", "secret_key": "t0ken"});
        assert_eq!(check(gcs, false).ok(), Some(RepoType::Gcs));
        let label = json!({"label_key": "env", "label_value": "prod", "path": "/r"});
        assert_eq!(check(label, true).ok(), Some(RepoType::Posix));
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
                400,
                "bucket",
            ),
            (
                json!({"stanza": "m", "path": "/r", "bucket": "b"}),
                400,
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
            (json!({"path": "/r"}), 400, "stanza is required"),
            (
                json!({"stanza": "m\n", "path": "relative"}),
                400,
                "absolute",
            ),
            (json!({"stanza": "m\n", "path": "/r"}), 422, "newline"),
            (with(json!({"uri_style": "sideways"})), 400, "host or path"),
            (
                with(json!({"key_type": "sas"})),
                400,
                "shared, auto, web-id",
            ),
            (with(json!({"storage_port": 70000})), 400, "storage_port"),
            (with(json!({"ca_file": "ca.pem"})), 400, "absolute"),
            (without("endpoint"), 400, "endpoint"),
            (without("region"), 400, "region"),
            (without("secret_key"), 422, "secret_key"),
            (without("key_id"), 422, "key_id"),
            (with(json!({"key_type": "auto"})), 422, "no secret_key"),
            (with(json!({"secret_key": "two\nlines"})), 422, "one line"),
            (
                with(json!({"verify_tls": false, "ca_file": "/ca.pem"})),
                422,
                "verify_tls",
            ),
            (
                json!({"stanza": "m", "path": "/p", "repo_type": "azure", "bucket": "c",
                    "key_id": "a", "secret_key": "k", "region": "r"}),
                400,
                "takes no region",
            ),
            (
                json!({"stanza": "m", "path": "/p", "repo_type": "gcs", "bucket": "b",
                    "secret_key": "not json"}),
                422,
                "JSON",
            ),
            (
                json!({"stanza": "m", "path": "/r", "label_key": "env", "label_value": "prod"}),
                400,
                "label-repositories",
            ),
        ];
        let nulls = [
            (
                json!({"stanza": "m", "path": "/r", "bucket": null}),
                400,
                "takes no bucket",
            ),
            (with(json!({"region": null})), 400, "needs region"),
            (
                json!({"stanza": "m", "path": "/r", "label_key": null}),
                400,
                "label-repositories",
            ),
        ];
        for (body, status, needle) in cases.into_iter().chain(nulls) {
            let (got, message) = refusal(body.clone());
            assert_eq!(got.as_u16(), status, "{body}: {message}");
            assert!(message.contains(needle), "{body}: {message}");
        }
        let e = check(json!({"path": "/r", "label_key": "env"}), true)
            .expect_err("a label without its value");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{}", e.message());
    }

    #[test]
    fn the_documented_body_is_one_object_per_repository_type() {
        let schema = serde_json::to_value(repository_schema(false)).expect("schema");
        let variants = schema["oneOf"].as_array().expect("oneOf");
        let titles: Vec<&str> = variants
            .iter()
            .filter_map(|v| v["title"].as_str())
            .collect();
        assert_eq!(titles, ["posix", "s3", "azure", "gcs"]);
        for v in variants {
            assert_eq!(v["additionalProperties"], false, "{v}");
            for (name, _) in v["properties"].as_object().expect("properties") {
                assert!(
                    !field_description(name).is_empty(),
                    "{name} has no description"
                );
            }
        }
        assert_eq!(
            variants[1]["required"],
            json!([
                "path",
                "stanza",
                "repo_type",
                "bucket",
                "endpoint",
                "region"
            ])
        );
        assert!(variants[0]["properties"].get("bucket").is_none());
        assert_eq!(variants[1]["properties"]["bucket"]["type"], "string");
        assert_eq!(
            variants[1]["properties"]["key_type"]["enum"],
            json!(["shared", "auto", "web-id", null])
        );
        assert_eq!(
            variants[1]["properties"]["config_path"]["type"],
            json!(["string", "null"])
        );
        assert!(variants[2]["properties"].get("region").is_none());
        let label = serde_json::to_value(repository_schema(true)).expect("schema");
        assert_eq!(
            label["oneOf"][0]["required"],
            json!(["path", "label_key", "label_value"])
        );
    }

    #[test]
    fn stanza_names_follow_the_documented_pattern() {
        assert!(valid_stanza_name("main-16.a_b"));
        for bad in ["", "-x", "a b", "a]", &"x".repeat(65)] {
            assert!(!valid_stanza_name(bad), "{bad:?}");
        }
    }
}
