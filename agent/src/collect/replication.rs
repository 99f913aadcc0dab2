//! `replication` (pg_stat_replication: one row per WAL sender, with lags
//! in bytes against the server's WAL position and in time) and
//! `replication_slot` (pg_replication_slots with the WAL each slot holds).
//!
//! The WAL position is pg_current_wal_lsn() on a primary and the last
//! received position on a standby (cascading senders), where
//! pg_current_wal_lsn() would fail. Version difference: `conflicting` of a
//! slot exists from PostgreSQL 16.

use lasect_proto::v1::{
    ReplicationSlot, ReplicationSlotSnapshot, ReplicationSnapshot, ReplicationStandby,
};
use tokio_postgres::Client;

const PG16: i32 = 160_000;
/// Senders and slots sent per sample, at most.
const MAX_ROWS: i64 = 1000;

const POSITION: &str = "(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() \
                        ELSE pg_current_wal_lsn() END)";

fn lag(lsn: &str) -> String {
    format!("greatest(0, {POSITION} - {lsn})::int8")
}

pub fn standbys_query() -> String {
    format!(
        "SELECT pid, coalesce(application_name, '') AS application_name, \
         coalesce(host(client_addr), '') AS client_addr, coalesce(state, '') AS state, \
         coalesce(sync_state, '') AS sync_state, \
         {} AS sent_lag, {} AS write_lag_bytes, {} AS flush_lag_bytes, {} AS replay_lag_bytes, \
         extract(epoch FROM write_lag)::float8 AS write_lag, \
         extract(epoch FROM flush_lag)::float8 AS flush_lag, \
         extract(epoch FROM replay_lag)::float8 AS replay_lag \
         FROM pg_stat_replication ORDER BY pid LIMIT {MAX_ROWS}",
        lag("sent_lsn"),
        lag("write_lsn"),
        lag("flush_lsn"),
        lag("replay_lsn"),
    )
}

pub fn slots_query(server_version_num: i32) -> String {
    let conflicting = if server_version_num >= PG16 {
        "conflicting"
    } else {
        "NULL::bool"
    };
    format!(
        "SELECT slot_name::text AS slot_name, slot_type, coalesce(plugin::text, '') AS plugin, \
         coalesce(database::text, '') AS datname, active, temporary, \
         {} AS retained_bytes, coalesce(wal_status, '') AS wal_status, \
         safe_wal_size::int8 AS safe_wal_size, {conflicting} AS conflicting \
         FROM pg_replication_slots ORDER BY slot_name LIMIT {MAX_ROWS}",
        lag("restart_lsn"),
    )
}

pub async fn standbys(client: &Client) -> Result<ReplicationSnapshot, tokio_postgres::Error> {
    let rows = client.query(&standbys_query(), &[]).await?;
    let mut standbys = Vec::with_capacity(rows.len());
    for row in &rows {
        standbys.push(ReplicationStandby {
            pid: row.try_get("pid")?,
            application_name: row.try_get("application_name")?,
            client_addr: row.try_get("client_addr")?,
            state: row.try_get("state")?,
            sync_state: row.try_get("sync_state")?,
            sent_lag_bytes: row.try_get("sent_lag")?,
            write_lag_bytes: row.try_get("write_lag_bytes")?,
            flush_lag_bytes: row.try_get("flush_lag_bytes")?,
            replay_lag_bytes: row.try_get("replay_lag_bytes")?,
            write_lag_seconds: row.try_get("write_lag")?,
            flush_lag_seconds: row.try_get("flush_lag")?,
            replay_lag_seconds: row.try_get("replay_lag")?,
        });
    }
    Ok(ReplicationSnapshot { standbys })
}

pub async fn slots(
    client: &Client,
    version: i32,
) -> Result<ReplicationSlotSnapshot, tokio_postgres::Error> {
    let rows = client.query(&slots_query(version), &[]).await?;
    let mut slots = Vec::with_capacity(rows.len());
    for row in &rows {
        slots.push(ReplicationSlot {
            slot_name: row.try_get("slot_name")?,
            slot_type: row.try_get("slot_type")?,
            plugin: row.try_get("plugin")?,
            datname: row.try_get("datname")?,
            active: row.try_get("active")?,
            temporary: row.try_get("temporary")?,
            retained_bytes: row.try_get("retained_bytes")?,
            wal_status: row.try_get("wal_status")?,
            safe_wal_size: row.try_get("safe_wal_size")?,
            conflicting: row.try_get("conflicting")?,
        });
    }
    Ok(ReplicationSlotSnapshot { slots })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_follows_the_server_version() {
        for v in [130_000, 140_000, 150_000] {
            assert!(slots_query(v).contains("NULL::bool AS conflicting"), "{v}");
        }
        for v in [160_000, 170_000] {
            assert!(
                slots_query(v).contains(" conflicting AS conflicting"),
                "{v}"
            );
        }
        let q = standbys_query();
        assert!(q.contains("pg_last_wal_receive_lsn()") && q.contains("pg_current_wal_lsn()"));
        assert_eq!(q.matches("greatest(0,").count(), 4);
    }
}
