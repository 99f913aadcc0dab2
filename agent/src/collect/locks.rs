//! `lock`: pg_locks counted by type, mode and granted, and the blocking
//! chains: every session waiting for a lock, paired with each session
//! `pg_blocking_pids()` names, with both queries truncated.
//!
//! Version difference: `pg_locks.waitstart` (PostgreSQL 14+) gives the
//! exact wait start; before it the blocked query's start stands in.
//! `pg_blocking_pids()` is only called for sessions that wait on a lock.

use lasect_proto::v1::{LockCount, LockSnapshot, LockWait};
use tokio_postgres::Client;

/// Rows sent per sample and list, at most.
const MAX_ROWS: i64 = 1000;
/// Characters of each query kept in a blocking chain.
const QUERY_CHARS: i32 = 1000;
const PG14: i32 = 140_000;

const COUNTS: &str = "SELECT locktype, mode, granted, count(*)::int8 AS count FROM pg_locks \
     WHERE locktype IS NOT NULL AND mode IS NOT NULL \
     GROUP BY 1, 2, 3 ORDER BY 4 DESC";

pub fn waits_query(server_version_num: i32) -> String {
    let wait_start = if server_version_num >= PG14 {
        "(SELECT min(l.waitstart) FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted)"
    } else {
        "a.query_start"
    };
    format!(
        "SELECT a.pid AS blocked_pid, b.pid AS blocking_pid, \
         coalesce(a.datname::text, '') AS datname, \
         greatest(0, extract(epoch FROM clock_timestamp() - {wait_start}))::float8 AS wait_seconds, \
         left(coalesce(a.query, ''), {QUERY_CHARS}) AS blocked_query, \
         left(coalesce(b.query, ''), {QUERY_CHARS}) AS blocking_query \
         FROM pg_stat_activity a \
         CROSS JOIN LATERAL unnest(pg_blocking_pids(a.pid)) AS blocker(pid) \
         JOIN pg_stat_activity b ON b.pid = blocker.pid \
         WHERE a.wait_event_type = 'Lock' \
         ORDER BY wait_seconds DESC NULLS LAST LIMIT {MAX_ROWS}"
    )
}

pub async fn collect(client: &Client, version: i32) -> Result<LockSnapshot, tokio_postgres::Error> {
    let rows = client
        .query(&format!("{COUNTS} LIMIT {MAX_ROWS}"), &[])
        .await?;
    let mut counts = Vec::with_capacity(rows.len());
    for row in &rows {
        counts.push(LockCount {
            locktype: row.try_get("locktype")?,
            mode: row.try_get("mode")?,
            granted: row.try_get("granted")?,
            count: row.try_get("count")?,
        });
    }
    let rows = client.query(&waits_query(version), &[]).await?;
    let mut waits = Vec::with_capacity(rows.len());
    for row in &rows {
        waits.push(LockWait {
            blocked_pid: row.try_get("blocked_pid")?,
            blocking_pid: row.try_get("blocking_pid")?,
            datname: row.try_get("datname")?,
            wait_seconds: row.try_get("wait_seconds")?,
            blocked_query: row.try_get("blocked_query")?,
            blocking_query: row.try_get("blocking_query")?,
        });
    }
    Ok(LockSnapshot { counts, waits })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_start_follows_the_server_version() {
        assert!(waits_query(130_015).contains("a.query_start"));
        assert!(!waits_query(130_015).contains("waitstart"));
        for v in [140_000, 150_000, 160_000, 170_000] {
            assert!(waits_query(v).contains("min(l.waitstart)"), "{v}");
        }
    }
}
