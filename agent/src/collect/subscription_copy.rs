//! `subscription_copy`: the backfill of logical replication on a subscriber.
//! Each table-sync worker of a subscription copies its table with COPY, which
//! pg_stat_progress_copy shows (PostgreSQL 14+) under the worker's pid; the
//! worker's pid in pg_stat_subscription names the subscription. The API sets
//! the bytes and rows copied against the table on the publisher.
//!
//! Before 14 there is no copy progress view: nothing is sent.

use lasect_proto::v1::{SubscriptionCopy, SubscriptionCopySnapshot};
use tokio_postgres::Client;

const PG14: i32 = 140_000;
/// Copies sent per sample, at most (one per table-sync worker: a handful).
const MAX_ROWS: i64 = 1000;

/// The query for `server_version_num`, or `None` when the server has no copy progress.
pub fn query(server_version_num: i32) -> Option<String> {
    (server_version_num >= PG14).then(|| {
        format!(
            "SELECT s.subname::text AS subname, n.nspname::text AS schemaname, \
             c.relname::text AS relname, p.pid, p.bytes_processed::int8 AS bytes_processed, \
             p.tuples_processed::int8 AS tuples_processed \
             FROM pg_stat_progress_copy p \
             JOIN pg_stat_subscription s ON s.pid = p.pid AND s.relid = p.relid \
             JOIN pg_class c ON c.oid = p.relid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             ORDER BY 1, 2, 3 LIMIT {MAX_ROWS}"
        )
    })
}

/// The copies under way, or `None` when there are none (or the server has no view).
pub async fn collect(
    client: &Client,
    server_version_num: i32,
) -> Result<Option<SubscriptionCopySnapshot>, tokio_postgres::Error> {
    let Some(sql) = query(server_version_num) else {
        return Ok(None);
    };
    let rows = client.query(&sql, &[]).await?;
    let mut copies = Vec::with_capacity(rows.len());
    for row in &rows {
        copies.push(SubscriptionCopy {
            subname: row.try_get("subname")?,
            schemaname: row.try_get("schemaname")?,
            relname: row.try_get("relname")?,
            pid: row.try_get("pid")?,
            bytes_processed: row
                .try_get::<_, Option<i64>>("bytes_processed")?
                .unwrap_or(0),
            tuples_processed: row
                .try_get::<_, Option<i64>>("tuples_processed")?
                .unwrap_or(0),
        });
    }
    Ok((!copies.is_empty()).then_some(SubscriptionCopySnapshot { copies }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_progress_from_14_on() {
        assert_eq!(query(130_012), None);
        for v in [140_000, 150_004, 160_002, 170_000, 180_000] {
            let sql = query(v).expect("a query");
            assert!(sql.contains("pg_stat_progress_copy"), "{v}");
            assert!(sql.contains("pg_stat_subscription"), "{v}");
        }
    }
}
