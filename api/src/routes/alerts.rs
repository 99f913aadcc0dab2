//! Alerts as they stand and their history: `GET /api/v1/alerts` (`?state=firing`),
//! `POST /api/v1/alerts/{id}/ack`, `GET /api/v1/alerts/history`.
//!
//! Who sees what: a global role sees every alert; a role granted by instance label sees the
//! alerts of those instances only (alerts of an agent need a global role). Acknowledging
//! needs the global role `user`. Rules: `alerts_rules.rs`; silences: `alerts_silences.rs`.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::auth_routes::path_params;
use super::instances::rfc3339;
use super::openapi::responses::{ById, Filtered};
use super::time_range::{Recent, recent_query};
use super::{ApiError, AppState};
use crate::alerts::evaluator::{active_silences, string_labels};
use crate::alerts::selector;
use crate::alerts::state::State as AlertState;
use crate::auth::principal::Principal;
use crate::auth::role::Role;

pub use lasect_api_contract::alerts::{Alert, AlertEvent, AlertHistory, AlertList};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// Only alerts in this state (default: pending and firing).
    #[param(inline)]
    pub state: Option<StateFilter>,
    /// Only alerts of this rule.
    #[param(max_length = 63)]
    pub rule: Option<String>,
    #[param(minimum = 1)]
    pub instance_id: Option<i64>,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateFilter {
    Inactive,
    Pending,
    Firing,
    Resolved,
    /// Pending and firing.
    Active,
    All,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    rule: String,
    severity: String,
    state: String,
    since: DateTime<Utc>,
    instance_id: Option<i64>,
    instance: Option<String>,
    instance_labels: Option<serde_json::Value>,
    agent_id: Option<String>,
    key_labels: serde_json::Value,
    labels: serde_json::Value,
    annotations: serde_json::Value,
    last_value: Option<f64>,
    last_evaluated: DateTime<Utc>,
    acknowledged_by: Option<String>,
    acknowledged_at: Option<DateTime<Utc>>,
}

/// Whether `principal` may see something about `instance_labels` (`None`: an agent's).
pub(crate) fn may_see(principal: &Principal, instance_labels: Option<&serde_json::Value>) -> bool {
    if principal.global_role().is_some() {
        return true;
    }
    instance_labels.is_some_and(|l| principal.role_for_labels(l).is_some())
}

/// What the document states about the shared query parameters (400 when broken).
fn check_params(rule: Option<&String>, instance_id: Option<i64>) -> Result<(), ApiError> {
    if rule.is_some_and(|r| r.chars().count() > 63) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "rule is at most 63 characters",
        ));
    }
    if instance_id.is_some_and(|i| i < 1) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "instance_id must be at least 1",
        ));
    }
    Ok(())
}

const SELECT: &str = "SELECT a.id, r.name AS rule, r.severity, a.state, a.since, a.instance_id, \
     i.name AS instance, i.labels AS instance_labels, a.agent_id, a.key_labels, a.labels, \
     a.annotations, a.last_value, a.last_evaluated, a.acknowledged_by, a.acknowledged_at \
     FROM alert_instances a JOIN alert_rules r ON r.id = a.rule_id \
     LEFT JOIN instances i ON i.id = a.instance_id";

#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    params(AlertsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Alerts (default: pending and firing), firing first", body = AlertList),
        Filtered,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<AlertsQuery>, QueryRejection>,
) -> Result<Json<AlertList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    check_params(query.rule.as_ref(), query.instance_id)?;
    let states: Vec<&str> = match query.state.unwrap_or(StateFilter::Active) {
        StateFilter::Inactive => vec!["inactive"],
        StateFilter::Pending => vec!["pending"],
        StateFilter::Firing => vec!["firing"],
        StateFilter::Resolved => vec!["resolved"],
        StateFilter::Active => vec!["pending", "firing"],
        StateFilter::All => vec!["inactive", "pending", "firing", "resolved"],
    };
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE a.state = ANY($1) AND ($2::text IS NULL OR r.name = $2) \
         AND ($3::int8 IS NULL OR a.instance_id = $3) \
         ORDER BY a.state = 'firing' DESC, \
           array_position(ARRAY['critical', 'warning', 'info'], r.severity), a.since DESC, a.id \
         LIMIT 10000"
    )))
    .bind(&states)
    .bind(&query.rule)
    .bind(query.instance_id)
    .fetch_all(&state.pool)
    .await?;
    let mut conn = state.pool.acquire().await?;
    let silences = active_silences(&mut conn, Utc::now()).await?;
    let alerts = rows
        .into_iter()
        .filter(|r| may_see(&principal, r.instance_labels.as_ref()))
        .map(|r| to_alert(r, &silences))
        .collect();
    Ok(Json(AlertList { alerts }))
}

fn to_alert(r: Row, silences: &[Vec<selector::Matcher>]) -> Alert {
    let labels = string_labels(&r.labels);
    Alert {
        id: r.id,
        rule: r.rule,
        severity: r.severity,
        state: AlertState::parse(&r.state).unwrap_or(AlertState::Inactive),
        since: rfc3339(r.since),
        instance_id: r.instance_id,
        instance: r.instance,
        agent_id: r.agent_id,
        key_labels: string_labels(&r.key_labels),
        silenced: silences.iter().any(|m| selector::matches_all(m, &labels)),
        labels,
        annotations: string_labels(&r.annotations),
        value: r.last_value.filter(|v| v.is_finite()),
        last_evaluated: rfc3339(r.last_evaluated),
        acknowledged_by: r.acknowledged_by,
        acknowledged_at: r.acknowledged_at.map(rfc3339),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/ack",
    tag = "alerts",
    params(("id" = i64, Path, minimum = 1, description = "Alert id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The acknowledged alert (until it resolves)", body = Alert),
        ById,
        (status = 409, description = "The alert is neither pending nor firing", body = super::openapi::ErrorBody),
    )
)]
/// Needs the global user role.
pub async fn ack(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<Alert>, ApiError> {
    principal.require(Role::User)?;
    let id = path_params(path)?;
    let current: Option<String> =
        sqlx::query_scalar("SELECT state FROM alert_instances WHERE id = $1")
            .bind(id)
            .fetch_optional(&state.pool)
            .await?;
    match current.as_deref() {
        None => return Err(ApiError::not_found(format!("no alert with id {id}"))),
        Some("pending" | "firing") => {}
        Some(other) => {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "conflict",
                format!("alert {id} is {other}: only pending or firing alerts are acknowledged"),
            ));
        }
    }
    sqlx::query(
        "UPDATE alert_instances SET acknowledged_by = $2, acknowledged_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(&principal.username)
    .execute(&state.pool)
    .await?;
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE a.id = $1")))
        .bind(id)
        .fetch_one(&state.pool)
        .await?;
    let mut conn = state.pool.acquire().await?;
    let silences = active_silences(&mut conn, Utc::now()).await?;
    Ok(Json(to_alert(row, &silences)))
}

recent_query! {
    pub struct HistoryQuery {
        #[param(max_length = 63)]
        pub rule: Option<String>,
        #[param(minimum = 1)]
        pub instance_id: Option<i64>,
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    at: DateTime<Utc>,
    alert_id: Option<i64>,
    rule_name: String,
    severity: String,
    instance_id: Option<i64>,
    instance_labels: Option<serde_json::Value>,
    agent_id: Option<String>,
    from_state: String,
    to_state: String,
    value: Option<f64>,
    threshold: Option<f64>,
    labels: serde_json::Value,
    annotations: serde_json::Value,
    silenced: bool,
}

const SELECT_EVENTS: &str = "SELECT e.id, e.at, e.alert_id, e.rule_name, e.severity, \
     e.instance_id, i.labels AS instance_labels, e.agent_id, e.from_state, e.to_state, e.value, \
     e.threshold, e.labels, e.annotations, e.silenced \
     FROM alert_events e LEFT JOIN instances i ON i.id = e.instance_id";

impl EventRow {
    fn event(self) -> AlertEvent {
        AlertEvent {
            id: self.id,
            at: rfc3339(self.at),
            alert_id: self.alert_id,
            rule: self.rule_name,
            severity: self.severity,
            instance_id: self.instance_id,
            agent_id: self.agent_id,
            from_state: self.from_state,
            to_state: self.to_state,
            value: self.value.filter(|v| v.is_finite()),
            threshold: self.threshold.filter(|v| v.is_finite()),
            labels: string_labels(&self.labels),
            annotations: string_labels(&self.annotations),
            silenced: self.silenced,
        }
    }
}

/// The state changes with ids in `(after, up_to]`, oldest first, each with the labels of its
/// instance (`None`: an agent's) so a stream can apply [`may_see`] per client.
pub(crate) async fn events_between(
    pool: &sqlx::PgPool,
    after: i64,
    up_to: i64,
) -> Result<Vec<(AlertEvent, Option<serde_json::Value>)>, sqlx::Error> {
    let rows: Vec<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_EVENTS} WHERE e.id > $1 AND e.id <= $2 ORDER BY e.id LIMIT 10000"
    )))
    .bind(after)
    .bind(up_to)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|mut r| {
            let labels = r.instance_labels.take();
            (r.event(), labels)
        })
        .collect())
}

#[utoipa::path(
    get,
    path = "/api/v1/alerts/history",
    tag = "alerts",
    params(HistoryQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "State changes, newest first", body = AlertHistory),
        Filtered,
        (status = 422, description = "since is neither RFC 3339 nor a duration", body = super::openapi::ErrorBody),
    )
)]
pub async fn history(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<AlertHistory>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    check_params(query.rule.as_ref(), query.instance_id)?;
    let Recent { since, limit } = query.recent()?;
    let rows: Vec<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_EVENTS} \
         WHERE ($1::text IS NULL OR e.rule_name = $1) AND ($2::int8 IS NULL OR e.instance_id = $2) \
           AND ($3::timestamptz IS NULL OR e.at >= $3) \
         ORDER BY e.at DESC, e.id DESC LIMIT $4"
    )))
    .bind(&query.rule)
    .bind(query.instance_id)
    .bind(since)
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    let events = rows
        .into_iter()
        .filter(|r| may_see(&principal, r.instance_labels.as_ref()))
        .map(EventRow::event)
        .collect();
    Ok(Json(AlertHistory { events }))
}
