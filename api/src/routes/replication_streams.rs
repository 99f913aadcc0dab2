//! Logical replication streams (issue 21, R2/R3; docs/REPLICATION.md "Streams"):
//!
//! - `POST /api/v1/replication/streams`: validate (both agents, every problem at once) and,
//!   unless `dry_run`, create a stream: publication and slot on the publisher, subscription on
//!   the subscriber, rolled back on any failure. Admin on both instances; every step audited.
//! - `GET /api/v1/replication/streams`, `GET …/{id}`: the streams whose two instances the
//!   caller may view; one stream with its steps and its backfill (per table progress, ETA).
//! - `DELETE /api/v1/replication/streams/{id}`: drop subscription, slot and publication in
//!   the safe order. Admin on both instances.
//!
//! The conninfo's password is encrypted at rest like instance DSNs (bound to the stream and
//! its subscriber), only ingest decrypts it for the subscriber's agent, and no answer shows
//! it.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use lasect_pki::secrets::encrypt_instance_secret;
use lasect_runs::StreamTable;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth_routes::body;
use super::instances::rfc3339;
use super::runs::path_id;
use super::{ApiError, AppState};
use crate::auth::{Principal, Role};
use crate::replication_backfill;
use crate::replication_streams::{self as ops, Plan};
pub use lasect_api_contract::replication::{Backfill, Problem, Stream, StreamList, StreamStep};

/// Strings a stream request may hold, at most (bytes).
const MAX_TEXT: usize = 4096;
const MAX_TABLES: usize = 1000;

/// A stream to validate and create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStream {
    /// The publisher's instance id.
    #[serde(deserialize_with = "lasect_api_contract::json_integer::required")]
    pub from: i64,
    /// The subscriber's instance id.
    #[serde(deserialize_with = "lasect_api_contract::json_integer::required")]
    pub to: i64,
    /// Tables to publish, `schema.table` or `table` (schema `public`); or `schema`.
    pub tables: Option<Vec<String>>,
    /// Publish every table of this schema (instead of `tables`).
    pub schema: Option<String>,
    /// Create the tables missing on the subscriber from the publisher's definitions.
    #[serde(default)]
    pub copy_schema: bool,
    /// Validate only; create nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// How the subscriber reaches the publisher (libpq conninfo, without a password). Default:
    /// the publisher's unix socket when both run on the same host, else its address and
    /// port, with the publication's database.
    pub conninfo: Option<String>,
    /// The role the subscription connects as (added to a derived conninfo; its privileges
    /// are checked on the publisher).
    pub user: Option<String>,
    /// The password of that role: stored encrypted, never returned.
    pub password: Option<String>,
    /// The publisher's database (default: the one its agent connects to).
    pub publisher_database: Option<String>,
    /// The subscriber's database (default: the one its agent connects to).
    pub subscriber_database: Option<String>,
}

/// A stream request that could not be carried out: the error, and the stream when the
/// operation ran (invalid: every problem listed; a failed step: what was rolled back).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamFailed {
    pub error: super::openapi::ErrorDetail,
    pub stream: Option<Box<Stream>>,
}

#[derive(sqlx::FromRow)]
struct StreamRow {
    id: i64,
    publisher_instance_id: i64,
    publisher_instance: String,
    subscriber_instance_id: i64,
    subscriber_instance: String,
    publisher_database: Option<String>,
    subscriber_database: Option<String>,
    publication: String,
    slot_name: String,
    subscription: String,
    tables: Value,
    schema_name: Option<String>,
    copy_schema: bool,
    created_tables: Value,
    conninfo: String,
    password_set: bool,
    status: String,
    dry_run: bool,
    problems: Value,
    failed_step: Option<String>,
    error: Option<String>,
    suboid: Option<i64>,
    requested_by: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    publisher_labels: Value,
    subscriber_labels: Value,
}

#[derive(sqlx::FromRow)]
struct StepRow {
    n: i32,
    step: String,
    instance_id: i64,
    run_id: Option<i64>,
    status: String,
    error: Option<String>,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

const SELECT_STREAMS: &str = "SELECT s.id, s.publisher_instance_id, p.name AS publisher_instance, \
     s.subscriber_instance_id, b.name AS subscriber_instance, s.publisher_database, \
     s.subscriber_database, s.publication, s.slot_name, s.subscription, s.tables, s.schema_name, \
     s.copy_schema, s.created_tables, s.conninfo, s.password_ciphertext IS NOT NULL AS password_set, \
     s.status, s.dry_run, s.problems, s.failed_step, s.error, s.suboid, s.requested_by, \
     s.created_at, s.updated_at, p.labels AS publisher_labels, b.labels AS subscriber_labels \
     FROM replication_streams s JOIN instances p ON p.id = s.publisher_instance_id \
     JOIN instances b ON b.id = s.subscriber_instance_id";

fn tables_of(v: &Value) -> Vec<StreamTable> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

fn names(v: &Value) -> Vec<String> {
    tables_of(v)
        .into_iter()
        .map(|t| format!("{}.{}", t.schema, t.table))
        .collect()
}

fn view(r: StreamRow, steps: Vec<StepRow>, backfill: Option<Backfill>) -> Stream {
    Stream {
        id: r.id,
        publisher_instance_id: r.publisher_instance_id,
        publisher_instance: r.publisher_instance,
        subscriber_instance_id: r.subscriber_instance_id,
        subscriber_instance: r.subscriber_instance,
        publisher_database: r.publisher_database,
        subscriber_database: r.subscriber_database,
        publication: r.publication,
        slot_name: r.slot_name,
        subscription: r.subscription,
        tables: names(&r.tables),
        schema: r.schema_name,
        copy_schema: r.copy_schema,
        created_tables: names(&r.created_tables),
        conninfo: r.conninfo,
        password_set: r.password_set,
        status: r.status,
        dry_run: r.dry_run,
        problems: serde_json::from_value(r.problems).unwrap_or_default(),
        failed_step: r.failed_step,
        error: r.error,
        requested_by: r.requested_by,
        created_at: rfc3339(r.created_at),
        updated_at: rfc3339(r.updated_at),
        steps: steps
            .into_iter()
            .map(|s| StreamStep {
                n: s.n,
                step: s.step,
                instance_id: s.instance_id,
                run_id: s.run_id,
                status: s.status,
                error: s.error,
                started_at: rfc3339(s.started_at),
                finished_at: s.finished_at.map(rfc3339),
            })
            .collect(),
        backfill,
    }
}

fn may_view(principal: &Principal, r: &StreamRow) -> bool {
    principal.role_for_labels(&r.publisher_labels) >= Some(Role::Viewer)
        && principal.role_for_labels(&r.subscriber_labels) >= Some(Role::Viewer)
}

async fn load(state: &AppState, id: i64) -> Result<Option<StreamRow>, ApiError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_STREAMS} WHERE s.id = $1"
    )))
    .bind(id)
    .fetch_optional(&state.pool)
    .await?)
}

async fn steps(state: &AppState, id: i64) -> Result<Vec<StepRow>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT n, step, instance_id, run_id, status, error, started_at, finished_at \
         FROM replication_stream_steps WHERE stream_id = $1 ORDER BY n",
    )
    .bind(id)
    .fetch_all(&state.pool)
    .await?)
}

/// The stream as stored now, with its steps and (once it has a subscription) its backfill.
async fn detail(state: &AppState, id: i64) -> Result<Stream, ApiError> {
    let row = load(state, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no replication stream with id {id}")))?;
    let steps = steps(state, id).await?;
    let backfill = if matches!(
        row.status.as_str(),
        "syncing" | "removing" | "remove_failed"
    ) {
        Some(
            replication_backfill::backfill(
                &state.pool,
                row.subscriber_instance_id,
                &row.subscription,
                Some((row.publisher_instance_id, row.publisher_database.as_deref())),
            )
            .await?,
        )
    } else {
        None
    };
    Ok(view(row, steps, backfill))
}

fn unprocessable(message: impl Into<String>) -> ApiError {
    ApiError::unprocessable("invalid_stream", message)
}

/// A name as typed: not empty, at most 63 bytes, no NUL.
fn identifier(what: &str, name: &str) -> Result<String, ApiError> {
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        return Err(unprocessable(format!(
            "{what} {name:?} is not a PostgreSQL name (1 to 63 bytes, no NUL)"
        )));
    }
    Ok(name.to_owned())
}

fn text(what: &str, value: &Option<String>) -> Result<(), ApiError> {
    if let Some(v) = value
        && (v.is_empty() || v.len() > MAX_TEXT || v.contains('\0'))
    {
        return Err(unprocessable(format!(
            "{what} must be 1 to {MAX_TEXT} bytes without NUL"
        )));
    }
    Ok(())
}

/// `schema.table` or `table` (schema `public`).
fn parse_table(raw: &str) -> Result<StreamTable, ApiError> {
    let (schema, table) = raw.split_once('.').unwrap_or(("public", raw));
    Ok(StreamTable {
        schema: identifier("schema", schema)?,
        table: identifier("table", table)?,
    })
}

/// The password must not ride in the conninfo: it would be stored and shown in plaintext.
fn conninfo_without_password(conninfo: &str) -> Result<(), ApiError> {
    lasect_pgtls::PgConfig::parse(conninfo)
        .map_err(|e| unprocessable(format!("conninfo does not parse: {e}")))
        .and_then(|c| {
            if c.get_password().is_some() {
                Err(unprocessable(
                    "conninfo holds a password: give it in `password`, which is stored \
                     encrypted and never shown",
                ))
            } else {
                Ok(())
            }
        })
}

/// How the subscriber reaches the publisher when the operator gave no conninfo: the
/// publisher's unix socket when both are on the same host (no network, no TLS to set up),
/// else its address (or its agent's host name) and port.
async fn publisher_address(
    state: &AppState,
    publisher: i64,
    subscriber: i64,
) -> Result<Option<(String, i32)>, ApiError> {
    /// Port, address, agent host name, same host as the subscriber, socket directories.
    type Address = (i32, Option<String>, Option<String>, bool, Option<String>);
    let row: Option<Address> = sqlx::query_as(
        "SELECT r.port, nullif(r.server_addr, ''), a.hostname, \
                (p.agent_id = s.agent_id OR (a.hostname IS NOT NULL AND a.hostname = sa.hostname)), \
                (SELECT st.setting FROM metric_settings st WHERE st.instance_id = p.id \
                   AND st.name = 'unix_socket_directories' AND st.time > now() - interval '1 day' \
                 ORDER BY st.time DESC LIMIT 1) \
         FROM instances p JOIN instances s ON s.id = $2 \
         LEFT JOIN agents a ON a.id = p.agent_id LEFT JOIN agents sa ON sa.id = s.agent_id \
         JOIN LATERAL (SELECT port, server_addr FROM metric_replication_identity \
                       WHERE instance_id = p.id AND time > now() - interval '1 day' \
                       ORDER BY time DESC LIMIT 1) r ON true \
         WHERE p.id = $1",
    )
    .bind(publisher)
    .bind(subscriber)
    .fetch_optional(&state.pool)
    .await?;
    let Some((port, addr, hostname, same_host, sockets)) = row else {
        return Ok(None);
    };
    let socket = sockets.as_deref().and_then(|s| {
        s.split(',')
            .map(str::trim)
            .find(|d| d.starts_with('/'))
            .map(str::to_owned)
    });
    Ok(match (same_host, socket, addr, hostname) {
        (true, Some(dir), _, _) => Some((dir, port)),
        (_, _, Some(addr), _) => Some((addr, port)),
        (_, _, None, Some(host)) => Some((host, port)),
        _ => None,
    })
}

async fn agent_of(state: &AppState, id: i64) -> Result<String, ApiError> {
    sqlx::query_scalar("SELECT agent_id FROM instances WHERE id = $1 AND state <> 'removed'")
        .bind(id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no instance with id {id}")))
}

fn encrypt_password(
    state: &AppState,
    stream: i64,
    subscriber: i64,
    agent: &str,
    password: &str,
) -> Result<Vec<u8>, ApiError> {
    let keyring = state.keyring("the password")?;
    encrypt_instance_secret(
        &keyring,
        subscriber,
        agent,
        &format!("replication_stream:{stream}:password"),
        password.as_bytes(),
    )
    .map_err(ApiError::internal)
}

/// The answer to a finished operation: the stream, or (invalid, failed) 422 with it.
fn answer(stream: Stream) -> Response {
    let status = match stream.status.as_str() {
        "syncing" => StatusCode::CREATED,
        "validated" | "removed" => StatusCode::OK,
        "invalid" | "failed" | "rollback_failed" | "remove_failed" => {
            let (code, message) = match stream.status.as_str() {
                "invalid" => (
                    "stream_invalid",
                    format!(
                        "stream {}: validation found {} problem(s); nothing was created",
                        stream.id,
                        stream.problems.len()
                    ),
                ),
                _ => (
                    "stream_failed",
                    format!(
                        "stream {}: {}",
                        stream.id,
                        stream.error.as_deref().unwrap_or("a step failed")
                    ),
                ),
            };
            let body = StreamFailed {
                error: super::openapi::ErrorDetail {
                    code: code.to_owned(),
                    message,
                },
                stream: Some(Box::new(stream)),
            };
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
        }
        _ => StatusCode::ACCEPTED,
    };
    (status, Json(stream)).into_response()
}

#[utoipa::path(
    post,
    path = "/api/v1/replication/streams",
    tag = "replication",
    security(("bearer" = [])),
    request_body = CreateStream,
    responses(
        (status = 200, description = "Dry run: valid, nothing created", body = Stream),
        (status = 201, description = "Created: the subscription is copying its tables", body = Stream),
        (status = 202, description = "Still running (the operation goes on; read the stream)", body = Stream),
        (status = 400, description = "Body breaks the schema", body = super::openapi::ErrorBody),
        (status = 401, description = "Not authenticated", body = super::openapi::ErrorBody),
        (status = 403, description = "Not an admin of both instances", body = super::openapi::ErrorBody),
        (status = 404, description = "No such instance", body = super::openapi::ErrorBody),
        (status = 422, description = "Invalid (every problem listed, nothing created), or a step failed and everything created was dropped; or the request cannot be carried out", body = StreamFailed),
        (status = 503, description = "Store or secrets key unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<CreateStream>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(request)?;
    if req.from == req.to {
        return Err(unprocessable(
            "from and to are the same instance: a stream joins two instances",
        ));
    }
    for (what, v) in [
        ("schema", &req.schema),
        ("conninfo", &req.conninfo),
        ("user", &req.user),
        ("password", &req.password),
        ("publisher_database", &req.publisher_database),
        ("subscriber_database", &req.subscriber_database),
    ] {
        text(what, v)?;
    }
    let tables: Vec<StreamTable> = match (&req.tables, &req.schema) {
        (Some(t), None) if !t.is_empty() && t.len() <= MAX_TABLES => {
            t.iter().map(|t| parse_table(t)).collect::<Result<_, _>>()?
        }
        (Some(_), None) => {
            return Err(unprocessable(format!(
                "tables must name 1 to {MAX_TABLES} tables"
            )));
        }
        (None, Some(s)) => {
            identifier("schema", s)?;
            Vec::new()
        }
        _ => return Err(unprocessable("give exactly one of tables and schema")),
    };
    for (what, v) in [
        ("user", &req.user),
        ("publisher_database", &req.publisher_database),
        ("subscriber_database", &req.subscriber_database),
    ] {
        if let Some(v) = v {
            identifier(what, v)?;
        }
    }
    if let Some(c) = &req.conninfo {
        conninfo_without_password(c)?;
    }
    let publisher_agent = agent_of(&state, req.from).await?;
    let subscriber_agent = agent_of(&state, req.to).await?;
    let _ = publisher_agent;
    principal
        .require_on_instance(&state.pool, req.from, Role::Admin)
        .await?;
    principal
        .require_on_instance(&state.pool, req.to, Role::Admin)
        .await?;
    let publisher_address = match &req.conninfo {
        Some(_) => None,
        None => publisher_address(&state, req.from, req.to).await?,
    };
    let replication_user = req.user.clone().or_else(|| {
        req.conninfo
            .as_deref()
            .and_then(|c| lasect_pgtls::PgConfig::parse(c).ok())
            .and_then(|c| c.get_user().map(str::to_owned))
    });
    let requested_by = crate::runs::requested_by(&principal);
    let mut tx = state.pool.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO replication_streams (publisher_instance_id, subscriber_instance_id, \
             publisher_database, subscriber_database, publication, slot_name, subscription, \
             tables, schema_name, copy_schema, conninfo, status, dry_run, requested_by) \
         VALUES ($1, $2, $3, $4, '', '', '', $5, $6, $7, coalesce($8, ''), 'validating', $9, $10) \
         RETURNING id",
    )
    .bind(req.from)
    .bind(req.to)
    .bind(&req.publisher_database)
    .bind(&req.subscriber_database)
    .bind(serde_json::json!(tables))
    .bind(&req.schema)
    .bind(req.copy_schema)
    .bind(&req.conninfo)
    .bind(req.dry_run)
    .bind(&requested_by)
    .fetch_one(&mut *tx)
    .await?;
    let name = ops::object_name(id);
    let ciphertext = match &req.password {
        Some(pw) => Some(encrypt_password(&state, id, req.to, &subscriber_agent, pw)?),
        None => None,
    };
    sqlx::query(
        "UPDATE replication_streams SET publication = $2, slot_name = $2, subscription = $2, \
         password_ciphertext = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(&name)
    .bind(ciphertext)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let plan = Plan {
        id,
        publisher: req.from,
        subscriber: req.to,
        publisher_database: req.publisher_database,
        subscriber_database: req.subscriber_database,
        publication: name.clone(),
        slot: name.clone(),
        subscription: name,
        tables,
        schema: req.schema,
        copy_schema: req.copy_schema,
        dry_run: req.dry_run,
        conninfo: req.conninfo,
        replication_user,
        publisher_address,
        created_tables: Vec::new(),
        suboid: None,
        requested_by,
        actor: principal.username.clone(),
    };
    let operation = ops::create(state.pool.clone(), plan);
    detached(&state, id, operation, "rollback_failed", "operation").await;
    Ok(answer(detail(&state, id).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/replication/streams",
    tag = "replication",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The streams whose two instances the caller may view, newest first", body = StreamList),
        (status = 401, description = "Not authenticated", body = super::openapi::ErrorBody),
        (status = 503, description = "Store unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<StreamList>, ApiError> {
    let rows: Vec<StreamRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_STREAMS} ORDER BY s.id DESC LIMIT 1000"
    )))
    .fetch_all(&state.pool)
    .await?;
    let streams = rows
        .into_iter()
        .filter(|r| may_view(&principal, r))
        .map(|r| view(r, Vec::new(), None))
        .collect();
    Ok(Json(StreamList { streams }))
}

#[utoipa::path(
    get,
    path = "/api/v1/replication/streams/{id}",
    tag = "replication",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Stream id")),
    responses(
        (status = 200, description = "The stream, its steps and its backfill", body = Stream),
        (status = 400, description = "Bad id", body = super::openapi::ErrorBody),
        (status = 401, description = "Not authenticated", body = super::openapi::ErrorBody),
        (status = 404, description = "No such stream the caller may view", body = super::openapi::ErrorBody),
        (status = 503, description = "Store unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Stream>, ApiError> {
    let id = path_id(path, "stream")?;
    let row = load(&state, id).await?;
    if !row.as_ref().is_some_and(|r| may_view(&principal, r)) {
        return Err(ApiError::not_found(format!(
            "no replication stream with id {id}"
        )));
    }
    Ok(Json(detail(&state, id).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/replication/streams/{id}",
    tag = "replication",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Stream id")),
    responses(
        (status = 200, description = "Removed: subscription, slot and publication dropped", body = Stream),
        (status = 400, description = "Bad id", body = super::openapi::ErrorBody),
        (status = 401, description = "Not authenticated", body = super::openapi::ErrorBody),
        (status = 403, description = "Not an admin of both instances", body = super::openapi::ErrorBody),
        (status = 404, description = "No such stream the caller may view", body = super::openapi::ErrorBody),
        (status = 409, description = "An operation on the stream is running, or it holds nothing to remove", body = super::openapi::ErrorBody),
        (status = 422, description = "A drop failed: what is left is named", body = StreamFailed),
        (status = 503, description = "Store unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_id(path, "stream")?;
    let Some(row) = load(&state, id).await?.filter(|r| may_view(&principal, r)) else {
        return Err(ApiError::not_found(format!(
            "no replication stream with id {id}"
        )));
    };
    principal
        .require_on_instance(&state.pool, row.publisher_instance_id, Role::Admin)
        .await?;
    principal
        .require_on_instance(&state.pool, row.subscriber_instance_id, Role::Admin)
        .await?;
    // One operation at a time: only a stream at rest that may hold something is removed.
    let claimed = sqlx::query(
        "UPDATE replication_streams SET status = 'removing', failed_step = NULL, error = NULL, \
         updated_at = now() WHERE id = $1 \
         AND status IN ('syncing', 'failed', 'rollback_failed', 'remove_failed')",
    )
    .bind(id)
    .execute(&state.pool)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "stream_busy",
            format!(
                "stream {id} is {}: only a created stream (syncing) or a failed one can be removed",
                row.status
            ),
        ));
    }
    let plan = Plan {
        id,
        publisher: row.publisher_instance_id,
        subscriber: row.subscriber_instance_id,
        publisher_database: row.publisher_database.clone(),
        subscriber_database: row.subscriber_database.clone(),
        publication: row.publication.clone(),
        slot: row.slot_name.clone(),
        subscription: row.subscription.clone(),
        tables: tables_of(&row.tables),
        schema: row.schema_name.clone(),
        copy_schema: row.copy_schema,
        dry_run: false,
        conninfo: Some(row.conninfo.clone()),
        replication_user: None,
        publisher_address: None,
        created_tables: tables_of(&row.created_tables),
        suboid: row.suboid,
        requested_by: crate::runs::requested_by(&principal),
        actor: principal.username.clone(),
    };
    let operation = ops::remove(state.pool.clone(), plan);
    detached(&state, id, operation, "remove_failed", "removal").await;
    Ok(answer(detail(&state, id).await?))
}

/// Runs a stream's `operation` (named `what` in messages) in its own task, so that it ends (or
/// rolls back) even if the request goes away, and waits for it. When the store fails mid-way
/// the stream is left `failed_status`, pointing at the API log, rather than stuck in a
/// transient state.
async fn detached(
    state: &AppState,
    id: i64,
    operation: impl Future<Output = Result<(), sqlx::Error>> + Send + 'static,
    failed_status: &'static str,
    what: &'static str,
) {
    let pool = state.pool.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = operation.await {
            tracing::error!(stream = id, error = %e, "replication stream {what} stopped");
            let _ =
                sqlx::query("UPDATE replication_streams SET status = $2, error = $3 WHERE id = $1")
                    .bind(id)
                    .bind(failed_status)
                    .bind(format!(
                        "the store failed during the {what}: see the API log"
                    ))
                    .execute(&pool)
                    .await;
        }
    });
    let _ = task.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_default_to_public_and_are_checked() {
        let t = parse_table("orders").expect("a table");
        assert_eq!((t.schema.as_str(), t.table.as_str()), ("public", "orders"));
        let t = parse_table("sales.orders").expect("a table");
        assert_eq!((t.schema.as_str(), t.table.as_str()), ("sales", "orders"));
        for bad in ["", ".orders", "sales.", "a\0b", &"x".repeat(64)] {
            assert!(parse_table(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_conninfo_with_a_password_is_refused() {
        assert!(conninfo_without_password("host=db1 port=5432 dbname=app user=repl").is_ok());
        let e = conninfo_without_password("host=db1 password=hunter2").expect_err("refused");
        assert!(!e.message().contains("hunter2"), "{}", e.message());
        assert!(conninfo_without_password("host=db1 port=notaport").is_err());
    }
}
