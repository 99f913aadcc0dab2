//! Backfill of a logical subscription (issue 21, R3; docs/REPLICATION.md "Backfill"): per
//! table its sync state, what its table-sync worker copied so far (`subscription_copy`
//! samples of the subscriber) against the table on the publisher (`table` samples: rows and
//! heap + TOAST bytes), the copy's throughput over the last minutes and an ETA; the same
//! summed for the whole subscription.
//!
//! Progress is counted in rows when the publisher's row estimate is known: COPY's
//! `bytes_processed` counts the text the publisher sends, which is not the size of the table
//! on disk (tuple headers, alignment, TOAST compression), so a byte ratio can stop short of
//! 100 % or pass it. Bytes are used when no row estimate exists. A table still copying is
//! never shown at 100 %: it gets there when its state leaves `data_copy`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
pub use lasect_api_contract::replication::{Backfill, BackfillTable};
use sqlx::PgPool;

/// Copy samples older than this do not count toward throughput.
const WINDOW: &str = "interval '5 minutes'";
/// A copy sample is current if it is at most this much older than the newest state sample
/// (the two families are sampled in the same round).
const CURRENT_SECS: f64 = 60.0;

#[derive(sqlx::FromRow)]
struct StateRow {
    time: DateTime<Utc>,
    schemaname: String,
    relname: String,
    state: String,
}

#[derive(sqlx::FromRow)]
struct CopyRow {
    time: DateTime<Utc>,
    schemaname: String,
    relname: String,
    pid: i32,
    bytes_processed: i64,
    tuples_processed: i64,
}

#[derive(sqlx::FromRow)]
struct SizeRow {
    schemaname: String,
    relname: String,
    n_live_tup: Option<i64>,
    heap_bytes: Option<i64>,
    toast_bytes: Option<i64>,
}

/// The backfill of subscription `subname` of instance `subscriber`, whose publisher is
/// instance `publisher` (database `publisher_db`, when known; sizes come from there).
pub async fn backfill(
    pool: &PgPool,
    subscriber: i64,
    subname: &str,
    publisher: Option<(i64, Option<&str>)>,
) -> Result<Backfill, sqlx::Error> {
    let states: Vec<StateRow> = sqlx::query_as(
        "SELECT time, schemaname, relname, state FROM metric_subscription_tables \
         WHERE instance_id = $1 AND subname = $2 AND time = ( \
             SELECT max(time) FROM metric_subscription_tables \
             WHERE instance_id = $1 AND time > now() - interval '15 minutes') \
         ORDER BY schemaname, relname",
    )
    .bind(subscriber)
    .bind(subname)
    .fetch_all(pool)
    .await?;
    let copies: Vec<CopyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT time, schemaname, relname, pid, bytes_processed, tuples_processed \
         FROM metric_subscription_copy \
         WHERE instance_id = $1 AND subname = $2 AND time > now() - {WINDOW} ORDER BY time"
    )))
    .bind(subscriber)
    .bind(subname)
    .fetch_all(pool)
    .await?;
    // Before 14 the subscriber has no pg_stat_progress_copy: its copies are never sampled.
    let version: Option<i32> =
        sqlx::query_scalar("SELECT server_version_num FROM instances WHERE id = $1")
            .bind(subscriber)
            .fetch_optional(pool)
            .await?
            .flatten();
    let counted = version.is_none_or(|v| v >= 140_000);
    let sizes: Vec<SizeRow> = match publisher {
        Some((id, db)) => {
            sqlx::query_as(
                "SELECT DISTINCT ON (schemaname, relname) schemaname, relname, n_live_tup, \
                        heap_bytes, toast_bytes \
                 FROM metric_table WHERE instance_id = $1 AND ($2::text IS NULL OR datname = $2) \
                   AND time > now() - interval '30 minutes' \
                 ORDER BY schemaname, relname, time DESC",
            )
            .bind(id)
            .bind(db)
            .fetch_all(pool)
            .await?
        }
        None => Vec::new(),
    };
    Ok(compute(&states, &copies, &sizes, counted))
}

/// `counted`: the subscriber samples its copies (14+); else a table in `data_copy` has no
/// percent (unknown, not 0).
fn compute(states: &[StateRow], copies: &[CopyRow], sizes: &[SizeRow], counted: bool) -> Backfill {
    let sampled = states.iter().map(|s| s.time).max();
    let mut by_table: BTreeMap<(&str, &str), Vec<&CopyRow>> = BTreeMap::new();
    for c in copies {
        by_table
            .entry((c.schemaname.as_str(), c.relname.as_str()))
            .or_default()
            .push(c);
    }
    let mut tables = Vec::with_capacity(states.len());
    for s in states {
        let size = sizes
            .iter()
            .find(|z| z.schemaname == s.schemaname && z.relname == s.relname);
        let publisher_rows = size.and_then(|z| z.n_live_tup).filter(|n| *n > 0);
        let publisher_bytes = size
            .and_then(|z| Some(z.heap_bytes? + z.toast_bytes.unwrap_or(0)))
            .filter(|b| *b > 0);
        let mut t = BackfillTable {
            schema: s.schemaname.clone(),
            table: s.relname.clone(),
            state: s.state.clone(),
            rows_copied: None,
            bytes_copied: None,
            publisher_rows,
            publisher_bytes,
            percent: None,
            rows_per_second: None,
            bytes_per_second: None,
            eta_seconds: None,
        };
        match s.state.as_str() {
            "finished" | "sync_done" | "ready" => {
                t.percent = Some(100.0);
                t.eta_seconds = Some(0.0);
            }
            "init" => t.percent = Some(0.0),
            _ if !counted => {}
            _ => copying(
                &mut t,
                by_table
                    .get(&(s.schemaname.as_str(), s.relname.as_str()))
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
                s.time,
            ),
        }
        tables.push(t);
    }
    let ready = tables.iter().filter(|t| t.state == "ready").count();
    let state = if tables.is_empty() {
        "unknown"
    } else if ready == tables.len() {
        "streaming"
    } else {
        "initial_sync"
    };
    // Whole stream: in rows when every table's row estimate is known.
    let all_rows = tables.iter().all(|t| t.publisher_rows.is_some());
    let (mut total, mut done) = (0f64, 0f64);
    for t in &tables {
        let Some(p) = t.percent else { continue };
        let weight = if all_rows {
            t.publisher_rows.unwrap_or(0) as f64
        } else {
            1.0
        };
        total += weight;
        done += weight * p / 100.0;
    }
    let percent = (!tables.is_empty() && tables.iter().all(|t| t.percent.is_some())).then(|| {
        if total > 0.0 {
            done / total * 100.0
        } else {
            100.0
        }
    });
    let rate: f64 = tables.iter().filter_map(|t| t.rows_per_second).sum();
    let remaining: f64 = tables
        .iter()
        .filter(|t| t.state != "ready" && t.state != "sync_done" && t.state != "finished")
        .map(|t| {
            t.publisher_rows
                .map(|r| (r - t.rows_copied.unwrap_or(0)).max(0) as f64)
        })
        .sum::<Option<f64>>()
        .unwrap_or(f64::NAN);
    let eta_seconds = if state == "streaming" {
        Some(0.0)
    } else if rate > 0.0 && remaining.is_finite() {
        Some(remaining / rate)
    } else {
        None
    };
    Backfill {
        state: state.to_owned(),
        tables_total: tables.len(),
        tables_ready: ready,
        copy_progress: if counted { "counted" } else { "state_only" }.to_owned(),
        percent: percent.map(|p| p.clamp(0.0, 100.0)),
        rows_per_second: (rate > 0.0).then_some(rate),
        eta_seconds,
        sampled_at: sampled.map(crate::routes::instances::rfc3339),
        tables,
    }
}

/// A table in `data_copy`: the newest copy sample of its worker, the throughput between the
/// first and the newest sample of the same worker, and what is left.
fn copying(t: &mut BackfillTable, samples: &[&CopyRow], state_at: DateTime<Utc>) {
    t.percent = Some(0.0);
    let Some(last) = samples.last() else { return };
    if (state_at - last.time).num_milliseconds() as f64 / 1000.0 > CURRENT_SECS {
        return;
    }
    t.rows_copied = Some(last.tuples_processed);
    t.bytes_copied = Some(last.bytes_processed);
    let ratio = match (t.publisher_rows, t.publisher_bytes) {
        (Some(rows), _) => last.tuples_processed as f64 / rows as f64,
        (None, Some(bytes)) => last.bytes_processed as f64 / bytes as f64,
        (None, None) => return,
    };
    // Not done before its state says so (estimates lag, COPY text is not heap size).
    t.percent = Some((ratio * 100.0).clamp(0.0, 99.9));
    let first = samples.iter().find(|c| c.pid == last.pid).unwrap_or(last);
    let secs = (last.time - first.time).num_milliseconds() as f64 / 1000.0;
    if secs <= 0.0 {
        return;
    }
    let rows_rate = (last.tuples_processed - first.tuples_processed) as f64 / secs;
    let bytes_rate = (last.bytes_processed - first.bytes_processed) as f64 / secs;
    if rows_rate > 0.0 {
        t.rows_per_second = Some(rows_rate);
    }
    if bytes_rate > 0.0 {
        t.bytes_per_second = Some(bytes_rate);
    }
    t.eta_seconds = match (t.publisher_rows, t.publisher_bytes) {
        (Some(rows), _) if rows_rate > 0.0 => {
            Some(((rows - last.tuples_processed).max(0) as f64) / rows_rate)
        }
        (None, Some(bytes)) if bytes_rate > 0.0 => {
            Some(((bytes - last.bytes_processed).max(0) as f64) / bytes_rate)
        }
        _ => None,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .expect("a time")
    }

    fn state(s: i64, table: &str, st: &str) -> StateRow {
        StateRow {
            time: at(s),
            schemaname: "public".into(),
            relname: table.into(),
            state: st.into(),
        }
    }

    fn copy(s: i64, table: &str, rows: i64) -> CopyRow {
        CopyRow {
            time: at(s),
            schemaname: "public".into(),
            relname: table.into(),
            pid: 77,
            bytes_processed: rows * 10,
            tuples_processed: rows,
        }
    }

    fn size(table: &str, rows: i64) -> SizeRow {
        SizeRow {
            schemaname: "public".into(),
            relname: table.into(),
            n_live_tup: Some(rows),
            heap_bytes: Some(rows * 40),
            toast_bytes: Some(0),
        }
    }

    #[test]
    fn a_copy_under_way_has_a_rate_and_an_eta() {
        let b = compute(
            &[
                state(20, "orders", "data_copy"),
                state(20, "items", "ready"),
            ],
            &[copy(10, "orders", 100_000), copy(20, "orders", 300_000)],
            &[size("orders", 1_000_000), size("items", 1_000_000)],
            true,
        );
        assert_eq!(b.state, "initial_sync");
        let orders = &b.tables[0];
        assert_eq!(orders.table, "orders");
        assert_eq!(orders.percent, Some(30.0));
        assert_eq!(orders.rows_per_second, Some(20_000.0));
        assert_eq!(orders.eta_seconds, Some(35.0));
        assert_eq!(b.percent, Some(65.0));
        assert_eq!(b.eta_seconds, Some(35.0));
        assert_eq!(b.tables_ready, 1);
    }

    #[test]
    fn a_copy_is_never_done_before_its_state_says_so() {
        let b = compute(
            &[state(20, "orders", "data_copy")],
            &[copy(20, "orders", 1_200_000)],
            &[size("orders", 1_000_000)],
            true,
        );
        assert_eq!(b.tables[0].percent, Some(99.9));
        assert_eq!(b.tables[0].eta_seconds, None, "one sample: no rate yet");
    }

    #[test]
    fn all_ready_is_streaming_and_no_samples_is_unknown() {
        let b = compute(&[state(5, "orders", "ready")], &[], &[], true);
        assert_eq!((b.state.as_str(), b.percent), ("streaming", Some(100.0)));
        assert_eq!(b.eta_seconds, Some(0.0));
        let none = compute(&[], &[], &[], true);
        assert_eq!((none.state.as_str(), none.percent), ("unknown", None));
    }

    #[test]
    fn without_a_row_estimate_bytes_count() {
        let mut z = size("orders", 0);
        z.n_live_tup = None;
        z.heap_bytes = Some(1000);
        let b = compute(
            &[state(10, "orders", "data_copy")],
            &[copy(0, "orders", 10), copy(10, "orders", 50)],
            &[z],
            true,
        );
        let t = &b.tables[0];
        assert_eq!(t.percent, Some(50.0));
        assert_eq!(t.bytes_per_second, Some(40.0));
        assert_eq!(t.eta_seconds, Some(12.5));
    }

    #[test]
    fn a_stale_copy_sample_is_not_progress() {
        let b = compute(
            &[state(500, "orders", "data_copy")],
            &[copy(10, "orders", 500)],
            &[size("orders", 1000)],
            true,
        );
        assert_eq!(b.tables[0].rows_copied, None);
        assert_eq!(b.tables[0].percent, Some(0.0));
    }

    #[test]
    fn without_copy_progress_a_copying_table_has_its_state_only() {
        let b = compute(
            &[
                state(20, "orders", "data_copy"),
                state(20, "items", "ready"),
            ],
            &[],
            &[size("orders", 1_000_000), size("items", 1_000)],
            false,
        );
        assert_eq!(b.copy_progress, "state_only");
        let orders = &b.tables[0];
        assert_eq!(orders.state, "data_copy");
        assert_eq!(
            (orders.percent, orders.rows_copied, orders.eta_seconds),
            (None, None, None)
        );
        assert_eq!(b.tables[1].percent, Some(100.0));
        assert_eq!((b.state.as_str(), b.percent), ("initial_sync", None));
        let all_ready = compute(&[state(5, "items", "ready")], &[], &[], false);
        assert_eq!(all_ready.percent, Some(100.0));
    }
}
