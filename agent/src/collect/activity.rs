//! `activity`: client sessions of `pg_stat_activity` grouped by database,
//! user, application and state, plus a summary (sessions against
//! max_connections, lock waiters, oldest transaction, query and
//! idle-in-transaction ages). The same SQL serves PostgreSQL 13 to 17.
//!
//! A role without pg_read_all_stats sees other roles' sessions without
//! state or times: they are counted under an empty (unknown) state.

use lasect_proto::v1::{ActivityGroup, ActivitySnapshot};
use tokio_postgres::Client;

/// Groups sent per sample, at most (largest first).
const MAX_GROUPS: i64 = 1000;

const SUMMARY: &str = "SELECT current_setting('max_connections')::int8 AS max_connections, \
     count(*)::int8 AS total, \
     count(*) FILTER (WHERE wait_event_type = 'Lock')::int8 AS waiting, \
     extract(epoch FROM clock_timestamp() - min(xact_start))::float8 AS xact_age, \
     extract(epoch FROM clock_timestamp() - min(query_start) FILTER (WHERE state = 'active'))::float8 AS query_age, \
     extract(epoch FROM clock_timestamp() - min(state_change) \
             FILTER (WHERE state IN ('idle in transaction', 'idle in transaction (aborted)')))::float8 AS idle_age \
     FROM pg_stat_activity WHERE backend_type = 'client backend'";

fn groups_query() -> String {
    format!(
        "SELECT coalesce(datname::text, '') AS datname, coalesce(usename::text, '') AS usename, \
         coalesce(application_name, '') AS application_name, coalesce(state, '') AS state, \
         count(*)::int8 AS sessions, \
         count(*) FILTER (WHERE wait_event_type = 'Lock')::int8 AS waiting \
         FROM pg_stat_activity WHERE backend_type = 'client backend' \
         GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC, 1, 2, 3, 4 LIMIT {MAX_GROUPS}"
    )
}

/// Clock skew between backends can make an age slightly negative.
fn age(value: Option<f64>) -> Option<f64> {
    value.map(|v| v.max(0.0))
}

pub async fn collect(client: &Client) -> Result<ActivitySnapshot, tokio_postgres::Error> {
    let summary = client.query_one(SUMMARY, &[]).await?;
    let rows = client.query(&groups_query(), &[]).await?;
    let mut groups = Vec::with_capacity(rows.len());
    for row in &rows {
        groups.push(ActivityGroup {
            datname: row.try_get("datname")?,
            usename: row.try_get("usename")?,
            application_name: row.try_get("application_name")?,
            state: row.try_get("state")?,
            sessions: row.try_get("sessions")?,
            waiting: row.try_get("waiting")?,
        });
    }
    Ok(ActivitySnapshot {
        groups,
        max_connections: summary.try_get("max_connections")?,
        total_sessions: summary.try_get("total")?,
        waiting_sessions: summary.try_get("waiting")?,
        oldest_xact_age_seconds: age(summary.try_get("xact_age")?),
        oldest_query_age_seconds: age(summary.try_get("query_age")?),
        oldest_idle_in_xact_age_seconds: age(summary.try_get("idle_age")?),
    })
}
