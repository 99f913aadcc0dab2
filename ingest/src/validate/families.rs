//! Per-family checks: each wire message becomes rows of store [`Value`]s in
//! the column order of its [`schema`](super::schema) table, with values the
//! store accepts as they are (integer widths, NUL-free text, finite floats).

use lasect_proto::v1;

use super::checks::{
    FieldError, MAX_IDENTIFIER_BYTES, counter, invalid, name, non_negative, small_count, text,
    time, unsigned,
};
use super::schema::Value;

/// A row of values, in table column order (after `time` and the key).
pub type Row = Vec<Value>;

/// Longest `version()` text kept; real ones are around 100 bytes.
const MAX_VERSION_BYTES: usize = 1024;
/// Longest statement text kept; the agent truncates long texts before this.
pub const MAX_STATEMENT_TEXT_BYTES: usize = 1 << 20;

/// The name of a monitored instance, as configured on its agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceName(String);

impl InstanceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InstanceName {
    type Error = FieldError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        if name.is_empty() {
            return Err(invalid(
                "instance",
                "must not be empty for PostgreSQL samples",
            ));
        }
        if name.chars().count() > 63 {
            return Err(invalid("instance", "must be at most 63 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("instance", "must not contain control characters"));
        }
        Ok(Self(name))
    }
}

/// Facts of an `InstanceInfo` sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceFacts {
    pub server_version_num: i32,
    pub version: String,
    pub in_recovery: bool,
}

impl TryFrom<v1::InstanceInfo> for InstanceFacts {
    type Error = FieldError;

    fn try_from(info: v1::InstanceInfo) -> Result<Self, Self::Error> {
        if info.server_version_num < 0 {
            return Err(invalid("server_version_num", "must not be negative"));
        }
        Ok(Self {
            server_version_num: info.server_version_num,
            version: text("version", info.version, MAX_VERSION_BYTES)?,
            in_recovery: info.in_recovery,
        })
    }
}

/// `database`: one row per `pg_stat_database` row.
pub fn database_row(row: v1::DatabaseRow) -> Result<Row, FieldError> {
    Ok(vec![
        Value::Int8(Some(i64::from(row.datid))),
        name("datname", row.datname)?,
        small_count("numbackends", row.numbackends)?,
        counter("xact_commit", row.xact_commit)?,
        counter("xact_rollback", row.xact_rollback)?,
        counter("blks_read", row.blks_read)?,
        counter("blks_hit", row.blks_hit)?,
        counter("tup_returned", row.tup_returned)?,
        counter("tup_fetched", row.tup_fetched)?,
        counter("tup_inserted", row.tup_inserted)?,
        counter("tup_updated", row.tup_updated)?,
        counter("tup_deleted", row.tup_deleted)?,
        counter("conflicts", row.conflicts)?,
        counter("temp_files", row.temp_files)?,
        counter("temp_bytes", row.temp_bytes)?,
        counter("deadlocks", row.deadlocks)?,
        counter("size_bytes", row.size_bytes)?,
        time("stats_reset_unix_micros", row.stats_reset_unix_micros)?,
        // age() and mxid_age() are int4 and never negative.
        small_count("datfrozenxid_age", row.datfrozenxid_age)?,
        small_count("datminmxid_age", row.datminmxid_age)?,
    ])
}

/// `host_cpu`: usage is a share of all cores, 0..=100.
pub fn host_cpu_row(cpu: v1::HostCpu) -> Result<Row, FieldError> {
    let cpu_count = i32::try_from(cpu.cpu_count)
        .map_err(|_| invalid("cpu_count", format!("{} is too large", cpu.cpu_count)))?;
    if !(cpu.usage_percent.is_finite() && (0.0..=100.0).contains(&cpu.usage_percent)) {
        return Err(invalid(
            "usage_percent",
            format!("must be within 0..=100, got {}", cpu.usage_percent),
        ));
    }
    Ok(vec![
        Value::Int4(Some(cpu_count)),
        Value::Float8(Some(cpu.usage_percent)),
        non_negative("load1", Some(cpu.load1))?,
        non_negative("load5", Some(cpu.load5))?,
        non_negative("load15", Some(cpu.load15))?,
    ])
}

/// `host_memory`: byte counts that must fit `bigint`.
pub fn host_memory_row(mem: v1::HostMemory) -> Result<Row, FieldError> {
    Ok(vec![
        unsigned("total_bytes", mem.total_bytes)?,
        unsigned("used_bytes", mem.used_bytes)?,
        unsigned("available_bytes", mem.available_bytes)?,
        unsigned("free_bytes", mem.free_bytes)?,
        unsigned("swap_total_bytes", mem.swap_total_bytes)?,
        unsigned("swap_used_bytes", mem.swap_used_bytes)?,
    ])
}

/// `statement`: one row of deltas; deltas are never negative.
pub fn statement_row(row: v1::StatementRow) -> Result<Row, FieldError> {
    Ok(vec![
        Value::Int8(Some(row.queryid)),
        Value::Int8(Some(i64::from(row.dbid))),
        Value::Int8(Some(i64::from(row.userid))),
        Value::Bool(Some(row.toplevel)),
        Value::Bool(Some(row.since_reset)),
        counter("calls", row.calls)?,
        counter("rows", row.rows)?,
        non_negative("total_exec_time_ms", row.total_exec_time_ms)?,
        counter("plans", row.plans)?,
        non_negative("total_plan_time_ms", row.total_plan_time_ms)?,
        counter("shared_blks_hit", row.shared_blks_hit)?,
        counter("shared_blks_read", row.shared_blks_read)?,
        counter("shared_blks_dirtied", row.shared_blks_dirtied)?,
        counter("shared_blks_written", row.shared_blks_written)?,
        counter("local_blks_hit", row.local_blks_hit)?,
        counter("local_blks_read", row.local_blks_read)?,
        counter("temp_blks_read", row.temp_blks_read)?,
        counter("temp_blks_written", row.temp_blks_written)?,
        non_negative("shared_blk_read_time_ms", row.shared_blk_read_time_ms)?,
        non_negative("shared_blk_write_time_ms", row.shared_blk_write_time_ms)?,
        counter("wal_records", row.wal_records)?,
        counter("wal_bytes", row.wal_bytes)?,
    ])
}

/// The text of a statement, stored once per (instance, queryid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementText {
    pub queryid: i64,
    pub query: String,
}

impl TryFrom<v1::StatementText> for StatementText {
    type Error = FieldError;

    fn try_from(t: v1::StatementText) -> Result<Self, Self::Error> {
        Ok(Self {
            queryid: t.queryid,
            query: text("query", t.query, MAX_STATEMENT_TEXT_BYTES)?,
        })
    }
}

/// `table`: one row per user table; the dead-tuple ratio is derived here
/// so every reader gets the same definition (dead / (live + dead)).
pub fn table_row(t: v1::TableRow) -> Result<Row, FieldError> {
    let dead_tuple_ratio = match (t.n_live_tup, t.n_dead_tup) {
        (Some(live), Some(dead)) if live >= 0 && dead > 0 => {
            // Counts are far below 2^53: the float conversion is exact enough.
            Some(dead as f64 / (live as f64 + dead as f64))
        }
        (Some(live), Some(0)) if live >= 0 => Some(0.0),
        _ => None,
    };
    Ok(vec![
        name("datname", t.datname)?,
        Value::Int8(Some(i64::from(t.relid))),
        name("schemaname", t.schemaname)?,
        name("relname", t.relname)?,
        counter("seq_scan", t.seq_scan)?,
        counter("seq_tup_read", t.seq_tup_read)?,
        counter("idx_scan", t.idx_scan)?,
        counter("idx_tup_fetch", t.idx_tup_fetch)?,
        counter("n_tup_ins", t.n_tup_ins)?,
        counter("n_tup_upd", t.n_tup_upd)?,
        counter("n_tup_del", t.n_tup_del)?,
        counter("n_tup_hot_upd", t.n_tup_hot_upd)?,
        counter("n_tup_newpage_upd", t.n_tup_newpage_upd)?,
        counter("n_live_tup", t.n_live_tup)?,
        counter("n_dead_tup", t.n_dead_tup)?,
        Value::Float8(dead_tuple_ratio),
        counter("n_mod_since_analyze", t.n_mod_since_analyze)?,
        counter("n_ins_since_vacuum", t.n_ins_since_vacuum)?,
        counter("vacuum_count", t.vacuum_count)?,
        counter("autovacuum_count", t.autovacuum_count)?,
        counter("analyze_count", t.analyze_count)?,
        counter("autoanalyze_count", t.autoanalyze_count)?,
        time("last_vacuum_unix_micros", t.last_vacuum_unix_micros)?,
        time("last_autovacuum_unix_micros", t.last_autovacuum_unix_micros)?,
        time("last_analyze_unix_micros", t.last_analyze_unix_micros)?,
        time(
            "last_autoanalyze_unix_micros",
            t.last_autoanalyze_unix_micros,
        )?,
        counter("heap_blks_read", t.heap_blks_read)?,
        counter("heap_blks_hit", t.heap_blks_hit)?,
        counter("idx_blks_read", t.idx_blks_read)?,
        counter("idx_blks_hit", t.idx_blks_hit)?,
        counter("toast_blks_read", t.toast_blks_read)?,
        counter("toast_blks_hit", t.toast_blks_hit)?,
        counter("heap_bytes", t.heap_bytes)?,
        counter("toast_bytes", t.toast_bytes)?,
        counter("indexes_bytes", t.indexes_bytes)?,
    ])
}

/// `index`: one row per user index.
pub fn index_row(i: v1::IndexRow) -> Result<Row, FieldError> {
    Ok(vec![
        name("datname", i.datname)?,
        Value::Int8(Some(i64::from(i.indexrelid))),
        Value::Int8(Some(i64::from(i.relid))),
        name("schemaname", i.schemaname)?,
        name("relname", i.relname)?,
        name("indexrelname", i.indexrelname)?,
        counter("idx_scan", i.idx_scan)?,
        counter("idx_tup_read", i.idx_tup_read)?,
        counter("idx_tup_fetch", i.idx_tup_fetch)?,
        counter("idx_blks_read", i.idx_blks_read)?,
        counter("idx_blks_hit", i.idx_blks_hit)?,
        counter("size_bytes", i.size_bytes)?,
        time("last_idx_scan_unix_micros", i.last_idx_scan_unix_micros)?,
        Value::Bool(Some(i.is_unique)),
        Value::Bool(Some(i.is_primary)),
        Value::Bool(Some(i.invalid)),
        Value::Bool(Some(i.unused)),
    ])
}

/// `wal`: one row per sample.
pub fn wal_row(w: v1::WalStats) -> Result<Row, FieldError> {
    Ok(vec![
        counter("current_lsn", w.current_lsn)?,
        counter("wal_records", w.wal_records)?,
        counter("wal_fpi", w.wal_fpi)?,
        counter("wal_bytes", w.wal_bytes)?,
        counter("wal_buffers_full", w.wal_buffers_full)?,
        counter("wal_write", w.wal_write)?,
        counter("wal_sync", w.wal_sync)?,
        non_negative("wal_write_time_ms", w.wal_write_time_ms)?,
        non_negative("wal_sync_time_ms", w.wal_sync_time_ms)?,
        time("stats_reset_unix_micros", w.stats_reset_unix_micros)?,
    ])
}

/// `bgwriter`: one row per sample.
pub fn bgwriter_row(b: v1::BgwriterStats) -> Result<Row, FieldError> {
    Ok(vec![
        counter("checkpoints_timed", b.checkpoints_timed)?,
        counter("checkpoints_req", b.checkpoints_req)?,
        non_negative("checkpoint_write_time_ms", b.checkpoint_write_time_ms)?,
        non_negative("checkpoint_sync_time_ms", b.checkpoint_sync_time_ms)?,
        counter("buffers_checkpoint", b.buffers_checkpoint)?,
        counter("buffers_clean", b.buffers_clean)?,
        counter("maxwritten_clean", b.maxwritten_clean)?,
        counter("buffers_backend", b.buffers_backend)?,
        counter("buffers_backend_fsync", b.buffers_backend_fsync)?,
        counter("buffers_alloc", b.buffers_alloc)?,
        time("stats_reset_unix_micros", b.stats_reset_unix_micros)?,
    ])
}

/// WAL file names are 24 hex digits; `.partial`/`.history` suffixes exist.
const MAX_WAL_NAME_BYTES: usize = 64;

/// Empty text is "none" (NULL).
fn optional_text(field: &'static str, value: String, max: usize) -> Result<Value, FieldError> {
    let value = text(field, value, max)?;
    Ok(Value::Text((!value.is_empty()).then_some(value)))
}

/// `archiver`: one row per sample.
pub fn archiver_row(a: v1::ArchiverStats) -> Result<Row, FieldError> {
    Ok(vec![
        counter("archived_count", a.archived_count)?,
        optional_text("last_archived_wal", a.last_archived_wal, MAX_WAL_NAME_BYTES)?,
        time(
            "last_archived_time_unix_micros",
            a.last_archived_time_unix_micros,
        )?,
        counter("failed_count", a.failed_count)?,
        optional_text("last_failed_wal", a.last_failed_wal, MAX_WAL_NAME_BYTES)?,
        time(
            "last_failed_time_unix_micros",
            a.last_failed_time_unix_micros,
        )?,
        non_negative("last_archived_age_seconds", a.last_archived_age_seconds)?,
        time("stats_reset_unix_micros", a.stats_reset_unix_micros)?,
    ])
}

/// Setting names (custom ones are `prefix.name`) and values are bounded
/// so one sample cannot carry megabytes of text.
const MAX_SETTING_NAME_BYTES: usize = 255;
const MAX_SETTING_VALUE_BYTES: usize = 8192;

fn setting_name(value: String) -> Result<Value, FieldError> {
    let value = text("name", value, MAX_SETTING_NAME_BYTES)?;
    if value.is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    Ok(Value::Text(Some(value)))
}

/// `settings`: one row per pg_settings row.
pub fn setting_row(s: v1::Setting) -> Result<Row, FieldError> {
    Ok(vec![
        setting_name(s.name)?,
        Value::Text(Some(text("setting", s.setting, MAX_SETTING_VALUE_BYTES)?)),
        optional_text("unit", s.unit, 32)?,
        Value::Text(Some(text("source", s.source, 64)?)),
        Value::Bool(Some(s.pending_restart)),
    ])
}

/// `setting_changes`: one row per change.
pub fn setting_change_row(c: v1::SettingChange) -> Result<Row, FieldError> {
    Ok(vec![
        setting_name(c.name)?,
        optional_text("old_setting", c.old_setting, MAX_SETTING_VALUE_BYTES)?,
        Value::Text(Some(text(
            "new_setting",
            c.new_setting,
            MAX_SETTING_VALUE_BYTES,
        )?)),
        Value::Bool(Some(c.pending_restart)),
    ])
}

/// `activity`: the summary row; connection use is derived here.
pub fn activity_row(a: &v1::ActivitySnapshot) -> Result<Row, FieldError> {
    let use_percent = match (a.total_sessions, a.max_connections) {
        (Some(total), Some(max)) if max > 0 && total >= 0 => {
            // Session counts are tiny: the float conversion is exact.
            Some(total as f64 * 100.0 / max as f64)
        }
        _ => None,
    };
    Ok(vec![
        counter("max_connections", a.max_connections)?,
        counter("total_sessions", a.total_sessions)?,
        Value::Float8(use_percent),
        counter("waiting_sessions", a.waiting_sessions)?,
        non_negative("oldest_xact_age_seconds", a.oldest_xact_age_seconds)?,
        non_negative("oldest_query_age_seconds", a.oldest_query_age_seconds)?,
        non_negative(
            "oldest_idle_in_xact_age_seconds",
            a.oldest_idle_in_xact_age_seconds,
        )?,
    ])
}

/// `activity_sessions`: one row per group; empty text is unknown (NULL).
pub fn activity_group_row(g: v1::ActivityGroup) -> Result<Row, FieldError> {
    Ok(vec![
        optional_text("datname", g.datname, MAX_IDENTIFIER_BYTES)?,
        optional_text("usename", g.usename, MAX_IDENTIFIER_BYTES)?,
        optional_text("application_name", g.application_name, MAX_IDENTIFIER_BYTES)?,
        optional_text("state", g.state, MAX_IDENTIFIER_BYTES)?,
        counter("sessions", Some(g.sessions))?,
        counter("waiting", Some(g.waiting))?,
    ])
}

/// `lock`: one row per (locktype, mode, granted).
pub fn lock_count_row(c: v1::LockCount) -> Result<Row, FieldError> {
    Ok(vec![
        name("locktype", c.locktype)?,
        name("mode", c.mode)?,
        Value::Bool(Some(c.granted)),
        counter("count", Some(c.count))?,
    ])
}

/// Queries in blocking chains: the agent sends at most 1000 characters.
const MAX_LOCK_QUERY_BYTES: usize = 4096;

fn pid(field: &'static str, value: i32) -> Result<Value, FieldError> {
    if value <= 0 {
        return Err(invalid(field, format!("must be positive, got {value}")));
    }
    Ok(Value::Int4(Some(value)))
}

/// `lock_waits`: one row per blocked/blocking pair.
pub fn lock_wait_row(w: v1::LockWait) -> Result<Row, FieldError> {
    Ok(vec![
        pid("blocked_pid", w.blocked_pid)?,
        pid("blocking_pid", w.blocking_pid)?,
        optional_text("datname", w.datname, MAX_IDENTIFIER_BYTES)?,
        non_negative("wait_seconds", w.wait_seconds)?,
        optional_text("blocked_query", w.blocked_query, MAX_LOCK_QUERY_BYTES)?,
        optional_text("blocking_query", w.blocking_query, MAX_LOCK_QUERY_BYTES)?,
    ])
}

/// `replication`: one row per WAL sender.
pub fn replication_row(r: v1::ReplicationStandby) -> Result<Row, FieldError> {
    Ok(vec![
        pid("pid", r.pid)?,
        optional_text("application_name", r.application_name, MAX_IDENTIFIER_BYTES)?,
        // An IPv6 address with zone fits easily.
        optional_text("client_addr", r.client_addr, 64)?,
        optional_text("state", r.state, MAX_IDENTIFIER_BYTES)?,
        optional_text("sync_state", r.sync_state, MAX_IDENTIFIER_BYTES)?,
        counter("sent_lag_bytes", r.sent_lag_bytes)?,
        counter("write_lag_bytes", r.write_lag_bytes)?,
        counter("flush_lag_bytes", r.flush_lag_bytes)?,
        counter("replay_lag_bytes", r.replay_lag_bytes)?,
        non_negative("write_lag_seconds", r.write_lag_seconds)?,
        non_negative("flush_lag_seconds", r.flush_lag_seconds)?,
        non_negative("replay_lag_seconds", r.replay_lag_seconds)?,
    ])
}

/// `replication_slot`: one row per slot.
pub fn replication_slot_row(s: v1::ReplicationSlot) -> Result<Row, FieldError> {
    // safe_wal_size goes negative once a slot is past max_slot_wal_keep_size.
    let safe_wal_size = Value::Int8(s.safe_wal_size);
    Ok(vec![
        name("slot_name", s.slot_name)?,
        name("slot_type", s.slot_type)?,
        optional_text("plugin", s.plugin, MAX_IDENTIFIER_BYTES)?,
        optional_text("datname", s.datname, MAX_IDENTIFIER_BYTES)?,
        Value::Bool(Some(s.active)),
        Value::Bool(Some(s.temporary)),
        counter("retained_bytes", s.retained_bytes)?,
        optional_text("wal_status", s.wal_status, MAX_IDENTIFIER_BYTES)?,
        safe_wal_size,
        Value::Bool(s.conflicting),
    ])
}

/// `progress`: one row per running command; percent derived from done and
/// total when both are known (clamped to 100: a relation can grow while
/// it is scanned).
pub fn progress_row(p: v1::ProgressRow) -> Result<Row, FieldError> {
    let percent = match (p.done, p.total) {
        (Some(done), Some(total)) if total > 0 && done >= 0 => {
            // Block and byte counts stay far below 2^53.
            Some((done as f64 * 100.0 / total as f64).min(100.0))
        }
        _ => None,
    };
    Ok(vec![
        name("command", p.command)?,
        pid("pid", p.pid)?,
        optional_text("datname", p.datname, MAX_IDENTIFIER_BYTES)?,
        Value::Int8(p.relid.map(i64::from)),
        optional_text("phase", p.phase, 128)?,
        counter("done", p.done)?,
        counter("total", p.total)?,
        Value::Float8(percent),
    ])
}

/// `wait`: one row per (event, queryid) of a window of `samples` samples.
pub fn wait_row(samples: u32, c: v1::WaitCount) -> Result<Row, FieldError> {
    let samples = i32::try_from(samples)
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| invalid("samples", format!("{samples} is not within 1..=2^31-1")))?;
    if c.count < 0 {
        return Err(invalid(
            "count",
            format!("must not be negative, got {}", c.count),
        ));
    }
    Ok(vec![
        name("wait_event_type", c.wait_event_type)?,
        name("wait_event", c.wait_event)?,
        Value::Int8(c.queryid),
        Value::Int8(Some(c.count)),
        Value::Int4(Some(samples)),
        // Counts are small: the float conversion is exact.
        Value::Float8(Some(c.count as f64 / f64::from(samples))),
    ])
}

/// Interface and device names are short (IFNAMSIZ is 16; block devices
/// are similar); a little room for odd ones.
const MAX_DEVICE_NAME_BYTES: usize = 64;

fn device_name(field: &'static str, value: String) -> Result<Value, FieldError> {
    let value = text(field, value, MAX_DEVICE_NAME_BYTES)?;
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    Ok(Value::Text(Some(value)))
}

/// `host_network`: one row per interface.
pub fn host_network_row(n: v1::NetInterface) -> Result<Row, FieldError> {
    Ok(vec![
        device_name("name", n.name)?,
        unsigned("rx_bytes", n.rx_bytes)?,
        unsigned("tx_bytes", n.tx_bytes)?,
        unsigned("rx_packets", n.rx_packets)?,
        unsigned("tx_packets", n.tx_packets)?,
        unsigned("rx_errors", n.rx_errors)?,
        unsigned("tx_errors", n.tx_errors)?,
        unsigned("rx_drops", n.rx_drops)?,
        unsigned("tx_drops", n.tx_drops)?,
        non_negative("rx_bytes_per_sec", n.rx_bytes_per_sec)?,
        non_negative("tx_bytes_per_sec", n.tx_bytes_per_sec)?,
    ])
}

/// `host_disk_io`: one row per block device.
pub fn host_disk_io_row(d: v1::DiskDevice) -> Result<Row, FieldError> {
    if let Some(u) = d.util_percent
        && !(u.is_finite() && (0.0..=100.0).contains(&u))
    {
        return Err(invalid(
            "util_percent",
            format!("must be within 0..=100, got {u}"),
        ));
    }
    Ok(vec![
        device_name("name", d.name)?,
        unsigned("reads", d.reads)?,
        unsigned("writes", d.writes)?,
        unsigned("read_bytes", d.read_bytes)?,
        unsigned("write_bytes", d.write_bytes)?,
        unsigned("io_time_ms", d.io_time_ms)?,
        non_negative("read_bytes_per_sec", d.read_bytes_per_sec)?,
        non_negative("write_bytes_per_sec", d.write_bytes_per_sec)?,
        Value::Float8(d.util_percent),
    ])
}

/// Longest log text field kept; the agent cuts fields well below this.
pub const MAX_LOG_TEXT_BYTES: usize = 1 << 20;
/// Severity names are short words (`WARNING`, `DEBUG5`).
const MAX_SEVERITY_BYTES: usize = 16;
const MAX_LOG_SOURCE_BYTES: usize = 16;

fn optional_pid(field: &'static str, value: Option<i32>) -> Result<Value, FieldError> {
    match value {
        Some(p) => pid(field, p),
        None => Ok(Value::Int4(None)),
    }
}

fn sqlstate(value: String) -> Result<Value, FieldError> {
    if !(value.is_empty() || (value.len() == 5 && value.bytes().all(|b| b.is_ascii_alphanumeric())))
    {
        return Err(invalid("sqlstate", "must be five letters or digits"));
    }
    Ok(Value::Text((!value.is_empty()).then_some(value)))
}

/// `log`: one row per server log event.
pub fn log_event_row(e: v1::LogEvent) -> Result<Row, FieldError> {
    if e.severity.is_empty() {
        return Err(invalid("severity", "must not be empty"));
    }
    Ok(vec![
        Value::Text(Some(text("severity", e.severity, MAX_SEVERITY_BYTES)?)),
        sqlstate(e.sqlstate)?,
        Value::Text(Some(text("message", e.message, MAX_LOG_TEXT_BYTES)?)),
        optional_text("detail", e.detail, MAX_LOG_TEXT_BYTES)?,
        optional_text("hint", e.hint, MAX_LOG_TEXT_BYTES)?,
        optional_text("context", e.context, MAX_LOG_TEXT_BYTES)?,
        optional_text("statement", e.statement, MAX_LOG_TEXT_BYTES)?,
        optional_text("user_name", e.user_name, MAX_IDENTIFIER_BYTES)?,
        optional_text("database", e.database, MAX_IDENTIFIER_BYTES)?,
        optional_text("application", e.application, 1024)?,
        optional_pid("pid", e.pid)?,
        Value::Int8(e.query_id),
        non_negative("duration_ms", e.duration_ms)?,
        Value::Text(Some(text("source", e.source, MAX_LOG_SOURCE_BYTES)?)),
    ])
}

/// `log_plans`: one row per auto_explain plan.
pub fn log_plan_row(p: v1::LogPlan) -> Result<Row, FieldError> {
    Ok(vec![
        optional_pid("pid", p.pid)?,
        Value::Int8(p.query_id),
        non_negative("duration_ms", p.duration_ms)?,
        optional_text("database", p.database, MAX_IDENTIFIER_BYTES)?,
        optional_text("user_name", p.user_name, MAX_IDENTIFIER_BYTES)?,
        optional_text("query_text", p.query_text, MAX_LOG_TEXT_BYTES)?,
        Value::Text(Some(text("plan", p.plan, MAX_LOG_TEXT_BYTES)?)),
        Value::Bool(p.truncated),
    ])
}

/// `log_drops`: what the agent skipped in one `log` sample.
pub fn log_drops_row(s: &v1::LogSnapshot) -> Result<Row, FieldError> {
    Ok(vec![
        unsigned("dropped_events", s.dropped_events)?,
        unsigned("truncated_lines", s.truncated_lines)?,
        unsigned("unparsed_lines", s.unparsed_lines)?,
    ])
}
