//! Realistic batches: what one agent watching one instance sends per tick.
//!
//! One tick of an agent is one `SampleBatch` with a `DatabaseSnapshot` of
//! `databases` rows (cumulative `pg_stat_database` counters that grow from
//! tick to tick at per-database rates, sizes that drift), an `InstanceInfo`,
//! and the host's `HostCpu` and `HostMemory`: 4 samples, `databases + 2`
//! stored rows. Values are pseudo-random but deterministic per (agent,
//! tick), so the same run can be regenerated (e.g. for the JSON comparison).

use lasect_proto::v1::{
    DatabaseRow, DatabaseSnapshot, HostCpu, HostMemory, InstanceInfo, Sample, SampleBatch,
    sample::Family,
};

/// The shape of the batches one simulated agent sends.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub databases: u32,
}

impl Shape {
    /// Metric rows one batch stores.
    pub fn rows_per_batch(&self) -> u64 {
        u64::from(self.databases) + 2
    }
}

/// Deterministic noise: splitmix64 of the inputs.
pub(crate) fn noise(agent: u64, key: u64) -> u64 {
    let mut z = agent
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(key)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn in_range(agent: u64, key: u64, lo: u64, hi: u64) -> u64 {
    lo + noise(agent, key) % (hi - lo).max(1)
}

/// A cumulative counter: a per-(agent, db, field) start and rate, plus
/// jitter, so consecutive ticks grow like a real server's.
fn counter(agent: u64, db: u64, field: u64, tick: u64, start_hi: u64, rate_hi: u64) -> i64 {
    let key = (db << 8) | field;
    let start = in_range(agent, key, 0, start_hi);
    let rate = in_range(agent, key ^ 0xABCD, 1, rate_hi);
    let jitter = noise(agent, key ^ (tick << 20)) % (rate / 4 + 1);
    (start + tick * rate + jitter).min(i64::MAX as u64) as i64
}

/// The batch of tick `tick` of agent `agent`, taken at `time_unix_micros`.
pub fn tick_batch(shape: Shape, agent: u64, tick: u64, time_unix_micros: i64) -> SampleBatch {
    let instance = "main".to_owned();
    let databases = (0..u64::from(shape.databases))
        .map(|db| {
            let c =
                |field, start_hi, rate_hi| Some(counter(agent, db, field, tick, start_hi, rate_hi));
            DatabaseRow {
                datid: 16_384 + db as u32,
                datname: if db == 0 {
                    "postgres".to_owned()
                } else {
                    format!("app_{db}")
                },
                numbackends: Some(in_range(agent, (db << 8) ^ tick, 0, 40) as i64),
                xact_commit: c(1, 1 << 30, 20_000),
                xact_rollback: c(2, 1 << 16, 20),
                blks_read: c(3, 1 << 32, 50_000),
                blks_hit: c(4, 1 << 36, 2_000_000),
                tup_returned: c(5, 1 << 36, 5_000_000),
                tup_fetched: c(6, 1 << 34, 500_000),
                tup_inserted: c(7, 1 << 30, 10_000),
                tup_updated: c(8, 1 << 28, 5_000),
                tup_deleted: c(9, 1 << 26, 1_000),
                conflicts: Some(0),
                temp_files: c(10, 1 << 10, 3),
                temp_bytes: c(11, 1 << 34, 10_000_000),
                deadlocks: Some(0),
                size_bytes: Some(c(12, 1 << 34, 100_000).unwrap_or(0) + (8 << 20)),
                stats_reset_unix_micros: None,
            }
        })
        .collect();
    let load = in_range(agent, tick, 0, 400) as f64 / 100.0;
    let total: u64 = 32 << 30;
    let used = in_range(agent, tick ^ 77, 4 << 30, 28 << 30);
    let sample = |instance: &str, family| Sample {
        instance: instance.to_owned(),
        time_unix_micros,
        family: Some(family),
    };
    SampleBatch {
        samples: vec![
            sample(
                &instance,
                Family::InstanceInfo(InstanceInfo {
                    server_version_num: 170_002,
                    version:
                        "PostgreSQL 17.2 on x86_64-pc-linux-gnu, compiled by gcc 12.2.0, 64-bit"
                            .to_owned(),
                    in_recovery: false,
                }),
            ),
            sample(&instance, Family::Database(DatabaseSnapshot { databases })),
            sample(
                "",
                Family::HostCpu(HostCpu {
                    cpu_count: 8,
                    usage_percent: in_range(agent, tick ^ 5, 0, 10_000) as f64 / 100.0,
                    load1: load,
                    load5: load * 0.9,
                    load15: load * 0.8,
                }),
            ),
            sample(
                "",
                Family::HostMemory(HostMemory {
                    total_bytes: total,
                    used_bytes: used,
                    available_bytes: total - used,
                    free_bytes: (total - used) / 2,
                    swap_total_bytes: 4 << 30,
                    swap_used_bytes: in_range(agent, tick ^ 9, 0, 1 << 28),
                }),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_grow_and_batches_have_the_promised_shape() {
        let shape = Shape { databases: 10 };
        let a = tick_batch(shape, 7, 100, 1_700_000_000_000_000);
        let b = tick_batch(shape, 7, 101, 1_700_000_010_000_000);
        assert_eq!(a.samples.len(), 4);
        let rows = |batch: &SampleBatch| match &batch.samples[1].family {
            Some(Family::Database(d)) => d.databases.clone(),
            other => panic!("unexpected {other:?}"),
        };
        let (ra, rb) = (rows(&a), rows(&b));
        assert_eq!(ra.len(), 10);
        for (x, y) in ra.iter().zip(&rb) {
            assert!(y.xact_commit > x.xact_commit, "{x:?} {y:?}");
        }
        assert_eq!(tick_batch(shape, 7, 100, 1_700_000_000_000_000), a);
    }
}
