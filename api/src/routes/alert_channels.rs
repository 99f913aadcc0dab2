//! Notification channels, routes and deliveries (issue 18, notifications):
//! `GET|POST /api/v1/alerts/channels`, `GET|PATCH|DELETE /api/v1/alerts/channels/{id}` (edit:
//! rename, enable, URL, replace the secret),
//! `POST /api/v1/alerts/channels/{id}/test` (send a test notification now),
//! `GET|POST /api/v1/alerts/routes`, `PATCH|DELETE /api/v1/alerts/routes/{id}`,
//! `GET /api/v1/alerts/deliveries` (every notification with its attempts).
//!
//! Roles: a global viewer reads channels (never their secrets: the webhook key and the Slack
//! URL are only ever written), routes and deliveries; a global admin adds, edits, removes and tests
//! channels and routes. Writes are audited by the gate.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::auth_routes::{body, path_params};
use super::instances::rfc3339;
use super::openapi::responses::{ById, RoleNeeded, WithInput};
use super::time_range::{Recent, recent_query};
use super::{ApiError, AppState};
use crate::alerts::selector;
use crate::auth::principal::Principal;
use crate::auth::role::Role;
use crate::notify::channel::{self, Kind, MIN_SECRET_LEN};
use crate::notify::payload::{Links, Notification};
use crate::notify::send;
pub use lasect_api_contract::alert_channels::{
    Attempt, Channel, ChannelList, ChannelPatch, Delivery, DeliveryList, MinSeverity, NewChannel,
    NewRoute, Route, RouteList, RoutePatch, TestResult,
};

#[derive(sqlx::FromRow)]
struct ChannelRow {
    id: i64,
    name: String,
    kind: String,
    url: String,
    insecure_http: bool,
    enabled: bool,
    has_secret: bool,
    timeout_secs: i32,
    give_up_secs: i32,
    email_from: Option<String>,
    email_to: Option<String>,
    smtp_username: Option<String>,
    created_at: DateTime<Utc>,
    created_by: String,
}

impl ChannelRow {
    fn view(self) -> Result<Channel, ApiError> {
        Ok(Channel {
            kind: Kind::parse(&self.kind)
                .ok_or_else(|| ApiError::internal(format!("channel kind {}", self.kind)))?,
            id: self.id,
            name: self.name,
            url: self.url,
            insecure_http: self.insecure_http,
            enabled: self.enabled,
            has_secret: self.has_secret,
            timeout_secs: self.timeout_secs,
            give_up_secs: self.give_up_secs,
            email_from: self.email_from,
            email_to: self
                .email_to
                .map(|t| t.split(',').map(str::to_owned).collect()),
            smtp_username: self.smtp_username,
            created_at: rfc3339(self.created_at),
            created_by: self.created_by,
        })
    }
}

const SELECT_CHANNEL: &str = "SELECT id, name, kind, url, insecure_http, enabled, \
     secret_ciphertext IS NOT NULL AS has_secret, timeout_secs, give_up_secs, email_from, \
     email_to, smtp_username, created_at, created_by FROM alert_channels";

async fn load_channel(state: &AppState, id: i64) -> Result<Channel, ApiError> {
    let row: Option<ChannelRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_CHANNEL} WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    row.ok_or_else(|| ApiError::not_found(format!("no channel with id {id}")))?
        .view()
}

#[utoipa::path(
    get,
    path = "/api/v1/alerts/channels",
    tag = "alerts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every channel, without secrets", body = ChannelList),
        RoleNeeded,
    )
)]
/// Needs a global role (viewer or more).
pub async fn list_channels(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<ChannelList>, ApiError> {
    principal.require(Role::Viewer)?;
    let rows: Vec<ChannelRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_CHANNEL} ORDER BY name"
    )))
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(ChannelList {
        channels: rows
            .into_iter()
            .map(ChannelRow::view)
            .collect::<Result<_, _>>()?,
    }))
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=63).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_.-".contains(c))
}

#[utoipa::path(
    post,
    path = "/api/v1/alerts/channels",
    tag = "alerts",
    request_body = NewChannel,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The channel (without its secret)", body = Channel),
        WithInput,
        (status = 409, description = "A channel of that name exists", body = super::openapi::ErrorBody),
        (status = 422, description = "The URL is not http(s), plain http without insecure_http, or the secret is missing or not allowed for the kind", body = super::openapi::ErrorBody),
    )
)]
/// Needs the global admin role.
pub async fn add_channel(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<NewChannel>, JsonRejection>,
) -> Result<(StatusCode, Json<Channel>), ApiError> {
    principal.require(Role::Admin)?;
    let r = body(request)?;
    let Checked { shown, secret } = check_channel(&r, false, true)?;
    let timeout = r.timeout_secs.unwrap_or(10);
    let give_up = r.give_up_secs.unwrap_or(86_400);
    let keyring = secret.as_ref().map(|_| keyring(&state)).transpose()?;
    // The ciphertext is bound to the row's id: written in the transaction that makes it.
    let mut tx = state.pool.begin().await?;
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO alert_channels (name, kind, url, insecure_http, timeout_secs, give_up_secs, \
         created_by, email_from, email_to, smtp_username, ca_pem, links_base_url) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (name) DO NOTHING \
         RETURNING id",
    )
    .bind(&r.name)
    .bind(r.kind.as_str())
    .bind(&shown)
    .bind(r.insecure_http)
    .bind(i32::try_from(timeout).unwrap_or(10))
    .bind(i32::try_from(give_up).unwrap_or(86_400))
    .bind(&principal.username)
    .bind(&r.email_from)
    .bind(r.email_to.as_ref().map(|t| t.join(",")))
    .bind(&r.smtp_username)
    .bind(&r.ca_pem)
    .bind(&r.links_base_url)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("a channel named {} exists", r.name),
        ));
    };
    if let (Some(secret), Some(keyring)) = (&secret, &keyring) {
        let sealed = channel::encrypt_secret(keyring, id, secret).map_err(ApiError::internal)?;
        sqlx::query("UPDATE alert_channels SET secret_ciphertext = $2 WHERE id = $1")
            .bind(id)
            .bind(sealed)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(load_channel(&state, id).await?)))
}

/// What a channel stores once its settings are checked: the URL shown, and a new secret to
/// seal (`None`: none, or the stored one stays).
struct Checked {
    shown: String,
    secret: Option<String>,
}

/// Checks a channel's settings as they will be stored (400: what the document states, 422:
/// what it cannot say). `stored_secret`: a secret is stored already (an edit); `url_given`:
/// the URL is new (an edit of a Slack channel without one keeps the stored URL, which is its
/// secret and not at hand).
fn check_channel(
    r: &NewChannel,
    stored_secret: bool,
    url_given: bool,
) -> Result<Checked, ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_body", m);
    if !valid_name(&r.name) {
        return Err(bad(format!(
            "name {:?} must match [a-z0-9][a-z0-9_.-]{{0,62}}",
            r.name
        )));
    }
    if !(1..=2000).contains(&r.url.chars().count()) {
        return Err(bad("url is 1 to 2000 characters".into()));
    }
    let len = |s: &Option<String>, max: usize| {
        s.as_ref()
            .is_none_or(|s| (1..=max).contains(&s.chars().count()))
    };
    if !len(&r.secret, 1000)
        || !len(&r.email_from, 320)
        || !len(&r.smtp_username, 320)
        || !len(&r.ca_pem, 20_000)
        || !len(&r.links_base_url, 2000)
        || r.email_to
            .as_ref()
            .is_some_and(|t| !(1..=50).contains(&t.len()))
    {
        return Err(bad(
            "secret is 1 to 1000 characters, email_from and smtp_username 1 to 320, ca_pem 1 to \
             20000, email_to 1 to 50 addresses"
                .into(),
        ));
    }
    let timeout = r.timeout_secs.unwrap_or(10);
    let give_up = r.give_up_secs.unwrap_or(86_400);
    if !(1..=120).contains(&timeout) || !(60..=604_800).contains(&give_up) {
        return Err(bad(
            "timeout_secs is 1 to 120 and give_up_secs 60 to 604800".into(),
        ));
    }
    let invalid = |m: String| ApiError::unprocessable("invalid_channel", m);
    if let Some(base) = &r.links_base_url {
        channel::check_url(base, true).map_err(|e| invalid(format!("links_base_url: {e}")))?;
    }
    let email_fields = r.email_from.is_some()
        || r.email_to.is_some()
        || r.smtp_username.is_some()
        || r.ca_pem.is_some();
    if r.kind == Kind::Email {
        check_email(r, r.secret.is_some() || stored_secret).map_err(invalid)?;
    } else if email_fields {
        return Err(invalid(format!(
            "email_from, email_to, smtp_username and ca_pem are for email channels, not {}",
            r.kind.as_str()
        )));
    }
    if r.kind == Kind::Slack && !url_given {
        if r.secret.is_some() {
            return Err(invalid(
                "secret: not used by slack channels (the URL is the secret: send url)".into(),
            ));
        }
        return Ok(Checked {
            shown: r.url.clone(),
            secret: None,
        });
    }
    let url = match r.kind {
        Kind::Email => reqwest::Url::parse(&r.url).map_err(|e| invalid(e.to_string()))?,
        _ => channel::check_url(&r.url, r.insecure_http).map_err(|e| invalid(e.to_string()))?,
    };
    if r.kind == Kind::Webhook
        && r.secret
            .as_ref()
            .is_some_and(|s| s.chars().count() < MIN_SECRET_LEN)
    {
        return Err(invalid(format!(
            "secret: at least {MIN_SECRET_LEN} characters, receivers verify the signature with it"
        )));
    }
    let (shown, secret) = match r.kind {
        Kind::Email => (url.to_string(), r.secret.clone()),
        Kind::Webhook => match &r.secret {
            Some(s) => (url.to_string(), Some(s.clone())),
            None if stored_secret => (url.to_string(), None),
            None => {
                return Err(invalid(
                    "secret: a webhook needs one, receivers verify the signature with it".into(),
                ));
            }
        },
        Kind::Slack | Kind::Alertmanager if r.secret.is_some() => {
            return Err(invalid(format!(
                "secret: not used by {} channels",
                r.kind.as_str()
            )));
        }
        Kind::Slack => (channel::redacted(&url), Some(url.to_string())),
        Kind::Alertmanager => (url.to_string(), None),
    };
    Ok(Checked { shown, secret })
}

/// The keyring that seals channel secrets; 503 without a key file.
fn keyring(state: &AppState) -> Result<std::sync::Arc<lasect_pki::secrets::Keyring>, ApiError> {
    state.keyring("channel secrets")
}

/// An email channel's settings, checked before they are stored.
fn check_email(r: &NewChannel, has_secret: bool) -> Result<(), String> {
    channel::check_smtp_url(&r.url, r.insecure_http).map_err(|e| e.to_string())?;
    let from = r
        .email_from
        .as_deref()
        .ok_or("email_from: an email channel needs a sender")?;
    from.parse::<lettre::message::Mailbox>()
        .map_err(|e| format!("email_from {from:?}: {e}"))?;
    let to = r
        .email_to
        .as_deref()
        .ok_or("email_to: an email channel needs recipients")?;
    for a in to {
        if a.contains(',') {
            return Err(format!("email_to {a:?}: one address per item"));
        }
        a.parse::<lettre::message::Mailbox>()
            .map_err(|e| format!("email_to {a:?}: {e}"))?;
    }
    if has_secret != r.smtp_username.is_some() {
        return Err("smtp_username and secret (the SMTP password) go together".into());
    }
    if let Some(pem) = &r.ca_pem {
        lettre::transport::smtp::client::Certificate::from_pem(pem.as_bytes())
            .map_err(|e| format!("ca_pem: not a PEM certificate: {e}"))?;
    }
    Ok(())
}

#[utoipa::path(
    get,
    path = "/api/v1/alerts/channels/{id}",
    tag = "alerts",
    params(("id" = i64, Path, minimum = 1, description = "Channel id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The channel, without its secret", body = Channel),
        ById,
    )
)]
/// Needs a global role (viewer or more).
pub async fn show_channel(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<Channel>, ApiError> {
    principal.require(Role::Viewer)?;
    let id = path_params(path)?;
    Ok(Json(load_channel(&state, id).await?))
}

#[derive(sqlx::FromRow)]
struct StoredChannel {
    name: String,
    kind: String,
    url: String,
    insecure_http: bool,
    has_secret: bool,
    timeout_secs: i32,
    give_up_secs: i32,
    email_from: Option<String>,
    email_to: Option<String>,
    smtp_username: Option<String>,
    ca_pem: Option<String>,
    links_base_url: Option<String>,
}

#[utoipa::path(
    patch,
    path = "/api/v1/alerts/channels/{id}",
    tag = "alerts",
    params(("id" = i64, Path, minimum = 1, description = "Channel id")),
    request_body = ChannelPatch,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The channel as it now is (without its secret)", body = Channel),
        ById,
        (status = 409, description = "A channel of that name exists", body = super::openapi::ErrorBody),
        (status = 422, description = "The channel as changed would be invalid (URL, secret, email fields)", body = super::openapi::ErrorBody),
    )
)]
/// Needs the global admin role.
pub async fn edit_channel(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<i64>, PathRejection>,
    request: Result<Json<ChannelPatch>, JsonRejection>,
) -> Result<Json<Channel>, ApiError> {
    principal.require(Role::Admin)?;
    let id = path_params(path)?;
    let p = body(request)?;
    let mut tx = state.pool.begin().await?;
    let stored: Option<StoredChannel> = sqlx::query_as(
        "SELECT name, kind, url, insecure_http, secret_ciphertext IS NOT NULL AS has_secret, \
         timeout_secs, give_up_secs, email_from, email_to, smtp_username, ca_pem, \
         links_base_url FROM alert_channels WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let stored = stored.ok_or_else(|| ApiError::not_found(format!("no channel with id {id}")))?;
    let kind = Kind::parse(&stored.kind)
        .ok_or_else(|| ApiError::internal(format!("channel kind {}", stored.kind)))?;
    // The channel as it will be, checked whole: a change may break a rule that involves a
    // field it leaves alone (insecure_http false under a stored http:// URL).
    let merged = NewChannel {
        name: p.name.clone().unwrap_or(stored.name),
        kind,
        url: p.url.clone().unwrap_or(stored.url),
        secret: p.secret.clone(),
        insecure_http: p.insecure_http.unwrap_or(stored.insecure_http),
        email_from: p.email_from.clone().or(stored.email_from),
        email_to: p.email_to.clone().or_else(|| {
            stored
                .email_to
                .map(|t| t.split(',').map(str::to_owned).collect())
        }),
        smtp_username: p.smtp_username.clone().or(stored.smtp_username),
        ca_pem: p.ca_pem.clone().or(stored.ca_pem),
        links_base_url: p.links_base_url.clone().or(stored.links_base_url),
        timeout_secs: Some(
            p.timeout_secs
                .unwrap_or(u32::try_from(stored.timeout_secs).unwrap_or(10)),
        ),
        give_up_secs: Some(
            p.give_up_secs
                .unwrap_or(u32::try_from(stored.give_up_secs).unwrap_or(86_400)),
        ),
    };
    let Checked { shown, secret } = check_channel(&merged, stored.has_secret, p.url.is_some())?;
    let sealed = match &secret {
        None => None,
        Some(s) => {
            Some(channel::encrypt_secret(&*keyring(&state)?, id, s).map_err(ApiError::internal)?)
        }
    };
    let updated = sqlx::query(
        "UPDATE alert_channels SET name = $2, url = $3, insecure_http = $4, \
         enabled = coalesce($5, enabled), timeout_secs = $6, give_up_secs = $7, email_from = $8, \
         email_to = $9, smtp_username = $10, ca_pem = $11, links_base_url = $12, \
         secret_ciphertext = coalesce($13, secret_ciphertext) WHERE id = $1",
    )
    .bind(id)
    .bind(&merged.name)
    .bind(&shown)
    .bind(merged.insecure_http)
    .bind(p.enabled)
    .bind(i32::try_from(merged.timeout_secs.unwrap_or(10)).unwrap_or(10))
    .bind(i32::try_from(merged.give_up_secs.unwrap_or(86_400)).unwrap_or(86_400))
    .bind(&merged.email_from)
    .bind(merged.email_to.as_ref().map(|t| t.join(",")))
    .bind(&merged.smtp_username)
    .bind(&merged.ca_pem)
    .bind(&merged.links_base_url)
    .bind(sealed)
    .execute(&mut *tx)
    .await;
    match updated {
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("a channel named {} exists", merged.name),
            ));
        }
        other => {
            other?;
        }
    }
    tx.commit().await?;
    Ok(Json(load_channel(&state, id).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/alerts/channels/{id}",
    tag = "alerts",
    params(("id" = i64, Path, minimum = 1, description = "Channel id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed, with its routes and pending deliveries"),
        ById,
    )
)]
/// Needs the global admin role.
pub async fn remove_channel(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Admin)?;
    let id = path_params(path)?;
    let done = sqlx::query("DELETE FROM alert_channels WHERE id = $1")
        .bind(id)
        .execute(&state.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("no channel with id {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/v1/alerts/channels/{id}/test",
    tag = "alerts",
    params(("id" = i64, Path, minimum = 1, description = "Channel id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Sent now (recorded in the deliveries); whether the receiver took it", body = TestResult),
        ById,
        (status = 422, description = "The channel cannot be used (its secret does not decrypt)", body = super::openapi::ErrorBody),
    )
)]
/// Needs the global admin role.
pub async fn test_channel(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<TestResult>, ApiError> {
    principal.require(Role::Admin)?;
    let id = path_params(path)?;
    load_channel(&state, id).await?;
    let keyring = state.secrets.as_ref().and_then(|k| k.keyring().ok());
    let mut conn = state.pool.acquire().await?;
    let target = channel::load_target(&mut conn, id, keyring.as_deref())
        .await
        .map_err(|e| match e {
            channel::TargetError::Store(e) => ApiError::from(e),
            channel::TargetError::Gone(_) => {
                ApiError::not_found(format!("no channel with id {id}"))
            }
            e @ channel::TargetError::Unusable { .. } => {
                ApiError::unprocessable("invalid_channel", e.to_string())
            }
        })?;
    let now = Utc::now();
    let key = format!("lasect-test-{}", uuid_like());
    let mut labels = BTreeMap::new();
    labels.insert("alertname".to_owned(), "lasect_test".to_owned());
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "summary".to_owned(),
        format!(
            "test notification from Lasect, sent by {}",
            principal.username
        ),
    );
    let n = Notification {
        version: 1,
        kind: "test".into(),
        idempotency_key: key.clone(),
        alert_id: None,
        rule: "lasect_test".into(),
        severity: "info".into(),
        state: "firing".into(),
        key: "test".into(),
        instance_id: None,
        agent_id: None,
        value: None,
        threshold: None,
        labels,
        annotations,
        starts_at: now,
        ends_at: None,
        links: Links::of("lasect_test", None),
    };
    let result = send::send(&target, &n).await;
    let (ok, status, message) = match &result {
        Ok(a) => (true, Some(a.status), a.body.clone()),
        Err(e) => (false, e.status().filter(|s| *s > 0), e.to_string()),
    };
    let mut tx = state.pool.begin().await?;
    let delivery: i64 = sqlx::query_scalar(
        "INSERT INTO alert_deliveries (idempotency_key, channel_id, kind, notification, state, \
         attempts, give_up_at, finished_at, last_status, last_error) \
         VALUES ($1, $2, 'test', $3, $4, 1, now(), now(), $5, $6) RETURNING id",
    )
    .bind(&key)
    .bind(id)
    .bind(serde_json::to_value(&n).unwrap_or_default())
    .bind(if ok { "delivered" } else { "failed" })
    .bind(status.map(i32::from))
    .bind((!ok).then_some(&message))
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO alert_delivery_attempts (delivery_id, attempt, ok, status, error) \
         VALUES ($1, 1, $2, $3, $4)",
    )
    .bind(delivery)
    .bind(ok)
    .bind(status.map(i32::from))
    .bind((!ok).then_some(&message))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(TestResult {
        ok,
        status,
        message,
    }))
}

fn uuid_like() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(sqlx::FromRow)]
struct RouteRow {
    id: i64,
    channel_id: i64,
    channel: String,
    min_severity: String,
    matchers: String,
    repeat_secs: i32,
    send_resolved: bool,
    created_at: DateTime<Utc>,
    created_by: String,
}

impl From<RouteRow> for Route {
    fn from(r: RouteRow) -> Self {
        Route {
            id: r.id,
            channel_id: r.channel_id,
            channel: r.channel,
            min_severity: r.min_severity,
            matchers: r.matchers,
            repeat_secs: r.repeat_secs,
            send_resolved: r.send_resolved,
            created_at: rfc3339(r.created_at),
            created_by: r.created_by,
        }
    }
}

const SELECT_ROUTE: &str = "SELECT r.id, r.channel_id, c.name AS channel, r.min_severity, \
     r.matchers, r.repeat_secs, r.send_resolved, r.created_at, r.created_by \
     FROM alert_routes r JOIN alert_channels c ON c.id = r.channel_id";

#[utoipa::path(
    get,
    path = "/api/v1/alerts/routes",
    tag = "alerts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every route", body = RouteList),
        RoleNeeded,
    )
)]
/// Needs a global role (viewer or more).
pub async fn list_routes(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<RouteList>, ApiError> {
    principal.require(Role::Viewer)?;
    let rows: Vec<RouteRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_ROUTE} ORDER BY r.id")))
            .fetch_all(&state.pool)
            .await?;
    Ok(Json(RouteList {
        routes: rows.into_iter().map(Route::from).collect(),
    }))
}

/// The route `id` as it now is (just written by the caller, so it exists).
async fn load_route(pool: &sqlx::PgPool, id: i64) -> Result<Route, ApiError> {
    let row: RouteRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_ROUTE} WHERE r.id = $1"
    )))
    .bind(id)
    .fetch_one(pool)
    .await?;
    Ok(row.into())
}

#[utoipa::path(
    post,
    path = "/api/v1/alerts/routes",
    tag = "alerts",
    request_body = NewRoute,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The route", body = Route),
        WithInput,
        (status = 422, description = "No such channel, matchers that do not parse (with the position), or a repeat interval between 1 and 59 s", body = super::openapi::ErrorBody),
    )
)]
/// Needs the global admin role.
pub async fn add_route(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<NewRoute>, JsonRejection>,
) -> Result<(StatusCode, Json<Route>), ApiError> {
    principal.require(Role::Admin)?;
    let r = body(request)?;
    let matchers = r.matchers.unwrap_or_default();
    let repeat = r.repeat_secs.unwrap_or(14_400);
    if !(1..=63).contains(&r.channel.chars().count())
        || matchers.chars().count() > 1000
        || repeat > 604_800
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            "channel is 1 to 63 characters, matchers at most 1000, repeat_secs 0 to 604800",
        ));
    }
    let invalid = |m: String| ApiError::unprocessable("invalid_route", m);
    if (1..60).contains(&repeat) {
        return Err(invalid("repeat_secs: 0 (never) or at least 60".into()));
    }
    selector::parse(&matchers).map_err(|e| invalid(format!("matchers: {e}")))?;
    let severity = r.min_severity.unwrap_or(MinSeverity::Info).as_str();
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO alert_routes (channel_id, min_severity, matchers, repeat_secs, \
         send_resolved, created_by) \
         SELECT id, $2, $3, $4, $5, $6 FROM alert_channels WHERE name = $1 RETURNING id",
    )
    .bind(&r.channel)
    .bind(severity)
    .bind(&matchers)
    .bind(i32::try_from(repeat).unwrap_or(0))
    .bind(r.send_resolved.unwrap_or(true))
    .bind(&principal.username)
    .fetch_optional(&state.pool)
    .await?;
    let id = id.ok_or_else(|| invalid(format!("channel: no channel named {:?}", r.channel)))?;
    Ok((
        StatusCode::CREATED,
        Json(load_route(&state.pool, id).await?),
    ))
}

#[utoipa::path(
    patch,
    path = "/api/v1/alerts/routes/{id}",
    tag = "alerts",
    params(("id" = i64, Path, minimum = 1, description = "Route id")),
    request_body = RoutePatch,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The route as it now is", body = Route),
        ById,
        (status = 422, description = "Matchers that do not parse (with the position), or a repeat interval between 1 and 59 s", body = super::openapi::ErrorBody),
    )
)]
/// Needs the global admin role. Applies to notifications enqueued from now on.
pub async fn edit_route(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<i64>, PathRejection>,
    request: Result<Json<RoutePatch>, JsonRejection>,
) -> Result<Json<Route>, ApiError> {
    principal.require(Role::Admin)?;
    let id = path_params(path)?;
    let r = body(request)?;
    if r.matchers
        .as_ref()
        .is_some_and(|m| m.chars().count() > 1000)
        || r.repeat_secs.is_some_and(|s| s > 604_800)
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            "matchers are at most 1000 characters, repeat_secs 0 to 604800",
        ));
    }
    let invalid = |m: String| ApiError::unprocessable("invalid_route", m);
    if r.repeat_secs.is_some_and(|s| (1..60).contains(&s)) {
        return Err(invalid("repeat_secs: 0 (never) or at least 60".into()));
    }
    if let Some(m) = &r.matchers {
        selector::parse(m).map_err(|e| invalid(format!("matchers: {e}")))?;
    }
    let severity = r.min_severity.map(MinSeverity::as_str);
    let done = sqlx::query(
        "UPDATE alert_routes SET min_severity = coalesce($2, min_severity), \
         matchers = coalesce($3, matchers), repeat_secs = coalesce($4, repeat_secs), \
         send_resolved = coalesce($5, send_resolved) WHERE id = $1",
    )
    .bind(id)
    .bind(severity)
    .bind(&r.matchers)
    .bind(r.repeat_secs.map(|s| i32::try_from(s).unwrap_or(0)))
    .bind(r.send_resolved)
    .execute(&state.pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("no route with id {id}")));
    }
    Ok(Json(load_route(&state.pool, id).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/alerts/routes/{id}",
    tag = "alerts",
    params(("id" = i64, Path, minimum = 1, description = "Route id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed (deliveries already enqueued still go out)"),
        ById,
    )
)]
/// Needs the global admin role.
pub async fn remove_route(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Admin)?;
    let id = path_params(path)?;
    let done = sqlx::query("DELETE FROM alert_routes WHERE id = $1")
        .bind(id)
        .execute(&state.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("no route with id {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

recent_query! {
    pub struct DeliveryQuery {
        #[param(minimum = 1)]
        pub alert_id: Option<i64>,
        #[param(minimum = 1)]
        pub channel_id: Option<i64>,
    }
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    idempotency_key: String,
    channel_id: i64,
    alert_id: Option<i64>,
    kind: String,
    rule: Option<String>,
    state: String,
    created_at: DateTime<Utc>,
    next_attempt_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    attempts: serde_json::Value,
}

#[derive(Deserialize)]
struct AttemptRow {
    attempt: i32,
    at: DateTime<Utc>,
    ok: bool,
    status: Option<i32>,
    error: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/alerts/deliveries",
    tag = "alerts",
    params(DeliveryQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Notifications with every attempt, newest first", body = DeliveryList),
        WithInput,
        (status = 422, description = "since is neither RFC 3339 nor a duration", body = super::openapi::ErrorBody),
    )
)]
/// Needs a global role (viewer or more).
pub async fn deliveries(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<DeliveryQuery>, QueryRejection>,
) -> Result<Json<DeliveryList>, ApiError> {
    principal.require(Role::Viewer)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    if q.alert_id.is_some_and(|i| i < 1) || q.channel_id.is_some_and(|i| i < 1) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "alert_id and channel_id are at least 1",
        ));
    }
    let Recent { since, limit } = q.recent()?;
    let rows: Vec<DeliveryRow> = sqlx::query_as(
        "SELECT d.id, d.idempotency_key, d.channel_id, d.alert_id, d.kind, \
         d.notification ->> 'rule' AS rule, d.state, d.created_at, d.next_attempt_at, \
         d.finished_at, d.last_error, \
         coalesce((SELECT jsonb_agg(jsonb_build_object('attempt', a.attempt, 'at', a.at, \
             'ok', a.ok, 'status', a.status, 'error', a.error) ORDER BY a.attempt) \
           FROM alert_delivery_attempts a WHERE a.delivery_id = d.id), '[]') AS attempts \
         FROM alert_deliveries d \
         WHERE ($1::bigint IS NULL OR d.alert_id = $1) AND ($2::bigint IS NULL OR d.channel_id = $2) \
           AND ($3::timestamptz IS NULL OR d.created_at >= $3) \
         ORDER BY d.id DESC LIMIT $4",
    )
    .bind(q.alert_id)
    .bind(q.channel_id)
    .bind(since)
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    let deliveries = rows
        .into_iter()
        .map(|r| {
            let attempts: Vec<AttemptRow> =
                serde_json::from_value(r.attempts).map_err(ApiError::internal)?;
            Ok(Delivery {
                id: r.id,
                idempotency_key: r.idempotency_key,
                channel_id: r.channel_id,
                alert_id: r.alert_id,
                kind: r.kind,
                rule: r.rule.unwrap_or_default(),
                next_attempt_at: (r.state == "pending").then(|| rfc3339(r.next_attempt_at)),
                state: r.state,
                created_at: rfc3339(r.created_at),
                finished_at: r.finished_at.map(rfc3339),
                last_error: r.last_error,
                attempts: attempts
                    .into_iter()
                    .map(|a| Attempt {
                        attempt: a.attempt,
                        at: rfc3339(a.at),
                        ok: a.ok,
                        status: a.status,
                        error: a.error,
                    })
                    .collect(),
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(DeliveryList { deliveries }))
}
