//! Runs over the API (docs/CONTROL.md): the run as `GET /api/v1/runs/{id}` and every
//! run-creating route answer it ([`RunView`]), the list ([`RunList`]), a result page
//! ([`ResultPage`]), the bodies of `POST …/sql` and `…/explain` ([`SqlRequest`],
//! [`ExplainRequest`]) and the limits every run-creating body may carry ([`RunLimits`]).
//!
//! Requests leave out what is not set (`skip_serializing_if`), so a body the CLI builds is the
//! one it always sent; responses keep every field, null included, as the API always answered.

/// The structured results the agent writes (`summary`, `error_detail`), for the clients that
/// show them.
pub use lasect_runs::{
    AvailableExtension, DatabaseSize, ExtensionActionResult, ExtensionListResult, FeatureCheck,
    ImportCsvResult, ImportLineError, InstalledExtension, InstanceCheckResult,
    InstanceMetadataResult, ResultColumn, SchemaDocument, SchemaExtension, SchemaFunction,
    SchemaObjects, SchemaSequence, SchemaTable, SchemaType, SchemaView, TableColumn,
    TableConstraint, TableIndex, TableTrigger,
};
/// The one run status type, for the clients that read [`RunView::status`].
pub use lasect_runs::{RunStatus, UnknownStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Defaults and bounds of what a caller may ask for.
pub const DEFAULT_TIMEOUT_MS: i64 = 30_000;
pub const MAX_TIMEOUT_MS: i64 = 3_600_000;
pub const DEFAULT_MAX_ROWS: i64 = 10_000;
pub const MAX_MAX_ROWS: i64 = 1_000_000;
pub const DEFAULT_MAX_BYTES: i64 = 16 << 20;
pub const MAX_MAX_BYTES: i64 = 1 << 30;
pub const DEFAULT_QUEUE_TIMEOUT_S: i64 = 60;
pub const MAX_QUEUE_TIMEOUT_S: i64 = 3600;

/// The limits every run-creating body may carry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunLimits {
    /// Statement timeout, 1..=3600000 ms (default 30000).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3_600_000))]
    #[serde(
        default,
        deserialize_with = "crate::json_integer::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_ms: Option<i64>,
    /// 1..=1000000 rows (default 10000).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    #[serde(
        default,
        deserialize_with = "crate::json_integer::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_rows: Option<i64>,
    /// 1..=1 GiB (default 16 MiB).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_073_741_824))]
    #[serde(
        default,
        deserialize_with = "crate::json_integer::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_bytes: Option<i64>,
    /// A run its agent has not picked up within this expires, 1..=3600 s (default 60).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3600))]
    #[serde(
        default,
        deserialize_with = "crate::json_integer::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub queue_timeout_s: Option<i64>,
}

/// A limit outside its bounds (the API answers 400 `invalid_body`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitOutOfRange(pub String);

impl std::fmt::Display for LimitOutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitOutOfRange {}

/// Limits with every default filled in: `(timeout_ms, max_rows, max_bytes, queue_timeout_s)`.
pub type ResolvedLimits = (i64, i64, i64, i64);

impl RunLimits {
    /// The limits as stored, defaults filled in, with the kind's defaults for rows and bytes.
    pub fn resolve(&self, rows: i64, bytes: i64) -> Result<ResolvedLimits, LimitOutOfRange> {
        let check = |name: &str, v: Option<i64>, default: i64, max: i64| match v {
            None => Ok(default),
            Some(v) if (1..=max).contains(&v) => Ok(v),
            Some(v) => Err(LimitOutOfRange(format!(
                "{name} must be 1..={max}, not {v}"
            ))),
        };
        Ok((
            check(
                "timeout_ms",
                self.timeout_ms,
                DEFAULT_TIMEOUT_MS,
                MAX_TIMEOUT_MS,
            )?,
            check("max_rows", self.max_rows, rows, MAX_MAX_ROWS)?,
            check("max_bytes", self.max_bytes, bytes, MAX_MAX_BYTES)?,
            check(
                "queue_timeout_s",
                self.queue_timeout_s,
                DEFAULT_QUEUE_TIMEOUT_S,
                MAX_QUEUE_TIMEOUT_S,
            )?,
        ))
    }
}

/// A run as the API shows it. Times are RFC 3339 in UTC.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunView {
    pub id: i64,
    pub kind: String,
    pub instance_id: i64,
    pub instance_name: String,
    pub agent_id: String,
    pub status: String,
    pub requested_by: String,
    /// The kind's parameters; null when `details_hidden`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub params: Option<Value>,
    pub created_at: String,
    pub expires_at: String,
    pub dispatched_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub timeout_ms: i32,
    pub max_rows: i64,
    pub max_bytes: i64,
    pub rows: Option<i64>,
    pub bytes: Option<i64>,
    pub truncated: bool,
    pub pages: i32,
    pub error: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub error_detail: Option<Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub summary: Option<Value>,
    pub migration_id: Option<i64>,
    pub cancel_requested: bool,
    /// True when the caller sees only the run's metadata: its parameters, summary, errors and
    /// result are visible to its requester, admins of the instance and those who may create
    /// such a run there.
    pub details_hidden: bool,
}

impl RunView {
    /// `status` as the one status type. The field stays text on the wire so that a client
    /// still reads a run whose status is newer than itself (`Err` here).
    pub fn run_status(&self) -> Result<RunStatus, UnknownStatus> {
        self.status.parse()
    }

    pub fn succeeded(&self) -> bool {
        self.run_status() == Ok(RunStatus::Succeeded)
    }

    /// Whether the run has ended. A status this version does not know (a newer ingest's) is
    /// not terminal: waiting on it ends at the caller's deadline, as for a run still going.
    pub fn is_terminal(&self) -> bool {
        self.run_status().is_ok_and(RunStatus::is_terminal)
    }

    /// A field of the run's summary, or null.
    pub fn summary_field(&self, key: &str) -> &Value {
        self.summary
            .as_ref()
            .and_then(|s| s.get(key))
            .unwrap_or(&Value::Null)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunList {
    pub runs: Vec<RunView>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResultPage {
    pub run_id: i64,
    pub page: i32,
    pub pages: i32,
    /// `[{"name", "type"}]`, from the run's summary.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub columns: Value,
    /// Each row a JSON array of values.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub rows: Vec<Value>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One statement (1 to 1 Mi characters, not all blank); `$1`, `$2`… are bound from
    /// `params`, never interpolated.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 1_048_576))]
    pub sql: String,
    /// Parameter values in text form (the server converts them), or null.
    #[serde(default)]
    pub params: Vec<Option<String>>,
    /// Allow writes (needs admin on the instance). Default: a read-only transaction.
    #[serde(default)]
    pub write: bool,
    /// Database to connect to (default: the instance's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(flatten)]
    pub limits: RunLimits,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// One statement (1 to 1 Mi characters, not all blank); `$1`, `$2`… are bound from
    /// `params`, never interpolated.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 1_048_576))]
    pub sql: String,
    #[serde(default)]
    pub params: Vec<Option<String>>,
    /// EXPLAIN ANALYZE (executes the statement; rolled back unless `write`).
    #[serde(default)]
    pub analyze: bool,
    /// Let ANALYZE apply a write (needs admin on the instance).
    #[serde(default)]
    pub write: bool,
    /// Database to connect to (default: the instance's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(flatten)]
    pub limits: RunLimits,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_read_as_the_one_status_type() {
        let run = |status: &str| -> RunView {
            serde_json::from_value(serde_json::json!({
                "id": 1, "kind": "sql", "instance_id": 2, "instance_name": "main",
                "agent_id": "db-01", "status": status, "requested_by": "user:admin",
                "params": null, "created_at": "2026-01-01T00:00:00Z",
                "expires_at": "2026-01-01T00:05:00Z", "dispatched_at": null, "started_at": null,
                "finished_at": null, "duration_ms": null, "timeout_ms": 1000, "max_rows": 10,
                "max_bytes": 100, "rows": null, "bytes": null, "truncated": false, "pages": 0,
                "error": null, "error_detail": null, "summary": null, "migration_id": null,
                "cancel_requested": false, "details_hidden": false
            }))
            .expect("a run")
        };
        for status in RunStatus::ALL {
            let view = run(status.as_str());
            assert_eq!(view.run_status(), Ok(status));
            assert_eq!(view.succeeded(), status == RunStatus::Succeeded);
            assert_eq!(view.is_terminal(), status.is_terminal());
        }
        // A newer version's status still reads; it is neither known nor terminal.
        let newer = run("paused");
        assert_eq!(newer.run_status(), Err(UnknownStatus("paused".to_owned())));
        assert!(!newer.succeeded() && !newer.is_terminal());
    }

    #[test]
    fn requests_leave_out_what_is_not_set_and_read_back_the_same() {
        let body = SqlRequest {
            sql: "SELECT $1".into(),
            params: vec![Some("a".into()), None],
            write: false,
            database: None,
            limits: RunLimits {
                timeout_ms: Some(1000),
                ..RunLimits::default()
            },
        };
        let json = serde_json::to_value(&body).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"sql": "SELECT $1", "params": ["a", null], "write": false, "timeout_ms": 1000})
        );
        let back: SqlRequest = serde_json::from_value(json).expect("the API reads it");
        assert_eq!(back.limits.timeout_ms, Some(1000));
        assert!(serde_json::from_str::<SqlRequest>(r#"{"sql": "x", "max_rows": 10.0}"#).is_ok());
        assert!(serde_json::from_str::<SqlRequest>(r#"{"sql": "x", "nope": 1}"#).is_err());
    }

    #[test]
    fn limits_resolve_to_defaults_and_refuse_what_is_out_of_range() {
        let none = RunLimits::default();
        assert_eq!(
            none.resolve(7, 8),
            Ok((DEFAULT_TIMEOUT_MS, 7, 8, DEFAULT_QUEUE_TIMEOUT_S))
        );
        let bad = RunLimits {
            max_rows: Some(0),
            ..RunLimits::default()
        };
        assert_eq!(
            bad.resolve(7, 8),
            Err(LimitOutOfRange(
                "max_rows must be 1..=1000000, not 0".into()
            ))
        );
    }
}
