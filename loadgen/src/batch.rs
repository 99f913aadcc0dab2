//! Realistic batches: what one agent watching one instance sends per tick.
//!
//! Every tick of an agent is one `SampleBatch` with a `DatabaseSnapshot` of
//! `databases` rows (cumulative `pg_stat_database` counters that grow from
//! tick to tick at per-database rates, sizes that drift), an `InstanceInfo`,
//! and the host's `HostCpu` and `HostMemory`: 4 samples, `databases + 2`
//! stored rows. That is all the [`Shape::database_only`] shape sends.
//!
//! The default shape ([`Shape::agent`]) sends what the real agent sends at
//! its default intervals (`agent/src/collect/schedule.rs`) with the tick
//! being 10 s, for a mid-sized server: every tick also `wal`, `activity`
//! (summary + [`SESSION_GROUPS`] groups), `lock` ([`LOCK_MODES`] counts)
//! and `wait` ([`WAIT_EVENTS`] events); every 3rd tick (30 s) `statement`
//! deltas of [`STATEMENTS`] statements that ran (texts of every queryid in
//! the agent's first round only, as the agent sends each text once); every
//! 6th tick (60 s) `table` ([`TABLES`] tables), `index` ([`INDEXES`]
//! indexes), `bgwriter` and `archiver`. Values are pseudo-random but
//! deterministic per (agent, tick), so the same run can be regenerated
//! (e.g. for the JSON comparison).

use lasect_proto::v1::{
    ActivityGroup, ActivitySnapshot, ArchiverStats, BgwriterStats, DatabaseRow, DatabaseSnapshot,
    HostCpu, HostMemory, IndexRow, IndexSnapshot, InstanceInfo, LockCount, LockSnapshot, Sample,
    SampleBatch, StatementRow, StatementSnapshot, StatementText, TableRow, TableSnapshot,
    WaitCount, WaitSnapshot, WalStats, sample::Family,
};

/// Session groups (database, user, application, state) in `activity`.
pub const SESSION_GROUPS: u64 = 6;
/// (locktype, mode, granted) counts in `lock`.
pub const LOCK_MODES: u64 = 4;
/// Wait events seen in a 10 s window.
pub const WAIT_EVENTS: u64 = 8;
/// Statements that ran in a 30 s window.
pub const STATEMENTS: u64 = 60;
/// User tables and indexes of the server.
pub const TABLES: u64 = 100;
pub const INDEXES: u64 = 150;

/// The shape of the batches one simulated agent sends.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub databases: u32,
    /// Every family of the real agent at its default interval, not only
    /// `database` and the host.
    pub all_families: bool,
}

impl Shape {
    pub fn agent(databases: u32) -> Self {
        Self {
            databases,
            all_families: true,
        }
    }

    pub fn database_only(databases: u32) -> Self {
        Self {
            databases,
            all_families: false,
        }
    }

    /// Metric rows the batch of `tick` stores.
    pub fn rows_at(&self, tick: u64) -> u64 {
        let mut rows = u64::from(self.databases) + 2;
        if self.all_families {
            // wal, activity summary + groups, lock counts, wait events
            rows += 1 + 1 + SESSION_GROUPS + LOCK_MODES + WAIT_EVENTS;
            if tick.is_multiple_of(3) {
                rows += STATEMENTS;
            }
            if tick.is_multiple_of(6) {
                rows += TABLES + INDEXES + 2;
            }
        }
        rows
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
                // Ages climb and fall back as autovacuum's anti-wraparound runs would
                // (autovacuum_freeze_max_age and its multixact twin's defaults).
                datfrozenxid_age: c(13, 150_000_000, 2_000).map(|a| a % 200_000_000),
                datminmxid_age: c(14, 300_000_000, 200).map(|a| a % 400_000_000),
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
    let mut samples = vec![
        sample(
            &instance,
            Family::InstanceInfo(InstanceInfo {
                server_version_num: 170_002,
                version: "PostgreSQL 17.2 on x86_64-pc-linux-gnu, compiled by gcc 12.2.0, 64-bit"
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
    ];
    if shape.all_families {
        let families = more_families(shape, agent, tick);
        samples.extend(families.into_iter().map(|f| sample(&instance, f)));
    }
    SampleBatch { samples }
}

/// The families beyond `database` and the host due at `tick` (see the
/// module docs for the schedule).
fn more_families(shape: Shape, agent: u64, tick: u64) -> Vec<Family> {
    let c = |key: u64, start_hi, rate_hi| {
        Some(counter(agent, 1 << 40 | key, 0, tick, start_hi, rate_hi))
    };
    let mut out = vec![
        Family::Wal(WalStats {
            current_lsn: c(1, 1 << 40, 50 << 20),
            wal_records: c(2, 1 << 32, 100_000),
            wal_fpi: c(3, 1 << 24, 5_000),
            wal_bytes: c(4, 1 << 40, 50 << 20),
            wal_buffers_full: c(5, 1 << 10, 3),
            wal_write: c(6, 1 << 24, 2_000),
            wal_sync: c(7, 1 << 24, 2_000),
            wal_write_time_ms: None,
            wal_sync_time_ms: None,
            stats_reset_unix_micros: None,
        }),
        Family::Activity(ActivitySnapshot {
            groups: (0..SESSION_GROUPS)
                .map(|g| ActivityGroup {
                    datname: format!("app_{}", g % u64::from(shape.databases.max(1))),
                    usename: if g % 2 == 0 { "app" } else { "report" }.to_owned(),
                    application_name: format!("svc-{}", g % 3),
                    state: ["active", "idle", "idle in transaction"][(g % 3) as usize].to_owned(),
                    sessions: in_range(agent, tick << 8 | g, 1, 30) as i64,
                    waiting: in_range(agent, tick << 8 | g | 0x80, 0, 3) as i64,
                })
                .collect(),
            max_connections: Some(200),
            total_sessions: Some(in_range(agent, tick ^ 0x51, 20, 120) as i64),
            waiting_sessions: Some(in_range(agent, tick ^ 0x52, 0, 5) as i64),
            oldest_xact_age_seconds: Some(in_range(agent, tick ^ 0x53, 0, 60_000) as f64 / 1000.0),
            oldest_query_age_seconds: Some(in_range(agent, tick ^ 0x54, 0, 30_000) as f64 / 1000.0),
            oldest_idle_in_xact_age_seconds: None,
        }),
        Family::Lock(LockSnapshot {
            counts: ["relation", "transactionid", "virtualxid", "tuple"]
                .iter()
                .zip([
                    "AccessShareLock",
                    "ExclusiveLock",
                    "ExclusiveLock",
                    "RowExclusiveLock",
                ])
                .take(LOCK_MODES as usize)
                .enumerate()
                .map(|(k, (locktype, mode))| LockCount {
                    locktype: (*locktype).to_owned(),
                    mode: mode.to_owned(),
                    granted: k != 3,
                    count: in_range(agent, tick << 4 | k as u64, 1, 200) as i64,
                })
                .collect(),
            waits: Vec::new(),
        }),
        Family::Wait(WaitSnapshot {
            samples: 10,
            counts: (0..WAIT_EVENTS)
                .map(|k| WaitCount {
                    wait_event_type: ["Client", "IO", "LWLock", "Lock"][(k % 4) as usize]
                        .to_owned(),
                    wait_event: format!("Event{k}"),
                    queryid: Some(noise(agent, 0x900 + k) as i64),
                    count: in_range(agent, tick << 8 | k, 1, 40) as i64,
                })
                .collect(),
        }),
    ];
    if tick.is_multiple_of(3) {
        out.push(Family::Statement(statements(agent, tick)));
    }
    if tick.is_multiple_of(6) {
        out.push(Family::Table(TableSnapshot {
            tables: (0..TABLES).map(|t| table(shape, agent, tick, t)).collect(),
        }));
        out.push(Family::Index(IndexSnapshot {
            indexes: (0..INDEXES).map(|i| index(shape, agent, tick, i)).collect(),
        }));
        out.push(Family::Bgwriter(BgwriterStats {
            checkpoints_timed: c(20, 1 << 12, 1),
            checkpoints_req: c(21, 1 << 8, 1),
            checkpoint_write_time_ms: Some(in_range(agent, 22, 0, 1 << 30) as f64),
            checkpoint_sync_time_ms: Some(in_range(agent, 23, 0, 1 << 20) as f64),
            buffers_checkpoint: c(24, 1 << 30, 5_000),
            buffers_clean: c(25, 1 << 28, 1_000),
            maxwritten_clean: c(26, 1 << 10, 2),
            buffers_backend: c(27, 1 << 28, 1_000),
            buffers_backend_fsync: Some(0),
            buffers_alloc: c(28, 1 << 32, 20_000),
            stats_reset_unix_micros: None,
        }));
        out.push(Family::Archiver(ArchiverStats {
            archived_count: c(30, 1 << 20, 6),
            last_archived_wal: format!(
                "00000001000000{:02X}000000{:02X}",
                tick / 256 % 256,
                tick % 256
            ),
            last_archived_time_unix_micros: None,
            failed_count: Some(0),
            last_failed_wal: String::new(),
            last_failed_time_unix_micros: None,
            last_archived_age_seconds: Some(in_range(agent, tick ^ 31, 0, 60_000) as f64 / 1000.0),
            stats_reset_unix_micros: None,
        }));
    }
    out
}

fn statements(agent: u64, tick: u64) -> StatementSnapshot {
    let rows = (0..STATEMENTS)
        .map(|q| {
            let d = |field: u64, hi: u64| {
                Some(in_range(agent, (tick << 16) | (q << 6) | field, 0, hi) as i64)
            };
            let calls = in_range(agent, (tick << 16) | (q << 6), 1, 5_000) as i64;
            StatementRow {
                queryid: noise(agent, 0x5000 + q) as i64,
                dbid: 16_384,
                userid: 10 + (q % 3) as u32,
                toplevel: true,
                since_reset: false,
                calls: Some(calls),
                rows: d(1, 50_000),
                total_exec_time_ms: Some(
                    in_range(agent, (tick << 16) | (q << 6) | 2, 0, 1 << 24) as f64 / 1000.0,
                ),
                plans: Some(0),
                total_plan_time_ms: Some(0.0),
                shared_blks_hit: d(3, 1 << 20),
                shared_blks_read: d(4, 1 << 12),
                shared_blks_dirtied: d(5, 1 << 8),
                shared_blks_written: d(6, 1 << 6),
                local_blks_hit: Some(0),
                local_blks_read: Some(0),
                temp_blks_read: Some(0),
                temp_blks_written: Some(0),
                shared_blk_read_time_ms: Some(0.0),
                shared_blk_write_time_ms: Some(0.0),
                wal_records: d(7, 1 << 12),
                wal_bytes: d(8, 1 << 20),
            }
        })
        .collect();
    // The agent sends a text only for a queryid it has not sent before.
    let texts = if tick == 0 {
        (0..STATEMENTS)
            .map(|q| StatementText {
                queryid: noise(agent, 0x5000 + q) as i64,
                query: format!(
                    "SELECT o.id, o.status, o.total FROM orders_{q} o JOIN customers c ON c.id = o.customer_id WHERE o.created_at > $1 AND c.region = $2 ORDER BY o.created_at DESC LIMIT $3"
                ),
            })
            .collect()
    } else {
        Vec::new()
    };
    StatementSnapshot { rows, texts }
}

fn table(shape: Shape, agent: u64, tick: u64, t: u64) -> TableRow {
    let c = |field: u64, start_hi, rate_hi| {
        Some(counter(agent, 2 << 40 | t, field, tick, start_hi, rate_hi))
    };
    TableRow {
        datname: format!("app_{}", 1 + t % u64::from(shape.databases.max(2) - 1)),
        relid: 16_500 + t as u32,
        schemaname: "public".to_owned(),
        relname: format!("orders_{t}"),
        seq_scan: c(1, 1 << 16, 10),
        seq_tup_read: c(2, 1 << 32, 100_000),
        idx_scan: c(3, 1 << 30, 50_000),
        idx_tup_fetch: c(4, 1 << 32, 200_000),
        n_tup_ins: c(5, 1 << 28, 5_000),
        n_tup_upd: c(6, 1 << 28, 3_000),
        n_tup_del: c(7, 1 << 24, 500),
        n_tup_hot_upd: c(8, 1 << 26, 2_000),
        n_tup_newpage_upd: c(9, 1 << 20, 100),
        n_live_tup: c(10, 1 << 26, 1_000),
        n_dead_tup: Some(in_range(agent, tick << 20 | t, 0, 100_000) as i64),
        n_mod_since_analyze: Some(in_range(agent, tick << 21 | t, 0, 100_000) as i64),
        n_ins_since_vacuum: Some(in_range(agent, tick << 22 | t, 0, 100_000) as i64),
        vacuum_count: Some(0),
        autovacuum_count: c(11, 1 << 10, 2),
        analyze_count: Some(0),
        autoanalyze_count: c(12, 1 << 10, 2),
        last_vacuum_unix_micros: None,
        last_autovacuum_unix_micros: Some(
            1_700_000_000_000_000 + (noise(agent, t) % 1_000_000_000_000) as i64,
        ),
        last_analyze_unix_micros: None,
        last_autoanalyze_unix_micros: Some(
            1_700_000_000_000_000 + (noise(agent, t ^ 1) % 1_000_000_000_000) as i64,
        ),
        heap_blks_read: c(13, 1 << 30, 10_000),
        heap_blks_hit: c(14, 1 << 34, 1_000_000),
        idx_blks_read: c(15, 1 << 28, 5_000),
        idx_blks_hit: c(16, 1 << 34, 1_000_000),
        toast_blks_read: Some(0),
        toast_blks_hit: Some(0),
        heap_bytes: c(17, 1 << 34, 100_000),
        toast_bytes: Some(8192),
        indexes_bytes: c(18, 1 << 32, 50_000),
    }
}

fn index(shape: Shape, agent: u64, tick: u64, i: u64) -> IndexRow {
    let t = i % TABLES;
    let c = |field: u64, start_hi, rate_hi| {
        Some(counter(agent, 3 << 40 | i, field, tick, start_hi, rate_hi))
    };
    IndexRow {
        datname: format!("app_{}", 1 + t % u64::from(shape.databases.max(2) - 1)),
        indexrelid: 20_000 + i as u32,
        relid: 16_500 + t as u32,
        schemaname: "public".to_owned(),
        relname: format!("orders_{t}"),
        indexrelname: if i < TABLES {
            format!("orders_{t}_pkey")
        } else {
            format!("orders_{t}_created_at_idx")
        },
        idx_scan: c(1, 1 << 30, 50_000),
        idx_tup_read: c(2, 1 << 32, 200_000),
        idx_tup_fetch: c(3, 1 << 32, 150_000),
        idx_blks_read: c(4, 1 << 28, 5_000),
        idx_blks_hit: c(5, 1 << 34, 1_000_000),
        size_bytes: c(6, 1 << 32, 50_000),
        last_idx_scan_unix_micros: None,
        is_unique: i < TABLES,
        is_primary: i < TABLES,
        invalid: false,
        unused: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_grow_and_batches_have_the_promised_shape() {
        let shape = Shape::database_only(10);
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

    /// Every batch of both shapes over a full schedule cycle is accepted by
    /// ingest's own decoder, and stores the rows `rows_at` promises.
    #[test]
    fn ingest_accepts_every_batch_with_the_promised_rows() {
        use lasect_ingest::push::{DecodeLimits, decode_batch};
        let now = chrono::Utc::now();
        let limits = DecodeLimits {
            max_uncompressed_bytes: 32 << 20,
            max_samples_per_batch: 100_000,
        };
        for shape in [Shape::agent(10), Shape::database_only(10)] {
            for tick in 0..7 {
                let time = now.timestamp_micros() - 1_000_000;
                let c = lasect_proto::payload::encode(&tick_batch(shape, 3, tick, time))
                    .expect("encode");
                let batch =
                    decode_batch(c.codec as i32, c.uncompressed_size, &c.payload, limits, now)
                        .unwrap_or_else(|e| panic!("{shape:?} tick {tick}: {e}"));
                let rows: usize = batch.tables.iter().map(|t| t.rows.len()).sum();
                assert_eq!(rows as u64, shape.rows_at(tick), "{shape:?} tick {tick}");
                assert_eq!(batch.unknown_samples, 0);
            }
        }
    }
}
