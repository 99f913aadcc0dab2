//! `subscription`: logical replication on a subscriber. pg_stat_subscription
//! (one row per apply or table sync worker; an apply worker that is not
//! running shows with no pid), the error counts of
//! pg_stat_subscription_stats (PostgreSQL 15+; NULL before), and the sync
//! state of every table from pg_subscription_rel.
//!
//! Each row also says whether its subscription is enabled and whether its apply worker runs:
//! a rule cannot select a missing pid, and an enabled subscription with no apply worker (an
//! unreachable publisher, a worker failing in a loop, no free worker) counts no error either.
//! pg_subscription.oid is readable by everyone from 14 on only: on 13 `enabled` comes by name,
//! and is left NULL when subscriptions of two databases share it.
//!
//! pg_subscription_rel is per database: the tables are those of the
//! subscriptions of the DSN's database. Their names come from
//! pg_stat_subscription, not pg_subscription: before 14 a role other than a
//! superuser may not read pg_subscription.oid (only some of its columns).

use chrono::{DateTime, Utc};
use lasect_proto::v1::{SubscriptionSnapshot, SubscriptionTable, SubscriptionWorker};
use tokio_postgres::{Client, Row};

const PG15: i32 = 150_000;
/// Workers and tables sent per sample, at most.
const MAX_ROWS: i64 = 1000;

const PG14: i32 = 140_000;
const PG16: i32 = 160_000;

pub fn workers_query(server_version_num: i32) -> String {
    let (errors, join) = if server_version_num >= PG15 {
        (
            "st.apply_error_count, st.sync_error_count",
            "LEFT JOIN pg_stat_subscription_stats st ON st.subid = s.subid",
        )
    } else {
        (
            "NULL::int8 AS apply_error_count, NULL::int8 AS sync_error_count",
            "",
        )
    };
    let enabled = if server_version_num >= PG14 {
        "LEFT JOIN pg_subscription p ON p.oid = s.subid"
    } else {
        "LEFT JOIN LATERAL (SELECT CASE WHEN count(*) = 1 THEN bool_and(x.subenabled) END \
         AS subenabled FROM pg_subscription x WHERE x.subname = s.subname) p ON true"
    };
    // From 16 a parallel apply worker also has no relid; its leader is the apply worker.
    let leader = if server_version_num >= PG16 {
        " AND s.leader_pid IS NULL"
    } else {
        ""
    };
    format!(
        "SELECT s.subname::text AS subname, s.pid, s.relid::int8 AS relid, \
         (s.received_lsn - '0/0')::int8 AS received_lsn, \
         (s.latest_end_lsn - '0/0')::int8 AS latest_end_lsn, \
         s.last_msg_send_time, s.last_msg_receipt_time, s.latest_end_time, {errors}, \
         p.subenabled AS enabled, \
         bool_or(s.pid IS NOT NULL AND s.relid IS NULL{leader}) \
           OVER (PARTITION BY s.subid) AS apply_worker_running \
         FROM pg_stat_subscription s {join} {enabled} \
         ORDER BY s.subname, s.relid NULLS FIRST LIMIT {MAX_ROWS}"
    )
}

pub const TABLES_QUERY: &str = "SELECT s.subname::text AS subname, n.nspname::text AS schemaname, \
     c.relname::text AS relname, \
     CASE r.srsubstate WHEN 'i' THEN 'init' WHEN 'd' THEN 'data_copy' WHEN 'f' THEN 'finished' \
       WHEN 's' THEN 'sync_done' WHEN 'r' THEN 'ready' END AS state, \
     (r.srsublsn - '0/0')::int8 AS sync_lsn \
     FROM pg_subscription_rel r \
     JOIN (SELECT DISTINCT subid, subname FROM pg_stat_subscription) s ON s.subid = r.srsubid \
     JOIN pg_class c ON c.oid = r.srrelid \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     ORDER BY 1, 2, 3 LIMIT 1000";

fn micros(row: &Row, column: &str) -> Result<Option<i64>, tokio_postgres::Error> {
    Ok(row
        .try_get::<_, Option<DateTime<Utc>>>(column)?
        .map(|t| t.timestamp_micros()))
}

/// The snapshot, or `None` when the instance has no subscriptions.
pub async fn collect(
    client: &Client,
    version: i32,
) -> Result<Option<SubscriptionSnapshot>, tokio_postgres::Error> {
    let rows = client.query(&workers_query(version), &[]).await?;
    let mut workers = Vec::with_capacity(rows.len());
    for row in &rows {
        workers.push(SubscriptionWorker {
            subname: row.try_get("subname")?,
            pid: row.try_get("pid")?,
            relid: row
                .try_get::<_, Option<i64>>("relid")?
                .and_then(|r| u32::try_from(r).ok()),
            received_lsn: row.try_get("received_lsn")?,
            latest_end_lsn: row.try_get("latest_end_lsn")?,
            last_msg_send_unix_micros: micros(row, "last_msg_send_time")?,
            last_msg_receipt_unix_micros: micros(row, "last_msg_receipt_time")?,
            latest_end_unix_micros: micros(row, "latest_end_time")?,
            apply_error_count: row.try_get("apply_error_count")?,
            sync_error_count: row.try_get("sync_error_count")?,
            enabled: row.try_get("enabled")?,
            apply_worker_running: row.try_get("apply_worker_running")?,
        });
    }
    let rows = client.query(TABLES_QUERY, &[]).await?;
    let mut tables = Vec::with_capacity(rows.len());
    for row in &rows {
        // A state a later PostgreSQL may add is left out, not guessed.
        let Some(state) = row.try_get::<_, Option<String>>("state")? else {
            continue;
        };
        tables.push(SubscriptionTable {
            subname: row.try_get("subname")?,
            schemaname: row.try_get("schemaname")?,
            relname: row.try_get("relname")?,
            state,
            sync_lsn: row.try_get("sync_lsn")?,
        });
    }
    if workers.is_empty() && tables.is_empty() {
        return Ok(None);
    }
    Ok(Some(SubscriptionSnapshot { workers, tables }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_counts_from_15_on() {
        for v in [130_000, 140_000] {
            let q = workers_query(v);
            assert!(q.contains("NULL::int8 AS apply_error_count"), "{v}");
            assert!(!q.contains("pg_stat_subscription_stats"), "{v}");
        }
        for v in [150_000, 160_000, 170_000] {
            let q = workers_query(v);
            assert!(q.contains("st.apply_error_count"), "{v}");
            assert!(q.contains("LEFT JOIN pg_stat_subscription_stats"), "{v}");
        }
    }

    #[test]
    fn enabled_by_oid_from_14_and_parallel_apply_workers_from_16() {
        let q = workers_query(130_000);
        assert!(q.contains("x.subname = s.subname"));
        assert!(!q.contains("p.oid = s.subid"));
        for v in [140_000, 150_000, 160_000, 180_000] {
            let q = workers_query(v);
            assert!(q.contains("p.oid = s.subid"), "{v}");
            assert_eq!(q.contains("leader_pid IS NULL"), v >= 160_000, "{v}");
        }
    }
}
