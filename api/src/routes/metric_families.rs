//! The metric families the API can read, and the fixed SQL for each.
//!
//! The families are derived from their one declaration (`lasect-families`): each
//! [`FamilySpec`] is built once, on first use, from the declaration's literals (names of the
//! family, its table and columns, the order of its rows), so nothing a client sends can reach
//! the query text: the family name from the URL only selects an entry of [`FAMILIES`], and the
//! instance id and limit are bind parameters.
//!
//! Two shapes exist ([`lasect_families::Rows`]):
//! - several rows per sample time (`database`: one row per database), in a declared order:
//!   `limit` counts sample times, and all rows of each of the latest `limit` times are
//!   returned;
//! - one row per sample time (`host_cpu`, `host_memory`, keyed by the instance's agent):
//!   `limit` counts rows.

use std::ops::Deref;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use lasect_families::{Family, Rows};
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::{Column, Row, TypeInfo};

use super::instances::rfc3339;

/// Which id the family's rows are keyed by: `Instance` (bind the instance id) or `Agent`
/// (bind the instance's agent id).
pub use lasect_families::Key as FamilyKey;

#[derive(Debug)]
pub struct FamilySpec {
    pub name: &'static str,
    pub key: FamilyKey,
    /// Output columns, in order; `time` first.
    pub columns: &'static [&'static str],
    /// `$1` = key, `$2` = limit (bigint).
    pub sql: &'static str,
    /// The store table (a literal, never from a request).
    pub table: &'static str,
    /// Order of the rows of one sample time (SQL, a literal).
    pub order: &'static str,
}

impl FamilySpec {
    /// The spec of a declared family. Built once per family (in [`FAMILIES`]), so the leaked
    /// strings are bounded.
    fn of(family: &'static Family) -> FamilySpec {
        let mut columns = vec!["time"];
        columns.extend(family.columns.iter().map(|c| c.name));
        let select = columns.join(", ");
        let (table, key) = (family.table, family.key.column());
        let (sql, order) = match family.rows {
            Rows::OnePerTime => (
                format!(
                    "SELECT {select} FROM {table} WHERE {key} = $1 ORDER BY time DESC LIMIT $2"
                ),
                key,
            ),
            Rows::Ordered(order) => (
                format!(
                    "SELECT {select} FROM {table} WHERE {key} = $1 AND time IN (SELECT DISTINCT \
                     time FROM {table} WHERE {key} = $1 ORDER BY time DESC LIMIT $2) ORDER BY \
                     time DESC, {order}"
                ),
                order,
            ),
        };
        FamilySpec {
            name: family.name,
            key: family.key,
            columns: columns.leak(),
            sql: sql.leak(),
            table,
            order,
        }
    }
}

static SPECS: LazyLock<Vec<FamilySpec>> = LazyLock::new(|| {
    lasect_families::ALL
        .iter()
        .map(|f| FamilySpec::of(f))
        .collect()
});

/// Every family the API reads, in the declaration's order: a slice of [`FamilySpec`]s built on
/// first use (a unit type rather than a static so that `for f in FAMILIES` reads as it did when
/// the list was a literal slice).
#[derive(Debug, Clone, Copy)]
pub struct Families;

pub const FAMILIES: Families = Families;

impl Deref for Families {
    type Target = [FamilySpec];

    fn deref(&self) -> &[FamilySpec] {
        &SPECS
    }
}

impl IntoIterator for Families {
    type Item = &'static FamilySpec;
    type IntoIter = std::slice::Iter<'static, FamilySpec>;

    fn into_iter(self) -> Self::IntoIter {
        SPECS.iter()
    }
}

/// The `{family}` path parameter in the OpenAPI document: one of [`FAMILIES`]' names.
pub struct FamilyName;

impl utoipa::PartialSchema for FamilyName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(known_names()))
            .into()
    }
}

impl utoipa::ToSchema for FamilyName {}

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

    /// The SQL derived from the declaration is the SQL the hand-written list had.
    #[test]
    fn sql_of_a_family_with_ordered_rows() {
        let wal = find("wal").expect("wal family");
        assert_eq!(
            wal.sql,
            "SELECT time, current_lsn, wal_records, wal_fpi, wal_bytes, wal_buffers_full, \
             wal_write, wal_sync, wal_write_time_ms, wal_sync_time_ms, stats_reset FROM metric_wal \
             WHERE instance_id = $1 AND time IN (SELECT DISTINCT time FROM metric_wal WHERE \
             instance_id = $1 ORDER BY time DESC LIMIT $2) ORDER BY time DESC, instance_id"
        );
        assert_eq!(wal.order, "instance_id");
        let network = find("host_network").expect("host_network family");
        assert!(network.sql.ends_with(
            "FROM metric_host_network WHERE agent_id = $1 AND time IN (SELECT DISTINCT time FROM \
             metric_host_network WHERE agent_id = $1 ORDER BY time DESC LIMIT $2) ORDER BY time \
             DESC, interface"
        ));
        assert_eq!(find("host_memory").expect("host_memory").order, "agent_id");
        assert_eq!(FAMILIES.len(), lasect_families::ALL.len());
    }

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
        assert_eq!(
            known_names(),
            [
                "database",
                "host_cpu",
                "host_memory",
                "statement",
                "table",
                "index",
                "wal",
                "bgwriter",
                "archiver",
                "settings",
                "setting_changes",
                "activity",
                "activity_sessions",
                "lock",
                "lock_waits",
                "replication",
                "replication_slot",
                "progress",
                "wait",
                "host_network",
                "host_disk_io",
                "standby",
                "subscription",
                "subscription_tables",
                "replication_identity",
                "subscription_source",
                "publication",
                "subscription_copy",
                "custom",
                "host_filesystem",
                "collector_event",
                "log",
                "log_plans",
                "log_drops",
                "backup"
            ]
        );
    }
}
