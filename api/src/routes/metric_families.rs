//! The metric families the API can read, and the fixed SQL for each.
//!
//! The SQL of every family is assembled at compile time from literals (the `family!` macro), so
//! nothing a client sends can reach the query text: the family name from the URL only selects
//! an entry of [`FAMILIES`], and the instance id and limit are bind parameters.
//!
//! Two shapes exist:
//! - per instance, several rows per sample time (`database`: one row per database): `limit`
//!   counts sample times, and all rows of each of the latest `limit` times are returned;
//! - per agent, one row per sample time (`host_cpu`, `host_memory`, keyed by the instance's
//!   agent): `limit` counts rows.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::{Column, Row, TypeInfo};

use super::instances::rfc3339;

/// Which id the family's rows are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKey {
    /// `instance_id` (bind the instance id).
    Instance,
    /// `agent_id` (bind the instance's agent id).
    Agent,
}

#[derive(Debug)]
pub struct FamilySpec {
    pub name: &'static str,
    pub key: FamilyKey,
    /// Output columns, in order; `time` first.
    pub columns: &'static [&'static str],
    /// `$1` = key, `$2` = limit (bigint).
    pub sql: &'static str,
}

macro_rules! family {
    (per_instance $name:literal, $table:literal, order by $order:literal, [$($col:literal),+ $(,)?]) => {
        FamilySpec {
            name: $name,
            key: FamilyKey::Instance,
            columns: &["time", $($col),+],
            sql: concat!(
                "SELECT time", $(", ", $col,)+ " FROM ", $table,
                " WHERE instance_id = $1 AND time IN (SELECT DISTINCT time FROM ", $table,
                " WHERE instance_id = $1 ORDER BY time DESC LIMIT $2)",
                " ORDER BY time DESC, ", $order
            ),
        }
    };
    (per_agent $name:literal, $table:literal, [$($col:literal),+ $(,)?]) => {
        FamilySpec {
            name: $name,
            key: FamilyKey::Agent,
            columns: &["time", $($col),+],
            sql: concat!(
                "SELECT time", $(", ", $col,)+ " FROM ", $table,
                " WHERE agent_id = $1 ORDER BY time DESC LIMIT $2"
            ),
        }
    };
}

pub const FAMILIES: &[FamilySpec] = &[
    family!(per_instance "database", "metric_database", order by "datname", [
        "datid", "datname", "numbackends", "xact_commit", "xact_rollback", "blks_read",
        "blks_hit", "tup_returned", "tup_fetched", "tup_inserted", "tup_updated", "tup_deleted",
        "conflicts", "temp_files", "temp_bytes", "deadlocks", "size_bytes", "stats_reset",
    ]),
    family!(per_agent "host_cpu", "metric_host_cpu", [
        "cpu_count", "usage_percent", "load1", "load5", "load15",
    ]),
    family!(per_agent "host_memory", "metric_host_memory", [
        "total_bytes", "used_bytes", "available_bytes", "free_bytes", "swap_total_bytes",
        "swap_used_bytes",
    ]),
];

pub fn find(name: &str) -> Option<&'static FamilySpec> {
    FAMILIES.iter().find(|f| f.name == name)
}

pub fn known_names() -> Vec<&'static str> {
    FAMILIES.iter().map(|f| f.name).collect()
}

/// A result row as a JSON object keyed by column name. Errors name the column and type that
/// could not be converted (a bug in this module, not a client error).
pub fn row_to_json(row: &PgRow) -> Result<Map<String, Value>, String> {
    let mut object = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_info().name();
        let get_err = |e: sqlx::Error| format!("decode column {}: {e}", column.name());
        let value = match ty {
            "INT2" => Value::from(row.try_get::<Option<i16>, _>(i).map_err(get_err)?),
            "INT4" => Value::from(row.try_get::<Option<i32>, _>(i).map_err(get_err)?),
            "INT8" => Value::from(row.try_get::<Option<i64>, _>(i).map_err(get_err)?),
            // NaN and infinities become null: JSON has no representation for them.
            "FLOAT4" => Value::from(row.try_get::<Option<f32>, _>(i).map_err(get_err)?),
            "FLOAT8" => Value::from(row.try_get::<Option<f64>, _>(i).map_err(get_err)?),
            "BOOL" => Value::from(row.try_get::<Option<bool>, _>(i).map_err(get_err)?),
            "TEXT" | "VARCHAR" | "NAME" => {
                Value::from(row.try_get::<Option<String>, _>(i).map_err(get_err)?)
            }
            "TIMESTAMPTZ" => Value::from(
                row.try_get::<Option<DateTime<Utc>>, _>(i)
                    .map_err(get_err)?
                    .map(rfc3339),
            ),
            "JSON" | "JSONB" => row
                .try_get::<Option<Value>, _>(i)
                .map_err(get_err)?
                .unwrap_or(Value::Null),
            other => {
                return Err(format!(
                    "column {} has unsupported type {other}",
                    column.name()
                ));
            }
        };
        object.insert(column.name().to_owned(), value);
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_is_built_from_the_column_list() {
        let db = find("database").expect("database family");
        assert!(
            db.sql
                .starts_with("SELECT time, datid, datname, numbackends,"),
            "{}",
            db.sql
        );
        assert!(
            db.sql
                .contains("FROM metric_database WHERE instance_id = $1")
        );
        let cpu = find("host_cpu").expect("host_cpu family");
        assert_eq!(
            cpu.sql,
            "SELECT time, cpu_count, usage_percent, load1, load5, load15 FROM metric_host_cpu \
             WHERE agent_id = $1 ORDER BY time DESC LIMIT $2"
        );
        assert_eq!(cpu.columns.len(), 6);
        assert!(find("metric_database").is_none());
        assert_eq!(known_names(), ["database", "host_cpu", "host_memory"]);
    }
}
