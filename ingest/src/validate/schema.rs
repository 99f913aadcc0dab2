//! The metric tables as data: one [`Table`] per family, naming its store
//! table, what its rows are keyed by and its value columns in table order
//! (after `time` and the key column). Validation produces rows of
//! [`Value`]s in exactly this order; the writer turns any table's rows into
//! one binary COPY without per-family code. Adding a family = a descriptor
//! here, a row function in `families`, and a match arm in the builder.

use chrono::{DateTime, Utc};
use tokio_postgres::types::Type;

/// The key column that follows `time` in every metric table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `instance_id bigint`: the instance the sample came from.
    Instance,
    /// `agent_id text`: host-level families belong to the agent's host.
    Agent,
}

/// Column types the metric tables use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Int4,
    Int8,
    Float8,
    Text,
    Bool,
    Timestamptz,
    Jsonb,
}

impl ColumnType {
    pub fn pg_type(self) -> Type {
        match self {
            ColumnType::Int4 => Type::INT4,
            ColumnType::Int8 => Type::INT8,
            ColumnType::Float8 => Type::FLOAT8,
            ColumnType::Text => Type::TEXT,
            ColumnType::Bool => Type::BOOL,
            ColumnType::Timestamptz => Type::TIMESTAMPTZ,
            ColumnType::Jsonb => Type::JSONB,
        }
    }
}

#[derive(Debug)]
pub struct Table {
    /// Family name, as in `metric_families.name`.
    pub family: &'static str,
    /// Store table, as in `metric_families.table_name`.
    pub name: &'static str,
    pub key: Key,
    /// Value columns after `time` and the key, in table order.
    pub columns: &'static [(&'static str, ColumnType)],
}

/// One validated value; `None` is SQL NULL ("not collected").
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int4(Option<i32>),
    Int8(Option<i64>),
    Float8(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
    Timestamptz(Option<DateTime<Utc>>),
    Jsonb(Option<serde_json::Value>),
}

impl Value {
    pub fn column_type(&self) -> ColumnType {
        match self {
            Value::Int4(_) => ColumnType::Int4,
            Value::Int8(_) => ColumnType::Int8,
            Value::Float8(_) => ColumnType::Float8,
            Value::Text(_) => ColumnType::Text,
            Value::Bool(_) => ColumnType::Bool,
            Value::Timestamptz(_) => ColumnType::Timestamptz,
            Value::Jsonb(_) => ColumnType::Jsonb,
        }
    }
}

use ColumnType::{Bool, Float8, Int4, Int8, Jsonb, Text, Timestamptz};

pub static DATABASE: Table = Table {
    family: "database",
    name: "metric_database",
    key: Key::Instance,
    columns: &[
        ("datid", Int8),
        ("datname", Text),
        ("numbackends", Int4),
        ("xact_commit", Int8),
        ("xact_rollback", Int8),
        ("blks_read", Int8),
        ("blks_hit", Int8),
        ("tup_returned", Int8),
        ("tup_fetched", Int8),
        ("tup_inserted", Int8),
        ("tup_updated", Int8),
        ("tup_deleted", Int8),
        ("conflicts", Int8),
        ("temp_files", Int8),
        ("temp_bytes", Int8),
        ("deadlocks", Int8),
        ("size_bytes", Int8),
        ("stats_reset", Timestamptz),
    ],
};

pub static HOST_CPU: Table = Table {
    family: "host_cpu",
    name: "metric_host_cpu",
    key: Key::Agent,
    columns: &[
        ("cpu_count", Int4),
        ("usage_percent", Float8),
        ("load1", Float8),
        ("load5", Float8),
        ("load15", Float8),
    ],
};

pub static HOST_MEMORY: Table = Table {
    family: "host_memory",
    name: "metric_host_memory",
    key: Key::Agent,
    columns: &[
        ("total_bytes", Int8),
        ("used_bytes", Int8),
        ("available_bytes", Int8),
        ("free_bytes", Int8),
        ("swap_total_bytes", Int8),
        ("swap_used_bytes", Int8),
    ],
};

pub static STATEMENT: Table = Table {
    family: "statement",
    name: "metric_statement",
    key: Key::Instance,
    columns: &[
        ("queryid", Int8),
        ("dbid", Int8),
        ("userid", Int8),
        ("toplevel", Bool),
        ("since_reset", Bool),
        ("calls", Int8),
        ("rows", Int8),
        ("total_exec_time_ms", Float8),
        ("plans", Int8),
        ("total_plan_time_ms", Float8),
        ("shared_blks_hit", Int8),
        ("shared_blks_read", Int8),
        ("shared_blks_dirtied", Int8),
        ("shared_blks_written", Int8),
        ("local_blks_hit", Int8),
        ("local_blks_read", Int8),
        ("temp_blks_read", Int8),
        ("temp_blks_written", Int8),
        ("shared_blk_read_time_ms", Float8),
        ("shared_blk_write_time_ms", Float8),
        ("wal_records", Int8),
        ("wal_bytes", Int8),
    ],
};

pub static TABLE: Table = Table {
    family: "table",
    name: "metric_table",
    key: Key::Instance,
    columns: &[
        ("datname", Text),
        ("relid", Int8),
        ("schemaname", Text),
        ("relname", Text),
        ("seq_scan", Int8),
        ("seq_tup_read", Int8),
        ("idx_scan", Int8),
        ("idx_tup_fetch", Int8),
        ("n_tup_ins", Int8),
        ("n_tup_upd", Int8),
        ("n_tup_del", Int8),
        ("n_tup_hot_upd", Int8),
        ("n_tup_newpage_upd", Int8),
        ("n_live_tup", Int8),
        ("n_dead_tup", Int8),
        ("dead_tuple_ratio", Float8),
        ("n_mod_since_analyze", Int8),
        ("n_ins_since_vacuum", Int8),
        ("vacuum_count", Int8),
        ("autovacuum_count", Int8),
        ("analyze_count", Int8),
        ("autoanalyze_count", Int8),
        ("last_vacuum", Timestamptz),
        ("last_autovacuum", Timestamptz),
        ("last_analyze", Timestamptz),
        ("last_autoanalyze", Timestamptz),
        ("heap_blks_read", Int8),
        ("heap_blks_hit", Int8),
        ("idx_blks_read", Int8),
        ("idx_blks_hit", Int8),
        ("toast_blks_read", Int8),
        ("toast_blks_hit", Int8),
        ("heap_bytes", Int8),
        ("toast_bytes", Int8),
        ("indexes_bytes", Int8),
    ],
};

pub static INDEX: Table = Table {
    family: "index",
    name: "metric_index",
    key: Key::Instance,
    columns: &[
        ("datname", Text),
        ("indexrelid", Int8),
        ("relid", Int8),
        ("schemaname", Text),
        ("relname", Text),
        ("indexrelname", Text),
        ("idx_scan", Int8),
        ("idx_tup_read", Int8),
        ("idx_tup_fetch", Int8),
        ("idx_blks_read", Int8),
        ("idx_blks_hit", Int8),
        ("size_bytes", Int8),
        ("last_idx_scan", Timestamptz),
        ("is_unique", Bool),
        ("is_primary", Bool),
        ("invalid", Bool),
        ("unused", Bool),
    ],
};

pub static WAL: Table = Table {
    family: "wal",
    name: "metric_wal",
    key: Key::Instance,
    columns: &[
        ("current_lsn", Int8),
        ("wal_records", Int8),
        ("wal_fpi", Int8),
        ("wal_bytes", Int8),
        ("wal_buffers_full", Int8),
        ("wal_write", Int8),
        ("wal_sync", Int8),
        ("wal_write_time_ms", Float8),
        ("wal_sync_time_ms", Float8),
        ("stats_reset", Timestamptz),
    ],
};

pub static BGWRITER: Table = Table {
    family: "bgwriter",
    name: "metric_bgwriter",
    key: Key::Instance,
    columns: &[
        ("checkpoints_timed", Int8),
        ("checkpoints_req", Int8),
        ("checkpoint_write_time_ms", Float8),
        ("checkpoint_sync_time_ms", Float8),
        ("buffers_checkpoint", Int8),
        ("buffers_clean", Int8),
        ("maxwritten_clean", Int8),
        ("buffers_backend", Int8),
        ("buffers_backend_fsync", Int8),
        ("buffers_alloc", Int8),
        ("stats_reset", Timestamptz),
    ],
};

pub static ARCHIVER: Table = Table {
    family: "archiver",
    name: "metric_archiver",
    key: Key::Instance,
    columns: &[
        ("archived_count", Int8),
        ("last_archived_wal", Text),
        ("last_archived_time", Timestamptz),
        ("failed_count", Int8),
        ("last_failed_wal", Text),
        ("last_failed_time", Timestamptz),
        ("last_archived_age_seconds", Float8),
        ("stats_reset", Timestamptz),
    ],
};

pub static SETTINGS: Table = Table {
    family: "settings",
    name: "metric_settings",
    key: Key::Instance,
    columns: &[
        ("name", Text),
        ("setting", Text),
        ("unit", Text),
        ("source", Text),
        ("pending_restart", Bool),
    ],
};

pub static SETTING_CHANGES: Table = Table {
    family: "setting_changes",
    name: "metric_setting_changes",
    key: Key::Instance,
    columns: &[
        ("name", Text),
        ("old_setting", Text),
        ("new_setting", Text),
        ("pending_restart", Bool),
    ],
};

pub static ACTIVITY: Table = Table {
    family: "activity",
    name: "metric_activity",
    key: Key::Instance,
    columns: &[
        ("max_connections", Int8),
        ("total_sessions", Int8),
        ("connection_use_percent", Float8),
        ("waiting_sessions", Int8),
        ("oldest_xact_age_seconds", Float8),
        ("oldest_query_age_seconds", Float8),
        ("oldest_idle_in_xact_age_seconds", Float8),
    ],
};

pub static ACTIVITY_SESSIONS: Table = Table {
    family: "activity_sessions",
    name: "metric_activity_sessions",
    key: Key::Instance,
    columns: &[
        ("datname", Text),
        ("usename", Text),
        ("application_name", Text),
        ("state", Text),
        ("sessions", Int8),
        ("waiting", Int8),
    ],
};

pub static LOCK: Table = Table {
    family: "lock",
    name: "metric_lock",
    key: Key::Instance,
    columns: &[
        ("locktype", Text),
        ("mode", Text),
        ("granted", Bool),
        ("count", Int8),
    ],
};

pub static LOCK_WAITS: Table = Table {
    family: "lock_waits",
    name: "metric_lock_waits",
    key: Key::Instance,
    columns: &[
        ("blocked_pid", Int4),
        ("blocking_pid", Int4),
        ("datname", Text),
        ("wait_seconds", Float8),
        ("blocked_query", Text),
        ("blocking_query", Text),
    ],
};

pub static REPLICATION: Table = Table {
    family: "replication",
    name: "metric_replication",
    key: Key::Instance,
    columns: &[
        ("pid", Int4),
        ("application_name", Text),
        ("client_addr", Text),
        ("state", Text),
        ("sync_state", Text),
        ("sent_lag_bytes", Int8),
        ("write_lag_bytes", Int8),
        ("flush_lag_bytes", Int8),
        ("replay_lag_bytes", Int8),
        ("write_lag_seconds", Float8),
        ("flush_lag_seconds", Float8),
        ("replay_lag_seconds", Float8),
    ],
};

pub static REPLICATION_SLOT: Table = Table {
    family: "replication_slot",
    name: "metric_replication_slot",
    key: Key::Instance,
    columns: &[
        ("slot_name", Text),
        ("slot_type", Text),
        ("plugin", Text),
        ("datname", Text),
        ("active", Bool),
        ("temporary", Bool),
        ("retained_bytes", Int8),
        ("wal_status", Text),
        ("safe_wal_size", Int8),
        ("conflicting", Bool),
    ],
};

pub static PROGRESS: Table = Table {
    family: "progress",
    name: "metric_progress",
    key: Key::Instance,
    columns: &[
        ("command", Text),
        ("pid", Int4),
        ("datname", Text),
        ("relid", Int8),
        ("phase", Text),
        ("done", Int8),
        ("total", Int8),
        ("percent_done", Float8),
    ],
};

pub static WAIT: Table = Table {
    family: "wait",
    name: "metric_wait",
    key: Key::Instance,
    columns: &[
        ("wait_event_type", Text),
        ("wait_event", Text),
        ("queryid", Int8),
        ("count", Int8),
        ("samples", Int4),
        ("avg_sessions", Float8),
    ],
};

pub static HOST_NETWORK: Table = Table {
    family: "host_network",
    name: "metric_host_network",
    key: Key::Agent,
    columns: &[
        ("interface", Text),
        ("rx_bytes", Int8),
        ("tx_bytes", Int8),
        ("rx_packets", Int8),
        ("tx_packets", Int8),
        ("rx_errors", Int8),
        ("tx_errors", Int8),
        ("rx_drops", Int8),
        ("tx_drops", Int8),
        ("rx_bytes_per_sec", Float8),
        ("tx_bytes_per_sec", Float8),
    ],
};

pub static HOST_DISK_IO: Table = Table {
    family: "host_disk_io",
    name: "metric_host_disk_io",
    key: Key::Agent,
    columns: &[
        ("device", Text),
        ("reads", Int8),
        ("writes", Int8),
        ("read_bytes", Int8),
        ("write_bytes", Int8),
        ("io_time_ms", Int8),
        ("read_bytes_per_sec", Float8),
        ("write_bytes_per_sec", Float8),
        ("util_percent", Float8),
    ],
};

pub static STANDBY: Table = Table {
    family: "standby",
    name: "metric_standby",
    key: Key::Instance,
    columns: &[
        ("receiver_status", Text),
        ("sender_host", Text),
        ("sender_port", Int4),
        ("slot_name", Text),
        ("receive_lsn", Int8),
        ("replay_lsn", Int8),
        ("replay_delay_seconds", Float8),
        ("replay_lag_bytes", Int8),
        ("last_msg_age_seconds", Float8),
    ],
};

pub static SUBSCRIPTION: Table = Table {
    family: "subscription",
    name: "metric_subscription",
    key: Key::Instance,
    columns: &[
        ("subname", Text),
        ("pid", Int4),
        ("relid", Int8),
        ("received_lsn", Int8),
        ("latest_end_lsn", Int8),
        ("last_msg_send", Timestamptz),
        ("last_msg_receipt", Timestamptz),
        ("latest_end", Timestamptz),
        ("apply_error_count", Int8),
        ("sync_error_count", Int8),
    ],
};

pub static SUBSCRIPTION_TABLES: Table = Table {
    family: "subscription_tables",
    name: "metric_subscription_tables",
    key: Key::Instance,
    columns: &[
        ("subname", Text),
        ("schemaname", Text),
        ("relname", Text),
        ("state", Text),
        ("sync_lsn", Int8),
    ],
};

pub static CUSTOM: Table = Table {
    family: "custom",
    name: "metric_custom",
    key: Key::Instance,
    columns: &[
        ("metric", Text),
        ("datname", Text),
        ("labels", Jsonb),
        ("value_name", Text),
        ("value", Float8),
    ],
};

pub static HOST_FILESYSTEM: Table = Table {
    family: "host_filesystem",
    name: "metric_host_filesystem",
    key: Key::Instance,
    columns: &[
        ("mount_point", Text),
        ("device", Text),
        ("fs_type", Text),
        ("roles", Text),
        ("total_bytes", Int8),
        ("used_bytes", Int8),
        ("free_bytes", Int8),
        ("total_inodes", Int8),
        ("used_inodes", Int8),
        ("free_inodes", Int8),
    ],
};

pub static COLLECTOR_EVENT: Table = Table {
    family: "collector_event",
    name: "metric_collector_event",
    key: Key::Instance,
    columns: &[
        ("collector", Text),
        ("kind", Text),
        ("message", Text),
        ("sqlstate", Text),
        ("suppressed", Int8),
    ],
};

pub static LOG: Table = Table {
    family: "log",
    name: "metric_log",
    key: Key::Instance,
    columns: &[
        ("severity", Text),
        ("sqlstate", Text),
        ("message", Text),
        ("detail", Text),
        ("hint", Text),
        ("context", Text),
        ("statement", Text),
        ("user_name", Text),
        ("database", Text),
        ("application", Text),
        ("pid", Int4),
        ("query_id", Int8),
        ("duration_ms", Float8),
        ("source", Text),
    ],
};

pub static LOG_PLANS: Table = Table {
    family: "log_plans",
    name: "metric_log_plans",
    key: Key::Instance,
    columns: &[
        ("pid", Int4),
        ("query_id", Int8),
        ("duration_ms", Float8),
        ("database", Text),
        ("user_name", Text),
        ("query_text", Text),
        ("plan", Text),
    ],
};

pub static LOG_DROPS: Table = Table {
    family: "log_drops",
    name: "metric_log_drops",
    key: Key::Instance,
    columns: &[
        ("dropped_events", Int8),
        ("truncated_lines", Int8),
        ("unparsed_lines", Int8),
    ],
};

/// Every metric table this build writes.
pub static TABLES: &[&Table] = &[
    &DATABASE,
    &HOST_CPU,
    &HOST_MEMORY,
    &STATEMENT,
    &TABLE,
    &INDEX,
    &WAL,
    &BGWRITER,
    &ARCHIVER,
    &SETTINGS,
    &SETTING_CHANGES,
    &ACTIVITY,
    &ACTIVITY_SESSIONS,
    &LOCK,
    &LOCK_WAITS,
    &REPLICATION,
    &REPLICATION_SLOT,
    &PROGRESS,
    &WAIT,
    &HOST_NETWORK,
    &HOST_DISK_IO,
    &STANDBY,
    &SUBSCRIPTION,
    &SUBSCRIPTION_TABLES,
    &CUSTOM,
    &HOST_FILESYSTEM,
    &COLLECTOR_EVENT,
    &LOG,
    &LOG_PLANS,
    &LOG_DROPS,
];
