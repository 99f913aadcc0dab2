//! Rules in the store: read back into [`RuleDef`], written after validation, and applied as
//! a whole set (`apply`: create, update, delete, in one transaction; a dry run only computes
//! the difference).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::rule::{RuleDef, Severity};

/// A rule as stored, with what the store adds.
#[derive(Debug, Clone)]
pub struct StoredRule {
    pub id: i64,
    pub source: String,
    pub def: RuleDef,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
    pub last_evaluated_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    name: String,
    severity: String,
    enabled: bool,
    source: String,
    scope: serde_json::Value,
    condition: serde_json::Value,
    for_secs: i32,
    hysteresis: f64,
    labels: serde_json::Value,
    annotations: serde_json::Value,
    updated_at: DateTime<Utc>,
    updated_by: String,
    last_evaluated_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

/// A stored rule that no longer reads as a [`RuleDef`] (written by another version).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    #[error("rule {name}: {message}")]
    Unreadable { name: String, message: String },
}

fn from_row(r: Row) -> Result<StoredRule, LoadError> {
    let unreadable = |message: String| LoadError::Unreadable {
        name: r.name.clone(),
        message,
    };
    let def = RuleDef {
        severity: Severity::parse(&r.severity)
            .ok_or_else(|| unreadable(format!("severity {}", r.severity)))?,
        enabled: r.enabled,
        scope: serde_json::from_value(r.scope.clone())
            .map_err(|e| unreadable(format!("scope: {e}")))?,
        condition: serde_json::from_value(r.condition.clone())
            .map_err(|e| unreadable(format!("condition: {e}")))?,
        for_secs: u32::try_from(r.for_secs).unwrap_or(0),
        hysteresis: r.hysteresis,
        labels: serde_json::from_value(r.labels.clone())
            .map_err(|e| unreadable(format!("labels: {e}")))?,
        annotations: serde_json::from_value(r.annotations.clone())
            .map_err(|e| unreadable(format!("annotations: {e}")))?,
        name: r.name,
    };
    Ok(StoredRule {
        id: r.id,
        source: r.source,
        def,
        updated_at: r.updated_at,
        updated_by: r.updated_by,
        last_evaluated_at: r.last_evaluated_at,
        last_error: r.last_error,
    })
}

const SELECT: &str = "SELECT id, name, severity, enabled, source, scope, condition, for_secs, \
     hysteresis, labels, annotations, updated_at, updated_by, last_evaluated_at, last_error \
     FROM alert_rules";

/// Every rule, by name. Rules that do not read are returned as errors beside the others.
pub async fn load_all<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
) -> Result<Vec<Result<StoredRule, LoadError>>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY name")))
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

pub async fn load_one<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    id: i64,
) -> Result<Option<StoredRule>, LoadError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.map(from_row).transpose()
}

pub async fn find_by_name<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    name: &str,
) -> Result<Option<StoredRule>, LoadError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE name = $1")))
        .bind(name)
        .fetch_optional(db)
        .await?;
    row.map(from_row).transpose()
}

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Inserts a validated rule (source `user`); `None` when the name is taken.
pub async fn insert(
    conn: &mut sqlx::PgConnection,
    def: &RuleDef,
    by: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO alert_rules (name, severity, enabled, source, scope, condition, for_secs, \
         hysteresis, labels, annotations, updated_by) \
         VALUES ($1, $2, $3, 'user', $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(&def.name)
    .bind(def.severity.as_str())
    .bind(def.enabled)
    .bind(json(&def.scope))
    .bind(json(&def.condition))
    .bind(i32::try_from(def.for_secs).unwrap_or(i32::MAX))
    .bind(def.hysteresis)
    .bind(json(&def.labels))
    .bind(json(&def.annotations))
    .bind(by)
    .fetch_optional(conn)
    .await
}

/// Replaces rule `id` with a validated definition (the name may change); `false` when there
/// is no such rule. The rule's alerts stay (their keys may no longer come up, and resolve).
pub async fn update(
    conn: &mut sqlx::PgConnection,
    id: i64,
    def: &RuleDef,
    by: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE alert_rules SET name = $2, severity = $3, enabled = $4, scope = $5, \
         condition = $6, for_secs = $7, hysteresis = $8, labels = $9, annotations = $10, \
         updated_by = $11, updated_at = now(), last_error = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(&def.name)
    .bind(def.severity.as_str())
    .bind(def.enabled)
    .bind(json(&def.scope))
    .bind(json(&def.condition))
    .bind(i32::try_from(def.for_secs).unwrap_or(i32::MAX))
    .bind(def.hysteresis)
    .bind(json(&def.labels))
    .bind(json(&def.annotations))
    .bind(by)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn delete(conn: &mut sqlx::PgConnection, id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM alert_rules WHERE id = $1 AND source = 'user'")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

// Declared with the API's bodies: the CLI reads them from `apply`'s answer.
pub use lasect_api_contract::alerts::{Changed, Diff};

fn changed_fields(old: &RuleDef, new: &RuleDef) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |name: &str, same: bool| {
        if !same {
            out.push(name.to_owned());
        }
    };
    cmp("severity", old.severity == new.severity);
    cmp("enabled", old.enabled == new.enabled);
    cmp("scope", old.scope == new.scope);
    cmp("condition", old.condition == new.condition);
    cmp("for_secs", old.for_secs == new.for_secs);
    cmp("hysteresis", old.hysteresis == new.hysteresis);
    cmp("labels", old.labels == new.labels);
    cmp("annotations", old.annotations == new.annotations);
    out
}

/// The difference between the stored rules and `set` (validated, names unique). Default-pack
/// rules missing from the set stay: the pack is on unless a rule of it is listed disabled.
pub fn diff(stored: &[StoredRule], set: &[RuleDef]) -> Diff {
    let by_name: BTreeMap<&str, &StoredRule> =
        stored.iter().map(|r| (r.def.name.as_str(), r)).collect();
    let mut d = Diff::default();
    for new in set {
        match by_name.get(new.name.as_str()) {
            None => d.created.push(new.name.clone()),
            Some(old) => {
                let fields = changed_fields(&old.def, new);
                if fields.is_empty() {
                    d.unchanged += 1;
                } else {
                    d.updated.push(Changed {
                        name: new.name.clone(),
                        fields,
                    });
                }
            }
        }
    }
    for r in stored {
        if r.source == "user" && !set.iter().any(|n| n.name == r.def.name) {
            d.deleted.push(r.def.name.clone());
        }
    }
    d
}

/// Applies `set` in one transaction (the caller's); returns the difference applied.
pub async fn apply(
    conn: &mut sqlx::PgConnection,
    stored: &[StoredRule],
    set: &[RuleDef],
    by: &str,
) -> Result<Diff, sqlx::Error> {
    let d = diff(stored, set);
    for name in &d.deleted {
        sqlx::query("DELETE FROM alert_rules WHERE name = $1 AND source = 'user'")
            .bind(name)
            .execute(&mut *conn)
            .await?;
    }
    for new in set {
        if d.created.contains(&new.name) {
            insert(&mut *conn, new, by).await?;
        } else if let Some(c) = d.updated.iter().find(|c| c.name == new.name)
            && let Some(old) = stored.iter().find(|r| r.def.name == c.name)
        {
            update(&mut *conn, old.id, new, by).await?;
        }
    }
    Ok(d)
}

/// How long state changes are kept.
pub const HISTORY_DAYS: i32 = 90;
/// How long an alert that ended (inactive or resolved) keeps its row once nothing changed.
pub const ENDED_ALERT_DAYS: i32 = 7;

/// Deletes history older than [`HISTORY_DAYS`] and alerts ended more than
/// [`ENDED_ALERT_DAYS`] ago (their history stays); returns (events, alerts) deleted. Run
/// hourly with the store's maintenance.
pub async fn apply_retention(pool: &sqlx::PgPool) -> Result<(u64, u64), sqlx::Error> {
    let events =
        sqlx::query("DELETE FROM alert_events WHERE at < now() - make_interval(days => $1)")
            .bind(HISTORY_DAYS)
            .execute(pool)
            .await?
            .rows_affected();
    let alerts = sqlx::query(
        "DELETE FROM alert_instances WHERE state IN ('inactive', 'resolved') \
         AND since < now() - make_interval(days => $1)",
    )
    .bind(ENDED_ALERT_DAYS)
    .execute(pool)
    .await?
    .rows_affected();
    Ok((events, alerts))
}
