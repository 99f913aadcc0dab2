//! `custom`: user-defined SQL metrics from `[[collect.custom]]` (see
//! `custom_config`). Each metric keeps its own next-due time; the instance
//! asks every tick and only due metrics run.
//!
//! A query runs as `SELECT current_database(), to_jsonb(q) FROM (<sql>) q`
//! inside `BEGIN READ ONLY` with `SET LOCAL statement_timeout`: being a
//! subquery, it cannot be a second statement or a data-modifying query, and
//! the transaction could not write anyway. Each row comes back as one JSON
//! object, so any column type can be read: label columns become text,
//! value columns must be numbers (or NULL). A missing column or a value
//! that is not a number fails that metric for the round with one clear
//! warning (again only after it recovered), and a collector event.

use lasect_proto::v1::sample::Family;
use lasect_proto::v1::{CustomLabel, CustomMetricSnapshot, CustomMetricValue, Sample};
use serde_json::Value as Json;
use tokio::time::Instant;
use tokio_postgres::Client;

use super::databases::DatabaseConnections;
use super::events::{EventKind, Events, Failure, truncate};
use super::now_unix_micros;
use crate::custom_config::CustomMetricConfig;

/// Result rows read per metric and database, at most.
pub const MAX_ROWS: usize = 1000;
/// Time the custom metrics may take in one round; the metrics still due
/// after it wait for the next tick, so slow metrics cannot push the
/// instance's round past its bound.
const ROUND_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest label value sent (ingest's bound).
const MAX_LABEL_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RowError {
    #[error("column {column:?} is not in the result (columns: {available})")]
    MissingColumn { column: String, available: String },
    #[error("value column {column:?} is not numeric (got {got})")]
    NotNumeric { column: String, got: &'static str },
    #[error("a result row is not an object")]
    NotAnObject,
}

/// The SQL actually sent for a metric's query.
pub fn wrapped_sql(sql: &str) -> String {
    // Trailing semicolons would end the subquery; the newline keeps a
    // trailing `--` comment from eating the closing parenthesis.
    let sql = sql.trim().trim_end_matches(';').trim_end();
    format!(
        "SELECT current_database()::text, to_jsonb(q) FROM (\n{sql}\n) AS q LIMIT {}",
        MAX_ROWS + 1
    )
}

fn kind_of(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "text",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

fn field<'a>(row: &'a serde_json::Map<String, Json>, column: &str) -> Result<&'a Json, RowError> {
    row.get(column).ok_or_else(|| RowError::MissingColumn {
        column: column.to_owned(),
        available: row.keys().cloned().collect::<Vec<_>>().join(", "),
    })
}

/// The values of one result row: one entry per value column.
pub fn row_values(
    metric: &CustomMetricConfig,
    datname: &str,
    row: &Json,
) -> Result<Vec<CustomMetricValue>, RowError> {
    let Json::Object(row) = row else {
        return Err(RowError::NotAnObject);
    };
    let mut labels = Vec::with_capacity(metric.labels.len());
    for name in &metric.labels {
        let value = match field(row, name)? {
            Json::Null => String::new(),
            Json::String(s) => s.replace('\0', ""),
            other => other.to_string(),
        };
        labels.push(CustomLabel {
            name: name.clone(),
            value: truncate(value, MAX_LABEL_BYTES),
        });
    }
    let mut values = Vec::with_capacity(metric.values.len());
    for name in &metric.values {
        let value = match field(row, name)? {
            Json::Null => None,
            Json::Number(n) => n.as_f64().filter(|v| v.is_finite()),
            // How to_jsonb writes the special float values.
            Json::String(s) if matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity") => None,
            other => {
                return Err(RowError::NotNumeric {
                    column: name.clone(),
                    got: kind_of(other),
                });
            }
        };
        values.push(CustomMetricValue {
            metric: metric.name.clone(),
            datname: datname.to_owned(),
            labels: labels.clone(),
            value_name: name.clone(),
            value,
        });
    }
    Ok(values)
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("in database {datname:?}: {message}")]
    Query {
        datname: String,
        message: String,
        source: tokio_postgres::Error,
    },
    #[error("cannot connect to database {datname:?}: {message}")]
    Connect { datname: String, message: String },
    #[error("in database {datname:?}: {source}")]
    Row { datname: String, source: RowError },
}

impl RunError {
    fn failure(&self) -> Failure {
        match self {
            RunError::Query { source, .. } => Failure::from_query(source, self.to_string()),
            RunError::Connect { .. } => Failure::new(EventKind::Connect, self.to_string()),
            RunError::Row { .. } => Failure::new(EventKind::Query, self.to_string()),
        }
    }
}

fn query_error(datname: &str, e: tokio_postgres::Error) -> RunError {
    let message = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    };
    RunError::Query {
        datname: datname.to_owned(),
        message,
        source: e,
    }
}

/// Runs `metric` in the session of `client`, read-only and bounded.
async fn run(
    client: &Client,
    metric: &CustomMetricConfig,
    label: &str,
) -> Result<Vec<CustomMetricValue>, RunError> {
    client
        .batch_execute(&format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = '{}s'",
            metric.timeout_secs
        ))
        .await
        .map_err(|e| query_error(label, e))?;
    let result = client.query(&wrapped_sql(&metric.sql), &[]).await;
    let end = client
        .batch_execute(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })
        .await;
    let rows = result.map_err(|e| query_error(label, e))?;
    end.map_err(|e| query_error(label, e))?;
    if rows.len() > MAX_ROWS {
        tracing::debug!(metric = %metric.name, "more than {MAX_ROWS} rows; the rest is left out");
    }
    let mut values = Vec::new();
    for row in rows.iter().take(MAX_ROWS) {
        let datname: String = row.try_get(0).map_err(|e| query_error(label, e))?;
        let json: Json = row.try_get(1).map_err(|e| query_error(label, e))?;
        values.extend(
            row_values(metric, &datname, &json).map_err(|source| RunError::Row {
                datname: datname.clone(),
                source,
            })?,
        );
    }
    Ok(values)
}

pub struct CustomCollector {
    /// Each metric with its next due time.
    metrics: Vec<(CustomMetricConfig, Instant)>,
}

/// Where an instance's custom metrics run.
pub struct Sessions<'a> {
    pub instance: &'a str,
    pub home: &'a Client,
    /// The DSN's database, when it names one.
    pub home_db: Option<&'a str>,
    pub others: &'a mut DatabaseConnections,
}

impl CustomCollector {
    pub fn new(metrics: &[CustomMetricConfig], start: Instant) -> Self {
        Self {
            metrics: metrics.iter().cloned().map(|m| (m, start)).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    /// Runs the metrics due at `now`; a failing metric is warned about
    /// once and reported through `events`, the others go on.
    pub async fn collect(
        &mut self,
        s: Sessions<'_>,
        events: &mut Events,
        now: Instant,
    ) -> Vec<Sample> {
        let mut values = Vec::new();
        let started = std::time::Instant::now();
        for (metric, next) in &mut self.metrics {
            if *next > now {
                continue;
            }
            if started.elapsed() > ROUND_BUDGET {
                // Still due: runs at the next tick, in a round of its own.
                break;
            }
            *next = now + std::time::Duration::from_secs(metric.interval_secs.max(1));
            let collector = format!("custom:{}", metric.name);
            let mut result = Ok(Vec::new());
            if metric.databases.is_empty() {
                result = run(s.home, metric, s.home_db.unwrap_or("(default)")).await;
            } else {
                for db in &metric.databases {
                    let client = if Some(db.as_str()) == s.home_db {
                        Ok(s.home)
                    } else {
                        s.others
                            .get(db, s.instance)
                            .await
                            .map_err(|e| RunError::Connect {
                                datname: db.clone(),
                                message: e.to_string(),
                            })
                    };
                    let r = match client {
                        Ok(c) => run(c, metric, db).await,
                        Err(e) => Err(e),
                    };
                    match (r, &mut result) {
                        (Ok(v), Ok(all)) => all.extend(v),
                        (Err(e), _) => {
                            result = Err(e);
                            break;
                        }
                        (Ok(_), Err(_)) => {}
                    }
                }
            }
            match result {
                Ok(v) => {
                    if events.recovered(&collector) {
                        tracing::info!(instance = %s.instance, metric = %metric.name, "custom metric collected again");
                    }
                    values.extend(v);
                }
                Err(e) => {
                    if events.failed(&collector, e.failure(), now) {
                        tracing::warn!(
                            instance = %s.instance,
                            metric = %metric.name,
                            error = %e,
                            "custom metric failed; the others go on (logged again when it recovers)"
                        );
                    }
                }
            }
        }
        if values.is_empty() {
            return Vec::new();
        }
        vec![Sample {
            instance: s.instance.to_owned(),
            time_unix_micros: now_unix_micros(),
            family: Some(Family::Custom(CustomMetricSnapshot { values })),
        }]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn metric() -> CustomMetricConfig {
        CustomMetricConfig {
            name: "queue_depth".into(),
            sql: "SELECT 1".into(),
            labels: vec!["queue".into(), "prio".into()],
            values: vec!["depth".into(), "oldest".into()],
            interval_secs: 60,
            timeout_secs: 5,
            databases: vec![],
        }
    }

    #[test]
    fn a_row_gives_one_value_per_value_column() {
        let row = json!({"queue": "mail", "prio": 2, "depth": 7, "oldest": null, "extra": "x"});
        let v = row_values(&metric(), "app", &row).expect("row");
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].value_name.as_str(), v[0].value), ("depth", Some(7.0)));
        assert_eq!((v[1].value_name.as_str(), v[1].value), ("oldest", None));
        let labels: Vec<(&str, &str)> = v[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(labels, [("queue", "mail"), ("prio", "2")]);
        assert_eq!(v[0].datname, "app");
    }

    #[test]
    fn missing_and_non_numeric_columns_are_clear_errors() {
        let missing = json!({"queue": "mail", "prio": 1, "depth": 1});
        let e = row_values(&metric(), "app", &missing).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "column \"oldest\" is not in the result (columns: depth, prio, queue)"
        );
        let text = json!({"queue": "mail", "prio": 1, "depth": "many", "oldest": 1});
        let e = row_values(&metric(), "app", &text).expect_err("refused");
        assert_eq!(
            e,
            RowError::NotNumeric {
                column: "depth".into(),
                got: "text"
            }
        );
        let nan = json!({"queue": "q", "prio": 1, "depth": "NaN", "oldest": 1.5});
        assert_eq!(
            row_values(&metric(), "app", &nan).expect("nan")[0].value,
            None
        );
    }

    #[test]
    fn the_query_is_one_subquery() {
        let w = wrapped_sql("SELECT 1 AS v;; \n ");
        assert_eq!(
            w,
            "SELECT current_database()::text, to_jsonb(q) FROM (\nSELECT 1 AS v\n) AS q LIMIT 1001"
        );
        let w = wrapped_sql("SELECT 1 AS v -- trailing comment");
        assert!(w.contains("-- trailing comment\n) AS q LIMIT 1001"), "{w}");
    }
}
