//! Every metric family, declared once (see the crate docs for what is derived from it).
//!
//! A family lists its columns in table order after `time` and the id column; the store's
//! `information_schema` must say the same (`tests/store_schema.rs`). Roles: `key` tells
//! series apart, `counter` is shown as a rate, `delta` summed, `gauge` averaged, `peak` its
//! maximum, `detail` only in samples.

use crate::ColumnType::{Bool, Float8, Int4, Int8, Jsonb, Text, Timestamptz};
use crate::{Column, ColumnType, Family, Key, Role, Rows};

const fn key(name: &'static str, ty: ColumnType) -> Column {
    Column::new(name, ty, Role::Key)
}

const fn counter(name: &'static str, ty: ColumnType) -> Column {
    Column::new(name, ty, Role::Counter)
}

const fn delta(name: &'static str, ty: ColumnType) -> Column {
    Column::new(name, ty, Role::Delta)
}

const fn gauge(name: &'static str, ty: ColumnType) -> Column {
    Column::new(name, ty, Role::Gauge)
}

const fn peak(name: &'static str, ty: ColumnType) -> Column {
    Column::new(name, ty, Role::Peak)
}

const fn detail(name: &'static str, ty: ColumnType) -> Column {
    Column::new(name, ty, Role::Detail)
}

/// Every family, in the order the API lists them.
pub static ALL: &[&Family] = &[
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
    &REPLICATION_IDENTITY,
    &SUBSCRIPTION_SOURCE,
    &PUBLICATION,
    &SUBSCRIPTION_COPY,
    &CUSTOM,
    &HOST_FILESYSTEM,
    &COLLECTOR_EVENT,
    &LOG,
    &LOG_PLANS,
    &LOG_DROPS,
    &BACKUP,
];

/// `pg_stat_database`, database sizes and wraparound ages: one row per database and sample.
pub static DATABASE: Family = Family {
    name: "database",
    table: "metric_database",
    key: Key::Instance,
    rows: Rows::Ordered("datname"),
    columns: &[
        detail("datid", Int8).not_null(),
        key("datname", Text).not_null(),
        gauge("numbackends", Int4),
        counter("xact_commit", Int8),
        counter("xact_rollback", Int8),
        counter("blks_read", Int8),
        counter("blks_hit", Int8),
        counter("tup_returned", Int8),
        counter("tup_fetched", Int8),
        counter("tup_inserted", Int8),
        counter("tup_updated", Int8),
        counter("tup_deleted", Int8),
        counter("conflicts", Int8),
        counter("temp_files", Int8),
        counter("temp_bytes", Int8),
        counter("deadlocks", Int8),
        gauge("size_bytes", Int8),
        detail("stats_reset", Timestamptz),
        // From V27: transaction id and multixact wraparound age (`age(datfrozenxid)`,
        // `mxid_age(datminmxid)`); NULL in rows of older agents.
        gauge("datfrozenxid_age", Int4),
        gauge("datminmxid_age", Int4),
    ],
};

/// CPU use and load of the agent's host: one row per sample.
pub static HOST_CPU: Family = Family {
    name: "host_cpu",
    table: "metric_host_cpu",
    key: Key::Agent,
    rows: Rows::OnePerTime,
    columns: &[
        gauge("cpu_count", Int4).not_null(),
        gauge("usage_percent", Float8).not_null(),
        gauge("load1", Float8).not_null(),
        gauge("load5", Float8).not_null(),
        gauge("load15", Float8).not_null(),
    ],
};

/// Memory and swap of the agent's host: one row per sample.
pub static HOST_MEMORY: Family = Family {
    name: "host_memory",
    table: "metric_host_memory",
    key: Key::Agent,
    rows: Rows::OnePerTime,
    columns: &[
        gauge("total_bytes", Int8).not_null(),
        gauge("used_bytes", Int8).not_null(),
        gauge("available_bytes", Int8).not_null(),
        gauge("free_bytes", Int8).not_null(),
        gauge("swap_total_bytes", Int8).not_null(),
        gauge("swap_used_bytes", Int8).not_null(),
    ],
};

/// Per-interval deltas of `pg_stat_statements`, one row per statement; `since_reset`
/// marks values that count from a reset inside the interval (a lower bound).
pub static STATEMENT: Family = Family {
    name: "statement",
    table: "metric_statement",
    key: Key::Instance,
    rows: Rows::Ordered("calls DESC NULLS LAST, queryid"),
    columns: &[
        key("queryid", Int8).not_null(),
        key("dbid", Int8).not_null(),
        key("userid", Int8).not_null(),
        key("toplevel", Bool).not_null(),
        detail("since_reset", Bool).not_null(),
        delta("calls", Int8),
        delta("rows", Int8),
        delta("total_exec_time_ms", Float8),
        delta("plans", Int8),
        delta("total_plan_time_ms", Float8),
        delta("shared_blks_hit", Int8),
        delta("shared_blks_read", Int8),
        delta("shared_blks_dirtied", Int8),
        delta("shared_blks_written", Int8),
        delta("local_blks_hit", Int8),
        delta("local_blks_read", Int8),
        delta("temp_blks_read", Int8),
        delta("temp_blks_written", Int8),
        delta("shared_blk_read_time_ms", Float8),
        delta("shared_blk_write_time_ms", Float8),
        delta("wal_records", Int8),
        delta("wal_bytes", Int8),
    ],
};

/// Per-table statistics, I/O and sizes of every collected database.
pub static TABLE: Family = Family {
    name: "table",
    table: "metric_table",
    key: Key::Instance,
    rows: Rows::Ordered("datname, schemaname, relname"),
    columns: &[
        key("datname", Text).not_null(),
        detail("relid", Int8).not_null(),
        key("schemaname", Text).not_null(),
        key("relname", Text).not_null(),
        counter("seq_scan", Int8),
        counter("seq_tup_read", Int8),
        counter("idx_scan", Int8),
        counter("idx_tup_fetch", Int8),
        counter("n_tup_ins", Int8),
        counter("n_tup_upd", Int8),
        counter("n_tup_del", Int8),
        counter("n_tup_hot_upd", Int8),
        counter("n_tup_newpage_upd", Int8),
        gauge("n_live_tup", Int8),
        gauge("n_dead_tup", Int8),
        gauge("dead_tuple_ratio", Float8),
        gauge("n_mod_since_analyze", Int8),
        gauge("n_ins_since_vacuum", Int8),
        counter("vacuum_count", Int8),
        counter("autovacuum_count", Int8),
        counter("analyze_count", Int8),
        counter("autoanalyze_count", Int8),
        detail("last_vacuum", Timestamptz),
        detail("last_autovacuum", Timestamptz),
        detail("last_analyze", Timestamptz),
        detail("last_autoanalyze", Timestamptz),
        counter("heap_blks_read", Int8),
        counter("heap_blks_hit", Int8),
        counter("idx_blks_read", Int8),
        counter("idx_blks_hit", Int8),
        counter("toast_blks_read", Int8),
        counter("toast_blks_hit", Int8),
        gauge("heap_bytes", Int8),
        gauge("toast_bytes", Int8),
        gauge("indexes_bytes", Int8),
    ],
};

/// Per-index statistics, I/O and sizes of every collected database.
pub static INDEX: Family = Family {
    name: "index",
    table: "metric_index",
    key: Key::Instance,
    rows: Rows::Ordered("datname, schemaname, indexrelname"),
    columns: &[
        key("datname", Text).not_null(),
        detail("indexrelid", Int8).not_null(),
        detail("relid", Int8).not_null(),
        key("schemaname", Text).not_null(),
        key("relname", Text).not_null(),
        key("indexrelname", Text).not_null(),
        counter("idx_scan", Int8),
        counter("idx_tup_read", Int8),
        counter("idx_tup_fetch", Int8),
        counter("idx_blks_read", Int8),
        counter("idx_blks_hit", Int8),
        gauge("size_bytes", Int8),
        detail("last_idx_scan", Timestamptz),
        detail("is_unique", Bool).not_null(),
        detail("is_primary", Bool).not_null(),
        detail("invalid", Bool).not_null(),
        detail("unused", Bool).not_null(),
    ],
};

/// `pg_stat_wal` and the current LSN: one row per sample.
pub static WAL: Family = Family {
    name: "wal",
    table: "metric_wal",
    key: Key::Instance,
    rows: Rows::Ordered("instance_id"),
    columns: &[
        counter("current_lsn", Int8),
        counter("wal_records", Int8),
        counter("wal_fpi", Int8),
        counter("wal_bytes", Int8),
        counter("wal_buffers_full", Int8),
        counter("wal_write", Int8),
        counter("wal_sync", Int8),
        counter("wal_write_time_ms", Float8),
        counter("wal_sync_time_ms", Float8),
        detail("stats_reset", Timestamptz),
    ],
};

/// `pg_stat_bgwriter` (checkpointer columns included): one row per sample.
pub static BGWRITER: Family = Family {
    name: "bgwriter",
    table: "metric_bgwriter",
    key: Key::Instance,
    rows: Rows::Ordered("instance_id"),
    columns: &[
        counter("checkpoints_timed", Int8),
        counter("checkpoints_req", Int8),
        counter("checkpoint_write_time_ms", Float8),
        counter("checkpoint_sync_time_ms", Float8),
        counter("buffers_checkpoint", Int8),
        counter("buffers_clean", Int8),
        counter("maxwritten_clean", Int8),
        counter("buffers_backend", Int8),
        counter("buffers_backend_fsync", Int8),
        counter("buffers_alloc", Int8),
        detail("stats_reset", Timestamptz),
    ],
};

/// `pg_stat_archiver`: one row per sample.
pub static ARCHIVER: Family = Family {
    name: "archiver",
    table: "metric_archiver",
    key: Key::Instance,
    rows: Rows::Ordered("instance_id"),
    columns: &[
        counter("archived_count", Int8),
        detail("last_archived_wal", Text),
        detail("last_archived_time", Timestamptz),
        counter("failed_count", Int8),
        detail("last_failed_wal", Text),
        detail("last_failed_time", Timestamptz),
        peak("last_archived_age_seconds", Float8),
        detail("stats_reset", Timestamptz),
    ],
};

/// Every `pg_settings` row, sampled rarely.
pub static SETTINGS: Family = Family {
    name: "settings",
    table: "metric_settings",
    key: Key::Instance,
    rows: Rows::Ordered("name"),
    columns: &[
        key("name", Text).not_null(),
        detail("setting", Text).not_null(),
        detail("unit", Text),
        detail("source", Text).not_null(),
        detail("pending_restart", Bool).not_null(),
    ],
};

/// One row per setting change the agent saw between two `settings` samples.
pub static SETTING_CHANGES: Family = Family {
    name: "setting_changes",
    table: "metric_setting_changes",
    key: Key::Instance,
    rows: Rows::Ordered("name"),
    columns: &[
        key("name", Text).not_null(),
        detail("old_setting", Text),
        detail("new_setting", Text).not_null(),
        detail("pending_restart", Bool).not_null(),
    ],
};

/// A summary of `pg_stat_activity`: connections used, oldest transaction and query.
pub static ACTIVITY: Family = Family {
    name: "activity",
    table: "metric_activity",
    key: Key::Instance,
    rows: Rows::Ordered("instance_id"),
    columns: &[
        gauge("max_connections", Int8),
        gauge("total_sessions", Int8),
        gauge("connection_use_percent", Float8),
        gauge("waiting_sessions", Int8),
        peak("oldest_xact_age_seconds", Float8),
        peak("oldest_query_age_seconds", Float8),
        peak("oldest_idle_in_xact_age_seconds", Float8),
    ],
};

/// Session counts per database, user, application and state.
pub static ACTIVITY_SESSIONS: Family = Family {
    name: "activity_sessions",
    table: "metric_activity_sessions",
    key: Key::Instance,
    rows: Rows::Ordered("sessions DESC, datname, usename, application_name, state"),
    columns: &[
        key("datname", Text),
        key("usename", Text),
        key("application_name", Text),
        key("state", Text),
        gauge("sessions", Int8).not_null(),
        gauge("waiting", Int8).not_null(),
    ],
};

/// `pg_locks` counted by lock type, mode and granted.
pub static LOCK: Family = Family {
    name: "lock",
    table: "metric_lock",
    key: Key::Instance,
    rows: Rows::Ordered("count DESC, locktype, mode"),
    columns: &[
        key("locktype", Text).not_null(),
        key("mode", Text).not_null(),
        key("granted", Bool).not_null(),
        gauge("count", Int8).not_null(),
    ],
};

/// Blocking chains: one row per blocked/blocking pair.
pub static LOCK_WAITS: Family = Family {
    name: "lock_waits",
    table: "metric_lock_waits",
    key: Key::Instance,
    rows: Rows::Ordered("wait_seconds DESC NULLS LAST"),
    columns: &[
        detail("blocked_pid", Int4).not_null(),
        detail("blocking_pid", Int4).not_null(),
        key("datname", Text),
        peak("wait_seconds", Float8),
        detail("blocked_query", Text),
        detail("blocking_query", Text),
    ],
};

/// `pg_stat_replication` on a primary: one row per WAL sender.
pub static REPLICATION: Family = Family {
    name: "replication",
    table: "metric_replication",
    key: Key::Instance,
    rows: Rows::Ordered("application_name, pid"),
    columns: &[
        detail("pid", Int4).not_null(),
        key("application_name", Text),
        key("client_addr", Text),
        detail("state", Text),
        detail("sync_state", Text),
        gauge("sent_lag_bytes", Int8),
        gauge("write_lag_bytes", Int8),
        gauge("flush_lag_bytes", Int8),
        gauge("replay_lag_bytes", Int8),
        gauge("write_lag_seconds", Float8),
        gauge("flush_lag_seconds", Float8),
        gauge("replay_lag_seconds", Float8),
    ],
};

/// Replication slots and the WAL each retains.
pub static REPLICATION_SLOT: Family = Family {
    name: "replication_slot",
    table: "metric_replication_slot",
    key: Key::Instance,
    rows: Rows::Ordered("slot_name"),
    columns: &[
        key("slot_name", Text).not_null(),
        detail("slot_type", Text).not_null(),
        detail("plugin", Text),
        detail("datname", Text),
        detail("active", Bool).not_null(),
        detail("temporary", Bool).not_null(),
        gauge("retained_bytes", Int8),
        detail("wal_status", Text),
        gauge("safe_wal_size", Int8),
        detail("conflicting", Bool),
    ],
};

/// Running vacuum, analyze, create index, cluster, base backup and copy: one row per
/// command and sample.
pub static PROGRESS: Family = Family {
    name: "progress",
    table: "metric_progress",
    key: Key::Instance,
    rows: Rows::Ordered("command, pid"),
    columns: &[
        key("command", Text).not_null(),
        key("pid", Int4).not_null(),
        detail("datname", Text),
        detail("relid", Int8),
        detail("phase", Text),
        peak("done", Int8),
        peak("total", Int8),
        peak("percent_done", Float8),
    ],
};

/// Per window, the active sessions seen waiting on each wait event (and queryid),
/// summed over the window's 1-second samples.
pub static WAIT: Family = Family {
    name: "wait",
    table: "metric_wait",
    key: Key::Instance,
    rows: Rows::Ordered("count DESC, wait_event_type, wait_event"),
    columns: &[
        key("wait_event_type", Text).not_null(),
        key("wait_event", Text).not_null(),
        key("queryid", Int8),
        delta("count", Int8).not_null(),
        delta("samples", Int4).not_null(),
        gauge("avg_sessions", Float8).not_null(),
    ],
};

/// Per network interface of the agent's host.
pub static HOST_NETWORK: Family = Family {
    name: "host_network",
    table: "metric_host_network",
    key: Key::Agent,
    rows: Rows::Ordered("interface"),
    columns: &[
        key("interface", Text).not_null(),
        counter("rx_bytes", Int8).not_null(),
        counter("tx_bytes", Int8).not_null(),
        counter("rx_packets", Int8).not_null(),
        counter("tx_packets", Int8).not_null(),
        counter("rx_errors", Int8).not_null(),
        counter("tx_errors", Int8).not_null(),
        counter("rx_drops", Int8).not_null(),
        counter("tx_drops", Int8).not_null(),
        gauge("rx_bytes_per_sec", Float8),
        gauge("tx_bytes_per_sec", Float8),
    ],
};

/// Per block device of the agent's host.
pub static HOST_DISK_IO: Family = Family {
    name: "host_disk_io",
    table: "metric_host_disk_io",
    key: Key::Agent,
    rows: Rows::Ordered("device"),
    columns: &[
        key("device", Text).not_null(),
        counter("reads", Int8).not_null(),
        counter("writes", Int8).not_null(),
        counter("read_bytes", Int8).not_null(),
        counter("write_bytes", Int8).not_null(),
        counter("io_time_ms", Int8).not_null(),
        gauge("read_bytes_per_sec", Float8),
        gauge("write_bytes_per_sec", Float8),
        gauge("util_percent", Float8),
    ],
};

/// `pg_stat_wal_receiver` and replay position on a standby: one row per sample.
pub static STANDBY: Family = Family {
    name: "standby",
    table: "metric_standby",
    key: Key::Instance,
    rows: Rows::Ordered("instance_id"),
    columns: &[
        detail("receiver_status", Text),
        detail("sender_host", Text),
        detail("sender_port", Int4),
        detail("slot_name", Text),
        counter("receive_lsn", Int8),
        counter("replay_lsn", Int8),
        peak("replay_delay_seconds", Float8),
        peak("replay_lag_bytes", Int8),
        peak("last_msg_age_seconds", Float8),
    ],
};

/// `pg_stat_subscription` (and its error counts): one row per worker, with whether its
/// subscription is enabled and its apply worker runs.
pub static SUBSCRIPTION: Family = Family {
    name: "subscription",
    table: "metric_subscription",
    key: Key::Instance,
    rows: Rows::Ordered("subname, relid NULLS FIRST"),
    columns: &[
        key("subname", Text).not_null(),
        detail("pid", Int4),
        key("relid", Int8),
        counter("received_lsn", Int8),
        counter("latest_end_lsn", Int8),
        detail("last_msg_send", Timestamptz),
        detail("last_msg_receipt", Timestamptz),
        detail("latest_end", Timestamptz),
        counter("apply_error_count", Int8),
        counter("sync_error_count", Int8),
        // From V38, of the row's subscription (the same on each of its rows; NULL in rows of
        // older agents): pg_subscription.subenabled, and whether its apply worker has a pid.
        detail("enabled", Bool),
        detail("apply_worker_running", Bool),
    ],
};

/// The sync state of each table of each subscription.
pub static SUBSCRIPTION_TABLES: Family = Family {
    name: "subscription_tables",
    table: "metric_subscription_tables",
    key: Key::Instance,
    rows: Rows::Ordered("subname, schemaname, relname"),
    columns: &[
        key("subname", Text).not_null(),
        key("schemaname", Text).not_null(),
        key("relname", Text).not_null(),
        key("state", Text).not_null(),
        detail("sync_lsn", Int8),
    ],
};

/// Who an instance is in a replication topology: its cluster's system identifier
/// (shared by a primary and its physical standbys), timeline, recovery state and WAL
/// position in bytes: one row per sample.
pub static REPLICATION_IDENTITY: Family = Family {
    name: "replication_identity",
    table: "metric_replication_identity",
    key: Key::Instance,
    rows: Rows::Ordered("instance_id"),
    columns: &[
        detail("system_identifier", Int8).not_null(),
        detail("timeline_id", Int4).not_null(),
        detail("in_recovery", Bool).not_null(),
        counter("wal_lsn", Int8),
        detail("port", Int4).not_null(),
        detail("server_addr", Text),
        detail("receiver_application_name", Text),
    ],
};

/// Where each subscription reads from: host, port and database of its conninfo (never
/// the password) and its slot on the publisher.
pub static SUBSCRIPTION_SOURCE: Family = Family {
    name: "subscription_source",
    table: "metric_subscription_source",
    key: Key::Instance,
    rows: Rows::Ordered("subname"),
    columns: &[
        key("subname", Text).not_null(),
        detail("datname", Text).not_null(),
        detail("enabled", Bool).not_null(),
        detail("slot_name", Text),
        detail("conn_host", Text),
        detail("conn_port", Int4),
        detail("conn_dbname", Text),
        detail("publications", Text),
    ],
};

/// Backfill of logical replication: the COPY each table-sync worker of a subscription is
/// running (pg_stat_progress_copy by the worker's pid, PostgreSQL 14+), one row per table
/// being copied; the API sets it against the table's size on the publisher.
pub static SUBSCRIPTION_COPY: Family = Family {
    name: "subscription_copy",
    table: "metric_subscription_copy",
    key: Key::Instance,
    rows: Rows::Ordered("subname, schemaname, relname"),
    columns: &[
        key("subname", Text).not_null(),
        key("schemaname", Text).not_null(),
        key("relname", Text).not_null(),
        detail("pid", Int4).not_null(),
        gauge("bytes_processed", Int8).not_null(),
        gauge("tuples_processed", Int8).not_null(),
    ],
};

/// The publications of the agent's database and the tables each publishes: one row per
/// published table (one without a table for a publication that has none).
pub static PUBLICATION: Family = Family {
    name: "publication",
    table: "metric_publication",
    key: Key::Instance,
    rows: Rows::Ordered("pubname, schemaname, relname"),
    columns: &[
        detail("datname", Text).not_null(),
        key("pubname", Text).not_null(),
        detail("all_tables", Bool).not_null(),
        detail("schemaname", Text),
        detail("relname", Text),
    ],
};

/// User-defined SQL metrics (`[[collect.custom]]`): one row per result row and value
/// column.
pub static CUSTOM: Family = Family {
    name: "custom",
    table: "metric_custom",
    key: Key::Instance,
    rows: Rows::Ordered("metric, datname, labels::text, value_name"),
    columns: &[
        key("metric", Text).not_null(),
        key("datname", Text).not_null(),
        key("labels", Jsonb).not_null(),
        key("value_name", Text).not_null(),
        gauge("value", Float8),
    ],
};

/// The file systems holding an instance's data, WAL and tablespaces (keyed by
/// instance: `roles` says which of them a mount holds).
pub static HOST_FILESYSTEM: Family = Family {
    name: "host_filesystem",
    table: "metric_host_filesystem",
    key: Key::Instance,
    rows: Rows::Ordered("mount_point"),
    columns: &[
        key("mount_point", Text).not_null(),
        detail("device", Text),
        detail("fs_type", Text),
        detail("roles", Text).not_null(),
        gauge("total_bytes", Int8).not_null(),
        gauge("used_bytes", Int8).not_null(),
        gauge("free_bytes", Int8).not_null(),
        gauge("total_inodes", Int8).not_null(),
        gauge("used_inodes", Int8).not_null(),
        gauge("free_inodes", Int8).not_null(),
    ],
};

/// A collector's failure (missing extension, privilege, timeout), at most one per
/// collector per 5 minutes while it keeps failing.
pub static COLLECTOR_EVENT: Family = Family {
    name: "collector_event",
    table: "metric_collector_event",
    key: Key::Instance,
    rows: Rows::Ordered("collector"),
    columns: &[
        key("collector", Text).not_null(),
        key("kind", Text).not_null(),
        detail("message", Text).not_null(),
        detail("sqlstate", Text),
        delta("suppressed", Int8).not_null(),
    ],
};

/// Server log events (`time` is the event's own time); an event family: a bucket's
/// `row_count` is the number of events.
pub static LOG: Family = Family {
    name: "log",
    table: "metric_log",
    key: Key::Instance,
    rows: Rows::Ordered("pid, severity"),
    columns: &[
        key("severity", Text).not_null(),
        detail("sqlstate", Text),
        detail("message", Text).not_null(),
        detail("detail", Text),
        detail("hint", Text),
        detail("context", Text),
        detail("statement", Text),
        detail("user_name", Text),
        detail("database", Text),
        detail("application", Text),
        detail("pid", Int4),
        detail("query_id", Int8),
        peak("duration_ms", Float8),
        detail("source", Text).not_null(),
    ],
};

/// auto_explain plans from the server log, linked to their statement by `query_id`; read by
/// `GET /api/v1/instances/{id}/statements/{queryid}/plans`.
pub static LOG_PLANS: Family = Family {
    name: "log_plans",
    table: "metric_log_plans",
    key: Key::Instance,
    rows: Rows::Ordered("pid"),
    columns: &[
        detail("pid", Int4),
        key("query_id", Int8),
        peak("duration_ms", Float8),
        detail("database", Text),
        detail("user_name", Text),
        detail("query_text", Text),
        detail("plan", Text).not_null(),
        // V36: the agent cut the plan or its query text (NULL from older agents).
        detail("plan_truncated", Bool),
    ],
};

/// Per agent sample, the log events dropped (rate cap), lines cut (length cap) or left
/// unparsed.
pub static LOG_DROPS: Family = Family {
    name: "log_drops",
    table: "metric_log_drops",
    key: Key::Instance,
    rows: Rows::Ordered("instance_id"),
    columns: &[
        delta("dropped_events", Int8).not_null(),
        delta("truncated_lines", Int8).not_null(),
        delta("unparsed_lines", Int8).not_null(),
    ],
};

/// pgBackRest backups of each stanza, written by the API (not an agent) once a minute from
/// what the store knows: the stored catalogue, the backup and drill runs, the schedule firings
/// (`api/src/backup_catalogue/samples.rs`); one row per stanza.
pub static BACKUP: Family = Family {
    name: "backup",
    table: "metric_backup",
    key: Key::Instance,
    rows: Rows::Ordered("stanza"),
    columns: &[
        key("stanza", Text).not_null(),
        // Since the newest backup stopped.
        gauge("age_seconds", Float8),
        detail("last_type", Text),
        gauge("last_duration_seconds", Float8),
        // The database's size, and the repository's, at the newest backup.
        gauge("last_size_bytes", Int8),
        gauge("last_repo_size_bytes", Int8),
        // 1 when the latest ended backup run of the stanza failed, timed out or expired.
        gauge("last_run_failed", Int4),
        // Since the server last archived a WAL segment (its `archiver` samples).
        gauge("archive_lag_seconds", Float8),
        // Firings of its schedules missed or skipped in the last 24 hours.
        gauge("missed_firings", Int4).not_null(),
        // 1 when the instance's latest restore drill failed, 0 when it passed.
        gauge("drill_failed", Int4),
    ],
};
