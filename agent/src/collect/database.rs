//! `database`: one `DatabaseRow` per row of `pg_stat_database`, plus the
//! database's size and how far it is from transaction id and multixact
//! wraparound (`age(datfrozenxid)`, `mxid_age(datminmxid)` of `pg_database`,
//! the same on every supported release, and readable by any role).
//!
//! The query is built for the server's version: each counter column names
//! the first release that has it, and older servers get `NULL` (not
//! collected) in its place. Only columns the proto carries are selected;
//! when a newer column (say `session_time`, 14+) is added to `DatabaseRow`,
//! it gets an entry in [`COUNTERS`] with its minimum version.
//!
//! Sizes are asked one database at a time (pipelined on the one connection)
//! so that a database which cannot be sized (it refuses connections, the
//! role lacks CONNECT, it was dropped meanwhile) loses only its size, never
//! the whole sample.

use chrono::{DateTime, Utc};
use futures::future::join_all;
use lasect_proto::v1::{DatabaseRow, DatabaseSnapshot};
use tokio_postgres::{Client, Row};

/// `(column, first server_version_num that has it)`; all are `int8` counters.
/// `0` means every supported release (13 and later) has the column.
const COUNTERS: &[(&str, i32)] = &[
    ("numbackends", 0),
    ("xact_commit", 0),
    ("xact_rollback", 0),
    ("blks_read", 0),
    ("blks_hit", 0),
    ("tup_returned", 0),
    ("tup_fetched", 0),
    ("tup_inserted", 0),
    ("tup_updated", 0),
    ("tup_deleted", 0),
    ("conflicts", 0),
    ("temp_files", 0),
    ("temp_bytes", 0),
    ("deadlocks", 0),
];

/// The `pg_stat_database` query for a server version.
pub(crate) fn query(server_version_num: i32) -> String {
    let counters: Vec<String> = COUNTERS
        .iter()
        .map(|&(column, since)| {
            if server_version_num >= since {
                format!("s.{column}::int8 AS {column}")
            } else {
                format!("NULL::int8 AS {column}")
            }
        })
        .collect();
    // datname IS NULL is the row for shared objects (PG 12+): not a database.
    // pg_database_size() needs CONNECT on the database or pg_read_all_stats
    // (it never connects, so datallowconn does not matter). Asking first keeps
    // a permission ERROR out of the monitored server's log on every tick.
    format!(
        "SELECT s.datid, s.datname::text AS datname, {}, s.stats_reset, \
         age(d.datfrozenxid)::int8 AS datfrozenxid_age, \
         mxid_age(d.datminmxid)::int8 AS datminmxid_age, \
         (has_database_privilege(d.oid, 'CONNECT') \
          OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')) AS size_allowed \
         FROM pg_stat_database s JOIN pg_database d ON d.oid = s.datid \
         WHERE s.datname IS NOT NULL ORDER BY s.datname",
        counters.join(", ")
    )
}

pub(crate) async fn collect(
    client: &Client,
    server_version_num: i32,
) -> Result<DatabaseSnapshot, tokio_postgres::Error> {
    let rows = client.query(&query(server_version_num), &[]).await?;
    let mut databases = Vec::with_capacity(rows.len());
    let mut sizeable = Vec::new();
    for row in &rows {
        let db = to_database_row(row)?;
        if row.try_get::<_, bool>("size_allowed")? {
            sizeable.push(databases.len());
        }
        databases.push(db);
    }

    let size_stmt = client.prepare("SELECT pg_database_size($1::oid)").await?;
    let sizes = join_all(sizeable.iter().map(|&i| {
        let datid = databases[i].datid;
        let stmt = &size_stmt;
        async move { client.query_one(stmt, &[&datid]).await }
    }))
    .await;
    for (i, size) in sizeable.into_iter().zip(sizes) {
        match size.and_then(|row| row.try_get::<_, i64>(0)) {
            Ok(bytes) => databases[i].size_bytes = Some(bytes),
            Err(e) => tracing::debug!(
                datname = %databases[i].datname,
                error = %e,
                "database size unavailable"
            ),
        }
    }
    Ok(DatabaseSnapshot { databases })
}

fn to_database_row(row: &Row) -> Result<DatabaseRow, tokio_postgres::Error> {
    let counter = |column: &str| row.try_get::<_, Option<i64>>(column);
    let stats_reset: Option<DateTime<Utc>> = row.try_get("stats_reset")?;
    Ok(DatabaseRow {
        datid: row.try_get("datid")?,
        datname: row.try_get("datname")?,
        numbackends: counter("numbackends")?,
        xact_commit: counter("xact_commit")?,
        xact_rollback: counter("xact_rollback")?,
        blks_read: counter("blks_read")?,
        blks_hit: counter("blks_hit")?,
        tup_returned: counter("tup_returned")?,
        tup_fetched: counter("tup_fetched")?,
        tup_inserted: counter("tup_inserted")?,
        tup_updated: counter("tup_updated")?,
        tup_deleted: counter("tup_deleted")?,
        conflicts: counter("conflicts")?,
        temp_files: counter("temp_files")?,
        temp_bytes: counter("temp_bytes")?,
        deadlocks: counter("deadlocks")?,
        size_bytes: None,
        stats_reset_unix_micros: stats_reset.map(|t| t.timestamp_micros()),
        datfrozenxid_age: row.try_get("datfrozenxid_age")?,
        datminmxid_age: row.try_get("datminmxid_age")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_selects_every_counter_once() {
        let q = query(170000);
        for (column, _) in COUNTERS {
            assert_eq!(q.matches(&format!(" AS {column}")).count(), 1, "{column}");
        }
        assert!(q.contains("datname IS NOT NULL"));
        for version in [130000, 180000] {
            let q = query(version);
            assert!(q.contains("age(d.datfrozenxid)::int8 AS datfrozenxid_age"));
            assert!(q.contains("mxid_age(d.datminmxid)::int8 AS datminmxid_age"));
        }
    }
}
