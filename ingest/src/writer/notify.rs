//! "The store is the bus": every group transaction announces what it stored
//! with `pg_notify` on [`CHANNEL`], so the API can stream new samples
//! without polling.
//!
//! The notifications are sent inside the group's transaction: PostgreSQL
//! delivers them to listeners only when it commits (never after a rollback),
//! so a listener that reads the announced rows finds them.
//!
//! Payload (JSON, at most [`MAX_PAYLOAD`] bytes each; a big group sends
//! several):
//!
//! ```json
//! {"v":1,"samples":[
//!   {"instance":12,"family":"database","from_us":1700000000000000,"to_us":1700000010000000},
//!   {"agent":"db-01","family":"host_cpu","from_us":1700000000000000,"to_us":1700000000000000}]}
//! ```
//!
//! One entry per (instance or agent, family) stored by the group: the rows of
//! that family and key have `from_us <= time <= to_us` (µs since the epoch,
//! UTC). Instance-keyed families carry `instance` (the store's id), host
//! families `agent`.

use std::collections::BTreeMap;

use deadpool_postgres::Transaction;
use serde::Serialize;

use super::copy::Part;
use super::{StoreError, prepare, query};

/// The LISTEN/NOTIFY channel of new samples.
pub const CHANNEL: &str = "lasect_samples";
/// PostgreSQL refuses payloads of 8000 bytes and more; stay well below.
pub const MAX_PAYLOAD: usize = 7000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum Scope<'a> {
    Instance(i64),
    Agent(&'a str),
}

#[derive(Serialize)]
struct Entry<'a> {
    #[serde(flatten)]
    scope: &'a Scope<'a>,
    family: &'static str,
    from_us: i64,
    to_us: i64,
}

/// Announces the rows of `parts` (about to be committed) to listeners.
pub(super) async fn new_samples(
    tx: &Transaction<'_>,
    parts: &[Part<'_>],
) -> Result<(), StoreError> {
    let payloads = payloads(parts);
    if payloads.is_empty() {
        return Ok(());
    }
    let action = "announcing new samples";
    let statement = prepare(
        tx,
        action,
        "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
    )
    .await?;
    tx.query(&statement, &[&CHANNEL, &payloads])
        .await
        .map_err(query(action))?;
    Ok(())
}

fn payloads(parts: &[Part<'_>]) -> Vec<String> {
    let mut ranges: BTreeMap<(Scope<'_>, &'static str), (i64, i64)> = BTreeMap::new();
    for part in parts {
        for table in &part.batch.tables {
            for row in &table.rows {
                let scope = match row.instance {
                    Some(i) => match part.instance_ids.get(i) {
                        Some(id) => Scope::Instance(*id),
                        None => continue,
                    },
                    None => Scope::Agent(part.agent_id),
                };
                let t = row.time.timestamp_micros();
                ranges
                    .entry((scope, table.table.family))
                    .and_modify(|(lo, hi)| {
                        *lo = (*lo).min(t);
                        *hi = (*hi).max(t);
                    })
                    .or_insert((t, t));
            }
        }
    }
    let mut out = Vec::new();
    let mut current = String::new();
    for ((scope, family), (from_us, to_us)) in &ranges {
        let entry = Entry {
            scope,
            family,
            from_us: *from_us,
            to_us: *to_us,
        };
        let Ok(entry) = serde_json::to_string(&entry) else {
            continue;
        };
        if !current.is_empty() && current.len() + entry.len() + 2 > MAX_PAYLOAD {
            current.push_str("]}");
            out.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            current.push_str("{\"v\":1,\"samples\":[");
        } else {
            current.push(',');
        }
        current.push_str(&entry);
    }
    if !current.is_empty() {
        current.push_str("]}");
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta, Utc};

    use super::*;
    use crate::validate::schema::Value;
    use crate::validate::{Batch, MetricRow, TableRows};

    fn table(family: &str) -> &'static crate::validate::schema::Table {
        crate::validate::schema::TABLES
            .iter()
            .copied()
            .find(|t| t.family == family)
            .expect("table")
    }

    fn row(time: DateTime<Utc>, instance: Option<usize>) -> MetricRow {
        MetricRow {
            time,
            instance,
            values: vec![Value::Int8(Some(1))],
        }
    }

    #[test]
    fn ranges_per_scope_and_family_split_under_the_size_limit() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let t1 = t0 + TimeDelta::seconds(10);
        let batch = Batch {
            tables: vec![
                TableRows {
                    table: table("database"),
                    rows: vec![row(t1, Some(0)), row(t0, Some(0)), row(t0, Some(1))],
                },
                TableRows {
                    table: table("host_cpu"),
                    rows: vec![row(t0, None)],
                },
            ],
            ..Batch::default()
        };
        let parts = [Part {
            agent_id: "db-01",
            instance_ids: vec![7, 9],
            batch: &batch,
        }];
        let one = payloads(&parts);
        assert_eq!(one.len(), 1);
        let doc: serde_json::Value = serde_json::from_str(&one[0]).expect("json");
        assert_eq!(
            doc,
            serde_json::json!({"v": 1, "samples": [
                {"instance": 7, "family": "database", "from_us": 1_700_000_000_000_000_i64, "to_us": 1_700_000_010_000_000_i64},
                {"instance": 9, "family": "database", "from_us": 1_700_000_000_000_000_i64, "to_us": 1_700_000_000_000_000_i64},
                {"agent": "db-01", "family": "host_cpu", "from_us": 1_700_000_000_000_000_i64, "to_us": 1_700_000_000_000_000_i64},
            ]})
        );

        let many = Batch {
            tables: vec![TableRows {
                table: table("database"),
                rows: (0..500).map(|i| row(t0, Some(i))).collect(),
            }],
            ..Batch::default()
        };
        let parts = [Part {
            agent_id: "db-01",
            instance_ids: (0..500).collect(),
            batch: &many,
        }];
        let split = payloads(&parts);
        assert!(split.len() > 1);
        let mut seen = 0;
        for p in &split {
            assert!(p.len() <= MAX_PAYLOAD, "{}", p.len());
            let doc: serde_json::Value = serde_json::from_str(p).expect("json");
            seen += doc["samples"].as_array().expect("array").len();
        }
        assert_eq!(seen, 500);
    }
}
