//! `statement`: per-interval deltas of `pg_stat_statements`.
//!
//! Each round reads `pg_stat_statements(false)` (no query texts: the text
//! file can be large) and subtracts the previous round's counters per
//! (queryid, dbid, userid, toplevel). Texts are fetched only for queryids
//! this agent has not sent yet, and sent once; ingest keeps one copy per
//! (instance, queryid).
//!
//! # Resets
//! Counters restart from zero when `pg_stat_statements_reset()` runs, when
//! an entry is evicted (`pg_stat_statements.max`) and later re-created, or
//! after a crash. A delta is never negative or inflated:
//! - the first round after the agent starts only records a baseline (the
//!   history of existing entries is unknown) and sends no rows;
//! - an entry absent from the previous round was created since: its
//!   current values are the delta;
//! - when `pg_stat_statements_info.stats_reset` changed (extension 1.9+,
//!   PostgreSQL 14+), when `calls` went down, or when the entry's
//!   `stats_since` changed (1.11+, PostgreSQL 17+), the entry restarted
//!   inside the interval: its current values are the delta since that reset
//!   and the row is flagged `since_reset` (the work between the previous
//!   round and the reset is lost, so such a delta is a lower bound);
//! - otherwise each counter's delta is current − previous, clamped at 0.
//!
//! On PostgreSQL 13 (no info view, no stats_since) an entry that was reset
//! and then ran more often than before is seen as a smaller plain delta: a
//! lower bound, never an inflated one.
//!
//! # Versions
//! The columns depend on the extension version installed in the database,
//! not on the server version (an upgraded server may keep an old extension):
//! 1.8 (PG13) renamed total_time to total_exec_time and added plans and WAL
//! columns, 1.9 (PG14) added `toplevel` and `pg_stat_statements_info`, 1.11
//! (PG17) renamed blk_read_time/blk_write_time to shared_blk_*_time and
//! added `stats_since`; 1.12 (PG18) only added columns not collected here
//! (wal_buffers_full, parallel_workers_to_launch/_launched), so it reads
//! like 1.11.

use std::collections::{BTreeSet, HashMap, HashSet};

use lasect_proto::v1::{StatementRow, StatementSnapshot, StatementText};
use tokio_postgres::{Client, Row};

use super::FamilyError;

/// Longest text sent; longer ones are cut at a character boundary.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Queryids remembered as sent. Ad-hoc workloads churn queryids without
/// end; past this many the memory is cleared and texts are sent again as
/// their queryids recur (the store keeps the first copy).
const MAX_TEXTS_REMEMBERED: usize = 100_000;

/// Text bytes sent per round at most, so that a server with thousands of
/// long statements does not make one batch larger than ingest accepts
/// (`max_uncompressed_bytes`, 32 MiB by default): the rest stays pending
/// for the next rounds.
pub const TEXT_BYTES_PER_ROUND: usize = 2 << 20;

/// The only statement that reads query texts (`pg_stat_statements(true)`
/// loads the server's whole text file), run only while queryids wait for
/// their text. `$1`: the queryids, `$2`: the byte budget. Every queryid
/// still present comes back; its text is NULL when it does not fit in the
/// budget (in queryid order; the first always fits). It begins with
/// [`TEXTS_SQL_HEAD`], which has no constants, so tests and the benchmark
/// find its entry in `pg_stat_statements` (normalised text) and count its
/// executions.
pub const TEXTS_SQL_HEAD: &str =
    "SELECT queryid, CASE WHEN sum(octet_length(query)) OVER (ORDER BY queryid) <= $2";
pub const TEXTS_SQL: &str = "SELECT queryid, CASE WHEN sum(octet_length(query)) OVER (ORDER BY queryid) <= $2 \
                             OR row_number() OVER (ORDER BY queryid) = 1 THEN query END FROM (SELECT DISTINCT ON (queryid) queryid, left(query, 65536) AS query \
                             FROM pg_stat_statements(true) WHERE queryid = ANY($1) AND query IS NOT NULL \
                             ORDER BY queryid) AS t ORDER BY queryid";

/// An installed pg_stat_statements version, e.g. 1.10 = `(1, 10)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExtVersion(pub u32, pub u32);

impl ExtVersion {
    pub fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.split_once('.')?;
        Some(Self(major.parse().ok()?, minor.parse().ok()?))
    }

    fn has_toplevel(self) -> bool {
        self >= ExtVersion(1, 9)
    }
}

/// The integer counters, in this order.
const INT_COUNTERS: [&str; 13] = [
    "calls",
    "rows",
    "plans",
    "shared_blks_hit",
    "shared_blks_read",
    "shared_blks_dirtied",
    "shared_blks_written",
    "local_blks_hit",
    "local_blks_read",
    "temp_blks_read",
    "temp_blks_written",
    "wal_records",
    "wal_bytes",
];
/// The float counters (milliseconds), in this order.
const FLOAT_COUNTERS: [&str; 4] = [
    "total_exec_time",
    "total_plan_time",
    "shared_blk_read_time",
    "shared_blk_write_time",
];

/// The SELECT over `pg_stat_statements(false)` for an extension version;
/// every counter comes out under the name of [`INT_COUNTERS`] /
/// [`FLOAT_COUNTERS`], NULL where the version lacks it.
pub fn query(v: ExtVersion) -> String {
    let modern = v >= ExtVersion(1, 8);
    let v17 = v >= ExtVersion(1, 11);
    let or_null = |present: bool, expr: &str, ty: &str| {
        if present {
            format!("{expr}::{ty}")
        } else {
            format!("NULL::{ty}")
        }
    };
    let columns = [
        or_null(v.has_toplevel(), "toplevel", "bool") + " AS toplevel",
        "calls::int8 AS calls".into(),
        "rows::int8 AS rows".into(),
        or_null(modern, "plans", "int8") + " AS plans",
        "shared_blks_hit::int8 AS shared_blks_hit".into(),
        "shared_blks_read::int8 AS shared_blks_read".into(),
        "shared_blks_dirtied::int8 AS shared_blks_dirtied".into(),
        "shared_blks_written::int8 AS shared_blks_written".into(),
        "local_blks_hit::int8 AS local_blks_hit".into(),
        "local_blks_read::int8 AS local_blks_read".into(),
        "temp_blks_read::int8 AS temp_blks_read".into(),
        "temp_blks_written::int8 AS temp_blks_written".into(),
        or_null(modern, "wal_records", "int8") + " AS wal_records",
        or_null(modern, "wal_bytes", "int8") + " AS wal_bytes",
        format!(
            "{}::float8 AS total_exec_time",
            if modern {
                "total_exec_time"
            } else {
                "total_time"
            }
        ),
        or_null(modern, "total_plan_time", "float8") + " AS total_plan_time",
        format!(
            "{}::float8 AS shared_blk_read_time",
            if v17 {
                "shared_blk_read_time"
            } else {
                "blk_read_time"
            }
        ),
        format!(
            "{}::float8 AS shared_blk_write_time",
            if v17 {
                "shared_blk_write_time"
            } else {
                "blk_write_time"
            }
        ),
        or_null(v17, "stats_since", "timestamptz") + " AS stats_since",
    ];
    // queryid is NULL for other roles' statements unless the agent's role
    // has pg_read_all_stats: those rows cannot be keyed, so they are skipped.
    format!(
        "SELECT queryid, dbid, userid, {} FROM pg_stat_statements(false) WHERE queryid IS NOT NULL",
        columns.join(", ")
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryKey {
    pub queryid: i64,
    pub dbid: u32,
    pub userid: u32,
    pub toplevel: bool,
}

/// The cumulative counters of one entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Counters {
    pub ints: [Option<i64>; INT_COUNTERS.len()],
    pub floats: [Option<f64>; FLOAT_COUNTERS.len()],
    /// `stats_since` in µs since the epoch (1.11+).
    pub since: Option<i64>,
}

/// One read of the view.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    pub entries: HashMap<EntryKey, Counters>,
    /// `pg_stat_statements_info.stats_reset` in µs (1.9+).
    pub reset: Option<i64>,
}

/// The rows of the interval between `prev` and `cur` (see the module docs).
pub fn deltas(prev: &Reading, cur: &Reading) -> Vec<StatementRow> {
    let all_reset = prev.reset != cur.reset;
    let mut rows = Vec::new();
    for (key, now) in &cur.entries {
        let (delta, since_reset) = match prev.entries.get(key) {
            None => (now.clone(), true),
            Some(before)
                if all_reset
                    || now.ints[0] < before.ints[0]
                    || (now.since.is_some() && now.since != before.since) =>
            {
                (now.clone(), true)
            }
            Some(before) => (subtract(now, before), false),
        };
        let worked = delta.ints.iter().any(|v| v.is_some_and(|v| v > 0))
            || delta.floats.iter().any(|v| v.is_some_and(|v| v > 0.0));
        if worked {
            rows.push(to_row(key, &delta, since_reset));
        }
    }
    rows.sort_by_key(|r| (r.queryid, r.dbid, r.userid, r.toplevel));
    rows
}

fn subtract(now: &Counters, before: &Counters) -> Counters {
    let mut d = now.clone();
    for (v, b) in d.ints.iter_mut().zip(before.ints) {
        *v = v.map(|v| (v - b.unwrap_or(0)).max(0));
    }
    for (v, b) in d.floats.iter_mut().zip(before.floats) {
        *v = v.map(|v| (v - b.unwrap_or(0.0)).max(0.0));
    }
    d
}

fn to_row(key: &EntryKey, d: &Counters, since_reset: bool) -> StatementRow {
    let [
        calls,
        rows,
        plans,
        shared_blks_hit,
        shared_blks_read,
        shared_blks_dirtied,
        shared_blks_written,
        local_blks_hit,
        local_blks_read,
        temp_blks_read,
        temp_blks_written,
        wal_records,
        wal_bytes,
    ] = d.ints;
    let [exec, plan, read_time, write_time] = d.floats;
    StatementRow {
        queryid: key.queryid,
        dbid: key.dbid,
        userid: key.userid,
        toplevel: key.toplevel,
        since_reset,
        calls,
        rows,
        total_exec_time_ms: exec,
        plans,
        total_plan_time_ms: plan,
        shared_blks_hit,
        shared_blks_read,
        shared_blks_dirtied,
        shared_blks_written,
        local_blks_hit,
        local_blks_read,
        temp_blks_read,
        temp_blks_written,
        shared_blk_read_time_ms: read_time,
        shared_blk_write_time_ms: write_time,
        wal_records,
        wal_bytes,
    }
}

fn to_entry(row: &Row) -> Result<(EntryKey, Counters), tokio_postgres::Error> {
    let key = EntryKey {
        queryid: row.try_get("queryid")?,
        dbid: row.try_get("dbid")?,
        userid: row.try_get("userid")?,
        toplevel: row.try_get::<_, Option<bool>>("toplevel")?.unwrap_or(true),
    };
    let mut ints = [None; INT_COUNTERS.len()];
    for (v, name) in ints.iter_mut().zip(INT_COUNTERS) {
        *v = row.try_get(name)?;
    }
    let mut floats = [None; FLOAT_COUNTERS.len()];
    for (v, name) in floats.iter_mut().zip(FLOAT_COUNTERS) {
        *v = row.try_get(name)?;
    }
    let since: Option<chrono::DateTime<chrono::Utc>> = row.try_get("stats_since")?;
    Ok((
        key,
        Counters {
            ints,
            floats,
            since: since.map(|t| t.timestamp_micros()),
        },
    ))
}

/// Cuts `text` to at most `max` bytes at a character boundary.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Per-instance state across rounds.
#[derive(Debug, Default)]
pub struct StatementCollector {
    previous: Option<Reading>,
    texts_sent: HashSet<i64>,
    /// Queryids that ran but whose text is not sent yet (over a round's
    /// budget); fetched in the next rounds whether they run again or not.
    texts_pending: BTreeSet<i64>,
    /// Bytes of text per round, [`TEXT_BYTES_PER_ROUND`] unless set.
    text_budget: Option<usize>,
    /// Warned that the role sees only its own statements.
    warned_visibility: bool,
}

impl StatementCollector {
    /// One round: the deltas since the previous round (none on the first)
    /// and the texts of queryids not sent before.
    pub async fn collect(
        &mut self,
        client: &Client,
        instance: &str,
    ) -> Result<Option<StatementSnapshot>, FamilyError> {
        let probe = client
            .query_one(
                "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'), \
                 current_database()::text, \
                 pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')",
                &[],
            )
            .await?;
        let version: Option<String> = probe.try_get(0)?;
        let database: String = probe.try_get(1)?;
        let Some(version) = version else {
            return Err(FamilyError::Unavailable(format!(
                "pg_stat_statements is not installed in database {database:?} \
                 (CREATE EXTENSION pg_stat_statements; it must also be in shared_preload_libraries)"
            )));
        };
        let version = ExtVersion::parse(&version).ok_or_else(|| {
            FamilyError::Unavailable(format!("unknown pg_stat_statements version {version:?}"))
        })?;
        if !probe.try_get::<_, bool>(2)? && !self.warned_visibility {
            tracing::warn!(
                instance,
                "the agent's role is not a member of pg_read_all_stats (grant pg_monitor): \
                 statement sees only the role's own statements"
            );
            self.warned_visibility = true;
        }

        let reset = if version.has_toplevel() {
            let row = client
                .query_one("SELECT stats_reset FROM pg_stat_statements_info", &[])
                .await?;
            row.try_get::<_, Option<chrono::DateTime<chrono::Utc>>>(0)?
                .map(|t| t.timestamp_micros())
        } else {
            None
        };
        let rows = client.query(&query(version), &[]).await?;
        let mut entries = HashMap::with_capacity(rows.len());
        for row in &rows {
            let (key, counters) = to_entry(row)?;
            entries.insert(key, counters);
        }
        let current = Reading { entries, reset };
        let Some(previous) = &self.previous else {
            self.previous = Some(current);
            return Ok(None);
        };
        let rows = deltas(previous, &current);

        for row in &rows {
            if self.texts_pending.len() >= MAX_TEXTS_REMEMBERED {
                break;
            }
            if !self.texts_sent.contains(&row.queryid) {
                self.texts_pending.insert(row.queryid);
            }
        }
        if self.texts_sent.len() + self.texts_pending.len() > MAX_TEXTS_REMEMBERED {
            tracing::debug!(instance, "forgetting which statement texts were sent");
            self.texts_sent.clear();
        }
        let texts = if self.texts_pending.is_empty() {
            Vec::new()
        } else {
            self.texts(client).await?
        };
        // Only a complete round moves the baseline: after a failure the next
        // round's deltas cover both intervals, so nothing is lost.
        self.previous = Some(current);
        Ok(Some(StatementSnapshot { rows, texts }))
    }

    /// Sets the text bytes per round (default [`TEXT_BYTES_PER_ROUND`]).
    pub fn with_text_budget(mut self, bytes: usize) -> Self {
        self.text_budget = Some(bytes);
        self
    }

    /// Queryids that ran and still wait for their text.
    pub fn texts_pending(&self) -> usize {
        self.texts_pending.len()
    }

    async fn texts(&mut self, client: &Client) -> Result<Vec<StatementText>, FamilyError> {
        // Reading texts loads the server's whole query-text file: only done
        // while queryids new to this agent wait for their text.
        let ids: Vec<i64> = self.texts_pending.iter().copied().collect();
        let budget =
            i64::try_from(self.text_budget.unwrap_or(TEXT_BYTES_PER_ROUND)).unwrap_or(i64::MAX);
        let rows = client.query(TEXTS_SQL, &[&ids, &budget]).await?;
        // A queryid the server no longer has (evicted, reset) is given up:
        // it comes back with its text if it runs again.
        let mut waiting = BTreeSet::new();
        let mut texts = Vec::new();
        for row in &rows {
            let queryid: i64 = row.try_get(0)?;
            match row.try_get::<_, Option<String>>(1)? {
                Some(query) => {
                    self.texts_sent.insert(queryid);
                    texts.push(StatementText {
                        queryid,
                        query: truncate(query, MAX_TEXT_BYTES),
                    });
                }
                None => {
                    waiting.insert(queryid);
                }
            }
        }
        self.texts_pending = waiting;
        Ok(texts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(queryid: i64) -> EntryKey {
        EntryKey {
            queryid,
            dbid: 5,
            userid: 10,
            toplevel: true,
        }
    }

    fn counters(calls: i64, exec_ms: f64, since: Option<i64>) -> Counters {
        let mut ints = [Some(0); INT_COUNTERS.len()];
        ints[0] = Some(calls);
        ints[1] = Some(calls * 2);
        Counters {
            ints,
            floats: [Some(exec_ms), None, Some(0.0), Some(0.0)],
            since,
        }
    }

    fn reading(entries: &[(i64, Counters)], reset: Option<i64>) -> Reading {
        Reading {
            entries: entries.iter().map(|(q, c)| (key(*q), c.clone())).collect(),
            reset,
        }
    }

    #[test]
    fn plain_deltas_and_idle_entries() {
        let prev = reading(
            &[(1, counters(10, 5.0, None)), (2, counters(3, 1.0, None))],
            None,
        );
        let cur = reading(
            &[(1, counters(15, 7.5, None)), (2, counters(3, 1.0, None))],
            None,
        );
        let rows = deltas(&prev, &cur);
        assert_eq!(rows.len(), 1, "an entry that did not run gives no row");
        assert_eq!(rows[0].queryid, 1);
        assert_eq!(rows[0].calls, Some(5));
        assert_eq!(rows[0].rows, Some(10));
        assert_eq!(rows[0].total_exec_time_ms, Some(2.5));
        assert_eq!(
            rows[0].total_plan_time_ms, None,
            "not collected stays absent"
        );
        assert!(!rows[0].since_reset);
    }

    #[test]
    fn new_entries_count_from_zero() {
        let prev = reading(&[], None);
        let cur = reading(&[(7, counters(4, 1.0, None))], None);
        let rows = deltas(&prev, &cur);
        assert_eq!(rows[0].calls, Some(4));
        assert!(rows[0].since_reset);
    }

    #[test]
    fn resets_never_give_negative_or_inflated_deltas() {
        // calls went down: evicted and re-created, or reset of this entry.
        let prev = reading(&[(1, counters(100, 50.0, None))], None);
        let cur = reading(&[(1, counters(3, 1.0, None))], None);
        let rows = deltas(&prev, &cur);
        assert_eq!(rows[0].calls, Some(3));
        assert!(rows[0].since_reset);

        // A full reset seen through pg_stat_statements_info, after which the
        // entry ran more often than before: still the count since the reset.
        let prev = reading(&[(1, counters(2, 1.0, None))], Some(1000));
        let cur = reading(&[(1, counters(5, 2.0, None))], Some(2000));
        let rows = deltas(&prev, &cur);
        assert_eq!(rows[0].calls, Some(5));
        assert!(rows[0].since_reset);

        // PG17: stats_since moved.
        let prev = reading(&[(1, counters(2, 1.0, Some(10)))], Some(1));
        let cur = reading(&[(1, counters(9, 2.0, Some(20)))], Some(1));
        assert_eq!(deltas(&prev, &cur)[0].calls, Some(9));

        // A counter that goes down without a reset signal is clamped at 0.
        let prev = reading(&[(1, counters(2, 5.0, None))], None);
        let cur = reading(&[(1, counters(4, 4.0, None))], None);
        let rows = deltas(&prev, &cur);
        assert_eq!(rows[0].calls, Some(2));
        assert_eq!(rows[0].total_exec_time_ms, Some(0.0));
    }

    #[test]
    fn sql_follows_the_extension_version() {
        let pg13 = query(ExtVersion(1, 8));
        assert!(pg13.contains("NULL::bool AS toplevel"));
        assert!(pg13.contains("total_exec_time::float8"));
        assert!(pg13.contains("blk_read_time::float8 AS shared_blk_read_time"));
        assert!(pg13.contains("NULL::timestamptz AS stats_since"));
        assert!(pg13.contains("pg_stat_statements(false)"));

        let pg12_ext = query(ExtVersion(1, 7));
        assert!(pg12_ext.contains("total_time::float8 AS total_exec_time"));
        assert!(pg12_ext.contains("NULL::int8 AS wal_bytes"));

        for v in [ExtVersion(1, 9), ExtVersion(1, 10)] {
            let q = query(v);
            assert!(q.contains("toplevel::bool AS toplevel"), "{v:?}");
            assert!(q.contains(" blk_read_time::float8"), "{v:?}");
        }
        let pg17 = query(ExtVersion(1, 11));
        assert!(pg17.contains("shared_blk_read_time::float8 AS shared_blk_read_time"));
        assert!(pg17.contains("shared_blk_write_time::float8 AS shared_blk_write_time"));
        assert!(pg17.contains("stats_since::timestamptz AS stats_since"));
        assert!(!pg17.contains(" blk_read_time"));
        assert_eq!(query(ExtVersion(1, 12)), pg17, "PostgreSQL 18's 1.12");
        for name in INT_COUNTERS.iter().chain(&FLOAT_COUNTERS) {
            assert_eq!(
                pg17.matches(&format!(" AS {name},")).count()
                    + pg17.matches(&format!(" AS {name} ")).count(),
                1,
                "{name}"
            );
        }
    }

    #[test]
    fn the_text_query_is_found_by_its_head() {
        assert!(TEXTS_SQL.starts_with(TEXTS_SQL_HEAD));
        assert!(
            !TEXTS_SQL_HEAD
                .chars()
                .any(|c| c.is_ascii_digit() && c != '2')
        );
    }

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(ExtVersion::parse("1.10"), Some(ExtVersion(1, 10)));
        assert!(ExtVersion(1, 10) > ExtVersion(1, 9));
        assert_eq!(ExtVersion::parse("1"), None);
        assert_eq!(ExtVersion::parse("x.y"), None);
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("ééé".into(), 3), "é");
        assert_eq!(truncate("abc".into(), 10), "abc");
    }
}
