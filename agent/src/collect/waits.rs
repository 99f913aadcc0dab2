//! `wait`: an active-session history without any extension. Every tick
//! (1 s) the active client sessions of pg_stat_activity are counted per
//! wait event (and per query_id on PostgreSQL 14+, where the server
//! computes it); the counts are summed in memory and sent once per `wait`
//! interval (10 s by default) with the number of samples taken, so a
//! reader gets average active sessions per event. A session not waiting
//! on anything is counted as `CPU`/`CPU`.
//!
//! Memory is bounded: past [`MAX_KEYS`] distinct (event, query_id) pairs in
//! a window, further query_ids are folded into their event's row without a
//! query_id.

use std::collections::HashMap;

use lasect_proto::v1::{WaitCount, WaitSnapshot};
use tokio_postgres::Client;

const PG14: i32 = 140_000;
pub const MAX_KEYS: usize = 10_000;

pub fn query(server_version_num: i32) -> String {
    let query_id = if server_version_num >= PG14 {
        "query_id"
    } else {
        "NULL::int8"
    };
    format!(
        "SELECT coalesce(wait_event_type, 'CPU') AS wait_event_type, \
         coalesce(wait_event, 'CPU') AS wait_event, {query_id} AS queryid, \
         count(*)::int8 AS count FROM pg_stat_activity \
         WHERE state = 'active' AND backend_type = 'client backend' \
           AND pid <> pg_backend_pid() \
         GROUP BY 1, 2, 3"
    )
}

type Key = (String, String, Option<i64>);

#[derive(Debug, Default)]
pub struct WaitSampler {
    counts: HashMap<Key, i64>,
    samples: u32,
}

impl WaitSampler {
    /// Takes one sample and adds it to the window.
    pub async fn sample(
        &mut self,
        client: &Client,
        version: i32,
    ) -> Result<(), tokio_postgres::Error> {
        let rows = client.query(&query(version), &[]).await?;
        let mut seen = Vec::with_capacity(rows.len());
        for row in &rows {
            let key: Key = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            seen.push((key, row.try_get::<_, i64>(3)?));
        }
        for (key, count) in seen {
            self.add(key, count);
        }
        self.samples = self.samples.saturating_add(1);
        Ok(())
    }

    fn add(&mut self, key: Key, count: i64) {
        let key = if self.counts.len() >= MAX_KEYS && !self.counts.contains_key(&key) {
            (key.0, key.1, None)
        } else {
            key
        };
        *self.counts.entry(key).or_insert(0) += count;
    }

    /// The window so far, which starts anew; `None` before any sample.
    pub fn take(&mut self) -> Option<WaitSnapshot> {
        if self.samples == 0 {
            return None;
        }
        let mut counts: Vec<WaitCount> = self
            .counts
            .drain()
            .map(
                |((wait_event_type, wait_event, queryid), count)| WaitCount {
                    wait_event_type,
                    wait_event,
                    queryid,
                    count,
                },
            )
            .collect();
        counts.sort_by_key(|c| std::cmp::Reverse(c.count));
        let samples = std::mem::take(&mut self.samples);
        Some(WaitSnapshot { samples, counts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(event: &str, q: Option<i64>) -> Key {
        ("Lock".into(), event.into(), q)
    }

    #[test]
    fn windows_sum_samples_and_start_anew() {
        let mut w = WaitSampler::default();
        assert!(w.take().is_none());
        w.add(key("relation", Some(1)), 2);
        w.add(key("relation", Some(1)), 3);
        w.samples = 2;
        let snap = w.take().expect("a window");
        assert_eq!(snap.samples, 2);
        assert_eq!(snap.counts.len(), 1);
        assert_eq!(snap.counts[0].count, 5);
        assert!(w.take().is_none(), "the next window starts empty");
    }

    #[test]
    fn memory_is_bounded() {
        let mut w = WaitSampler::default();
        for q in 0..(MAX_KEYS as i64 + 50) {
            w.add(key("relation", Some(q)), 1);
        }
        assert!(w.counts.len() <= MAX_KEYS + 1);
        assert_eq!(w.counts.values().sum::<i64>(), MAX_KEYS as i64 + 50);
    }

    #[test]
    fn query_id_from_14() {
        assert!(query(130_000).contains("NULL::int8 AS queryid"));
        for v in [140_000, 170_000] {
            assert!(query(v).contains("query_id AS queryid"));
        }
    }
}
