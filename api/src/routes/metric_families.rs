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
//!   agent): `limit` counts rows; with an `order by`, several rows per sample time
//!   (`host_network`, `host_disk_io`): `limit` counts sample times.

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
    /// The store table (a literal, never from a request).
    pub table: &'static str,
    /// Order of the rows of one sample time (SQL, a literal).
    pub order: &'static str,
}

macro_rules! family {
    (per_instance $name:literal, $table:literal, order by $order:literal, [$($col:literal),+ $(,)?]) => {
        FamilySpec {
            name: $name,
            key: FamilyKey::Instance,
            columns: &["time", $($col),+],
            table: $table,
            order: $order,
            sql: concat!(
                "SELECT time", $(", ", $col,)+ " FROM ", $table,
                " WHERE instance_id = $1 AND time IN (SELECT DISTINCT time FROM ", $table,
                " WHERE instance_id = $1 ORDER BY time DESC LIMIT $2)",
                " ORDER BY time DESC, ", $order
            ),
        }
    };
    (per_agent $name:literal, $table:literal, order by $order:literal, [$($col:literal),+ $(,)?]) => {
        FamilySpec {
            name: $name,
            key: FamilyKey::Agent,
            columns: &["time", $($col),+],
            table: $table,
            order: $order,
            sql: concat!(
                "SELECT time", $(", ", $col,)+ " FROM ", $table,
                " WHERE agent_id = $1 AND time IN (SELECT DISTINCT time FROM ", $table,
                " WHERE agent_id = $1 ORDER BY time DESC LIMIT $2)",
                " ORDER BY time DESC, ", $order
            ),
        }
    };
    (per_agent $name:literal, $table:literal, [$($col:literal),+ $(,)?]) => {
        FamilySpec {
            name: $name,
            key: FamilyKey::Agent,
            columns: &["time", $($col),+],
            table: $table,
            order: "agent_id",
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
    family!(per_instance "statement", "metric_statement", order by "calls DESC NULLS LAST, queryid", [
        "queryid", "dbid", "userid", "toplevel", "since_reset", "calls", "rows",
        "total_exec_time_ms", "plans", "total_plan_time_ms", "shared_blks_hit", "shared_blks_read",
        "shared_blks_dirtied", "shared_blks_written", "local_blks_hit", "local_blks_read",
        "temp_blks_read", "temp_blks_written", "shared_blk_read_time_ms",
        "shared_blk_write_time_ms", "wal_records", "wal_bytes",
    ]),
    family!(per_instance "table", "metric_table", order by "datname, schemaname, relname", [
        "datname", "relid", "schemaname", "relname", "seq_scan", "seq_tup_read", "idx_scan",
        "idx_tup_fetch", "n_tup_ins", "n_tup_upd", "n_tup_del", "n_tup_hot_upd",
        "n_tup_newpage_upd", "n_live_tup", "n_dead_tup", "dead_tuple_ratio",
        "n_mod_since_analyze", "n_ins_since_vacuum", "vacuum_count", "autovacuum_count",
        "analyze_count", "autoanalyze_count", "last_vacuum", "last_autovacuum", "last_analyze",
        "last_autoanalyze", "heap_blks_read", "heap_blks_hit", "idx_blks_read", "idx_blks_hit",
        "toast_blks_read", "toast_blks_hit", "heap_bytes", "toast_bytes", "indexes_bytes",
    ]),
    family!(per_instance "index", "metric_index", order by "datname, schemaname, indexrelname", [
        "datname", "indexrelid", "relid", "schemaname", "relname", "indexrelname", "idx_scan",
        "idx_tup_read", "idx_tup_fetch", "idx_blks_read", "idx_blks_hit", "size_bytes",
        "last_idx_scan", "is_unique", "is_primary", "invalid", "unused",
    ]),
    family!(per_instance "wal", "metric_wal", order by "instance_id", [
        "current_lsn", "wal_records", "wal_fpi", "wal_bytes", "wal_buffers_full", "wal_write",
        "wal_sync", "wal_write_time_ms", "wal_sync_time_ms", "stats_reset",
    ]),
    family!(per_instance "bgwriter", "metric_bgwriter", order by "instance_id", [
        "checkpoints_timed", "checkpoints_req", "checkpoint_write_time_ms",
        "checkpoint_sync_time_ms", "buffers_checkpoint", "buffers_clean", "maxwritten_clean",
        "buffers_backend", "buffers_backend_fsync", "buffers_alloc", "stats_reset",
    ]),
    family!(per_instance "archiver", "metric_archiver", order by "instance_id", [
        "archived_count", "last_archived_wal", "last_archived_time", "failed_count",
        "last_failed_wal", "last_failed_time", "last_archived_age_seconds", "stats_reset",
    ]),
    family!(per_instance "settings", "metric_settings", order by "name", [
        "name", "setting", "unit", "source", "pending_restart",
    ]),
    family!(per_instance "setting_changes", "metric_setting_changes", order by "name", [
        "name", "old_setting", "new_setting", "pending_restart",
    ]),
    family!(per_instance "activity", "metric_activity", order by "instance_id", [
        "max_connections", "total_sessions", "connection_use_percent", "waiting_sessions",
        "oldest_xact_age_seconds", "oldest_query_age_seconds", "oldest_idle_in_xact_age_seconds",
    ]),
    family!(per_instance "activity_sessions", "metric_activity_sessions",
        order by "sessions DESC, datname, usename, application_name, state", [
        "datname", "usename", "application_name", "state", "sessions", "waiting",
    ]),
    family!(per_instance "lock", "metric_lock", order by "count DESC, locktype, mode", [
        "locktype", "mode", "granted", "count",
    ]),
    family!(per_instance "lock_waits", "metric_lock_waits", order by "wait_seconds DESC NULLS LAST", [
        "blocked_pid", "blocking_pid", "datname", "wait_seconds", "blocked_query", "blocking_query",
    ]),
    family!(per_instance "replication", "metric_replication", order by "application_name, pid", [
        "pid", "application_name", "client_addr", "state", "sync_state", "sent_lag_bytes",
        "write_lag_bytes", "flush_lag_bytes", "replay_lag_bytes", "write_lag_seconds",
        "flush_lag_seconds", "replay_lag_seconds",
    ]),
    family!(per_instance "replication_slot", "metric_replication_slot", order by "slot_name", [
        "slot_name", "slot_type", "plugin", "datname", "active", "temporary", "retained_bytes",
        "wal_status", "safe_wal_size", "conflicting",
    ]),
    family!(per_instance "progress", "metric_progress", order by "command, pid", [
        "command", "pid", "datname", "relid", "phase", "done", "total", "percent_done",
    ]),
    family!(per_instance "wait", "metric_wait", order by "count DESC, wait_event_type, wait_event", [
        "wait_event_type", "wait_event", "queryid", "count", "samples", "avg_sessions",
    ]),
    family!(per_agent "host_network", "metric_host_network", order by "interface", [
        "interface", "rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_errors", "tx_errors",
        "rx_drops", "tx_drops", "rx_bytes_per_sec", "tx_bytes_per_sec",
    ]),
    family!(per_agent "host_disk_io", "metric_host_disk_io", order by "device", [
        "device", "reads", "writes", "read_bytes", "write_bytes", "io_time_ms",
        "read_bytes_per_sec", "write_bytes_per_sec", "util_percent",
    ]),
    family!(per_instance "standby", "metric_standby", order by "instance_id", [
        "receiver_status", "sender_host", "sender_port", "slot_name", "receive_lsn", "replay_lsn",
        "replay_delay_seconds", "replay_lag_bytes", "last_msg_age_seconds",
    ]),
    family!(per_instance "subscription", "metric_subscription", order by "subname, relid NULLS FIRST", [
        "subname", "pid", "relid", "received_lsn", "latest_end_lsn", "last_msg_send",
        "last_msg_receipt", "latest_end", "apply_error_count", "sync_error_count",
    ]),
    family!(per_instance "subscription_tables", "metric_subscription_tables",
        order by "subname, schemaname, relname", [
        "subname", "schemaname", "relname", "state", "sync_lsn",
    ]),
    family!(per_instance "custom", "metric_custom", order by "metric, datname, labels::text, value_name", [
        "metric", "datname", "labels", "value_name", "value",
    ]),
    family!(per_instance "host_filesystem", "metric_host_filesystem", order by "mount_point", [
        "mount_point", "device", "fs_type", "roles", "total_bytes", "used_bytes", "free_bytes",
        "total_inodes", "used_inodes", "free_inodes",
    ]),
    family!(per_instance "collector_event", "metric_collector_event", order by "collector", [
        "collector", "kind", "message", "sqlstate", "suppressed",
    ]),
    family!(per_instance "log", "metric_log", order by "pid, severity", [
        "severity", "sqlstate", "message", "detail", "hint", "context", "statement", "user_name",
        "database", "application", "pid", "query_id", "duration_ms", "source",
    ]),
    family!(per_instance "log_plans", "metric_log_plans", order by "pid", [
        "pid", "query_id", "duration_ms", "database", "user_name", "query_text", "plan",
    ]),
    family!(per_instance "log_drops", "metric_log_drops", order by "instance_id", [
        "dropped_events", "truncated_lines", "unparsed_lines",
    ]),
];

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
                "custom",
                "host_filesystem",
                "collector_event",
                "log",
                "log_plans",
                "log_drops"
            ]
        );
    }
}
