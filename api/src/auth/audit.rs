//! The audit log (FR33): who did what to what, from where, and how it ended.
//!
//! The gate layer records every mutating request; code that sends an operation to an agent calls
//! [`record`] itself. Rows are append-only: the store refuses UPDATE, DELETE and TRUNCATE on
//! `audit_log` (V12), except the deletes of [`apply_retention`].

use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    /// Refused by authentication or authorization.
    Denied,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }

    /// The outcome an HTTP status stands for.
    pub fn of_status(status: axum::http::StatusCode) -> Self {
        match status.as_u16() {
            200..=399 => Outcome::Success,
            401 | 403 | 429 => Outcome::Denied,
            _ => Outcome::Failure,
        }
    }
}

/// One audit row.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// Username, `anonymous`, or for operations of the system itself `system`.
    pub actor: &'a str,
    /// What was attempted, e.g. `POST /api/v1/users` or `agent.disable`.
    pub action: &'a str,
    pub target: Option<&'a str>,
    /// Source address of the request.
    pub source: Option<&'a str>,
    pub outcome: Outcome,
    pub error: Option<&'a str>,
}

/// Appends one row to the audit log.
pub async fn record(pool: &PgPool, entry: &AuditEntry<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (actor, action, target, source, outcome, error) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.target)
    .bind(entry.source)
    .bind(entry.outcome.as_str())
    .bind(entry.error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes audit rows (and counts of refused anonymous requests) older than `keep_days`;
/// returns how many audit rows went.
pub async fn apply_retention(pool: &PgPool, keep_days: u32) -> Result<i64, sqlx::Error> {
    super::failures::apply_retention(pool, keep_days).await?;
    sqlx::query_scalar("SELECT lasect_audit_retention($1)")
        .bind(i32::try_from(keep_days).unwrap_or(i32::MAX))
        .fetch_one(pool)
        .await
}

/// Set by a handler on its response to name the actor when the caller is not authenticated
/// (login names the username tried).
#[derive(Debug, Clone)]
pub struct AuditActor(pub String);

/// Set by a handler on its response to name the target better than the request path does.
#[derive(Debug, Clone)]
pub struct AuditTarget(pub String);
