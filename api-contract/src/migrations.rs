//! Fleet schema migrations over the API: the body that starts one ([`StartMigration`] with its
//! [`TargetSelector`]), a migration with its targets ([`Migration`], [`MigrationTarget`]) and
//! the list ([`MigrationList`]).
//!
//! [`TargetSelector`] keeps its nulls when serialized: the API stores it as it reads it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TargetSelector {
    /// These instance ids.
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    #[serde(default, deserialize_with = "crate::json_integer::option_vec")]
    pub instances: Option<Vec<i64>>,
    /// Every instance whose labels contain all of these.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub labels: Option<serde_json::Map<String, Value>>,
    /// `primary`, `standby`, `subscriber` (an instance with a logical subscription) or
    /// `publisher` (with `publication`: the instance streaming it and its subscribers,
    /// subscribers first).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(primary|standby|subscriber|publisher)$")
    )]
    pub role: Option<String>,
    /// With role `subscriber`: only instances subscribed to this publication; with role
    /// `publisher`: the publication whose publisher and subscribers are the targets.
    pub publication: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartMigration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The script (1 to 4 Mi characters, not all blank); runs in one transaction per instance.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 4_194_304))]
    pub sql: String,
    pub targets: TargetSelector,
    #[serde(default)]
    pub dry_run: bool,
    /// 1..=3600000, default 5000.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3_600_000))]
    #[serde(
        default,
        deserialize_with = "crate::json_integer::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub lock_timeout_ms: Option<i32>,
    /// 1..=3600000, default 60000.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3_600_000))]
    #[serde(
        default,
        deserialize_with = "crate::json_integer::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub statement_timeout_ms: Option<i32>,
    /// Budget of the whole script on one instance, 1..=3600000, default 600000.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3_600_000))]
    #[serde(
        default,
        deserialize_with = "crate::json_integer::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_ms: Option<i32>,
    /// A target whose agent does not take its run within this halts the migration, 1..=3600 s
    /// (default 60).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3600))]
    #[serde(
        default,
        deserialize_with = "crate::json_integer::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub queue_timeout_s: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MigrationTarget {
    pub position: i32,
    pub instance_id: i64,
    pub instance_name: String,
    /// pending, running, succeeded, failed or skipped.
    pub status: String,
    pub run_id: Option<i64>,
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Migration {
    pub id: i64,
    pub name: String,
    /// running, succeeded, failed or cancelled.
    pub status: String,
    pub dry_run: bool,
    pub requested_by: String,
    pub sql_sha256: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub targets_selector: Value,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    pub targets: Vec<MigrationTarget>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MigrationList {
    pub migrations: Vec<Migration>,
}
