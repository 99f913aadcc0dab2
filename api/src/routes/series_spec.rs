//! How each metric family becomes a time series (`GET …/metrics/{family}`).
//!
//! Per family: the key columns that tell series apart (one series per distinct key, e.g. per
//! `datname`) and the numeric columns shown, each with the aggregate used inside a bucket:
//!
//! | aggregate | for | value of a bucket |
//! |---|---|---|
//! | `avg` | gauges (sizes, counts of sessions, percentages) | mean of the samples in the bucket |
//! | `max` | "oldest …" ages and progress | largest sample in the bucket |
//! | `rate` | cumulative counters (`xact_commit`, `blks_read`, WAL bytes, …) | per second: the increase from the last sample of the series' previous bucket to the last sample of this one, over the seconds between them (exact for a counter that only grows); when the counter went down it was reset, and its new value is taken as the increase (as Prometheus does); null for a series' first bucket when nothing precedes it |
//! | `sum` | per-interval deltas the agent already computed (`statement`, `wait`) | sum over the samples in the bucket |
//!
//! Every point also has `row_count`: how many rows fell in the bucket. Columns not listed (text,
//! timestamps, flags) are not part of series; the samples endpoint returns them.
//!
//! Every entry is a literal: the SQL built from it contains nothing a client sent.

use super::metric_families::FamilySpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Avg,
    Max,
    Rate,
    Sum,
}

impl Aggregate {
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Avg => "avg",
            Aggregate::Max => "max",
            Aggregate::Rate => "rate",
            Aggregate::Sum => "sum",
        }
    }
}

#[derive(Debug)]
pub struct SeriesSpec {
    pub family: &'static str,
    pub keys: &'static [&'static str],
    pub values: &'static [(&'static str, Aggregate)],
}

use Aggregate::{Avg, Max, Rate, Sum};

pub const SERIES: &[SeriesSpec] = &[
    SeriesSpec {
        family: "database",
        keys: &["datname"],
        values: &[
            ("numbackends", Avg),
            ("xact_commit", Rate),
            ("xact_rollback", Rate),
            ("blks_read", Rate),
            ("blks_hit", Rate),
            ("tup_returned", Rate),
            ("tup_fetched", Rate),
            ("tup_inserted", Rate),
            ("tup_updated", Rate),
            ("tup_deleted", Rate),
            ("conflicts", Rate),
            ("temp_files", Rate),
            ("temp_bytes", Rate),
            ("deadlocks", Rate),
            ("size_bytes", Avg),
        ],
    },
    SeriesSpec {
        family: "host_cpu",
        keys: &[],
        values: &[
            ("cpu_count", Avg),
            ("usage_percent", Avg),
            ("load1", Avg),
            ("load5", Avg),
            ("load15", Avg),
        ],
    },
    SeriesSpec {
        family: "host_memory",
        keys: &[],
        values: &[
            ("total_bytes", Avg),
            ("used_bytes", Avg),
            ("available_bytes", Avg),
            ("free_bytes", Avg),
            ("swap_total_bytes", Avg),
            ("swap_used_bytes", Avg),
        ],
    },
    SeriesSpec {
        family: "statement",
        keys: &["queryid", "dbid", "userid", "toplevel"],
        values: &[
            ("calls", Sum),
            ("rows", Sum),
            ("total_exec_time_ms", Sum),
            ("plans", Sum),
            ("total_plan_time_ms", Sum),
            ("shared_blks_hit", Sum),
            ("shared_blks_read", Sum),
            ("shared_blks_dirtied", Sum),
            ("shared_blks_written", Sum),
            ("local_blks_hit", Sum),
            ("local_blks_read", Sum),
            ("temp_blks_read", Sum),
            ("temp_blks_written", Sum),
            ("shared_blk_read_time_ms", Sum),
            ("shared_blk_write_time_ms", Sum),
            ("wal_records", Sum),
            ("wal_bytes", Sum),
        ],
    },
    SeriesSpec {
        family: "table",
        keys: &["datname", "schemaname", "relname"],
        values: &[
            ("seq_scan", Rate),
            ("seq_tup_read", Rate),
            ("idx_scan", Rate),
            ("idx_tup_fetch", Rate),
            ("n_tup_ins", Rate),
            ("n_tup_upd", Rate),
            ("n_tup_del", Rate),
            ("n_tup_hot_upd", Rate),
            ("n_tup_newpage_upd", Rate),
            ("n_live_tup", Avg),
            ("n_dead_tup", Avg),
            ("dead_tuple_ratio", Avg),
            ("n_mod_since_analyze", Avg),
            ("n_ins_since_vacuum", Avg),
            ("vacuum_count", Rate),
            ("autovacuum_count", Rate),
            ("analyze_count", Rate),
            ("autoanalyze_count", Rate),
            ("heap_blks_read", Rate),
            ("heap_blks_hit", Rate),
            ("idx_blks_read", Rate),
            ("idx_blks_hit", Rate),
            ("toast_blks_read", Rate),
            ("toast_blks_hit", Rate),
            ("heap_bytes", Avg),
            ("toast_bytes", Avg),
            ("indexes_bytes", Avg),
        ],
    },
    SeriesSpec {
        family: "index",
        keys: &["datname", "schemaname", "relname", "indexrelname"],
        values: &[
            ("idx_scan", Rate),
            ("idx_tup_read", Rate),
            ("idx_tup_fetch", Rate),
            ("idx_blks_read", Rate),
            ("idx_blks_hit", Rate),
            ("size_bytes", Avg),
        ],
    },
    SeriesSpec {
        family: "wal",
        keys: &[],
        values: &[
            ("current_lsn", Rate),
            ("wal_records", Rate),
            ("wal_fpi", Rate),
            ("wal_bytes", Rate),
            ("wal_buffers_full", Rate),
            ("wal_write", Rate),
            ("wal_sync", Rate),
            ("wal_write_time_ms", Rate),
            ("wal_sync_time_ms", Rate),
        ],
    },
    SeriesSpec {
        family: "bgwriter",
        keys: &[],
        values: &[
            ("checkpoints_timed", Rate),
            ("checkpoints_req", Rate),
            ("checkpoint_write_time_ms", Rate),
            ("checkpoint_sync_time_ms", Rate),
            ("buffers_checkpoint", Rate),
            ("buffers_clean", Rate),
            ("maxwritten_clean", Rate),
            ("buffers_backend", Rate),
            ("buffers_backend_fsync", Rate),
            ("buffers_alloc", Rate),
        ],
    },
    SeriesSpec {
        family: "archiver",
        keys: &[],
        values: &[
            ("archived_count", Rate),
            ("failed_count", Rate),
            ("last_archived_age_seconds", Max),
        ],
    },
    SeriesSpec {
        family: "settings",
        keys: &["name"],
        values: &[],
    },
    SeriesSpec {
        family: "setting_changes",
        keys: &["name"],
        values: &[],
    },
    SeriesSpec {
        family: "activity",
        keys: &[],
        values: &[
            ("max_connections", Avg),
            ("total_sessions", Avg),
            ("connection_use_percent", Avg),
            ("waiting_sessions", Avg),
            ("oldest_xact_age_seconds", Max),
            ("oldest_query_age_seconds", Max),
            ("oldest_idle_in_xact_age_seconds", Max),
        ],
    },
    SeriesSpec {
        family: "activity_sessions",
        keys: &["datname", "usename", "application_name", "state"],
        values: &[("sessions", Avg), ("waiting", Avg)],
    },
    SeriesSpec {
        family: "lock",
        keys: &["locktype", "mode", "granted"],
        values: &[("count", Avg)],
    },
    SeriesSpec {
        family: "lock_waits",
        keys: &["datname"],
        values: &[("wait_seconds", Max)],
    },
    SeriesSpec {
        family: "replication",
        keys: &["application_name", "client_addr"],
        values: &[
            ("sent_lag_bytes", Avg),
            ("write_lag_bytes", Avg),
            ("flush_lag_bytes", Avg),
            ("replay_lag_bytes", Avg),
            ("write_lag_seconds", Avg),
            ("flush_lag_seconds", Avg),
            ("replay_lag_seconds", Avg),
        ],
    },
    SeriesSpec {
        family: "replication_slot",
        keys: &["slot_name"],
        values: &[("retained_bytes", Avg), ("safe_wal_size", Avg)],
    },
    SeriesSpec {
        family: "progress",
        keys: &["command", "pid"],
        values: &[("done", Max), ("total", Max), ("percent_done", Max)],
    },
    SeriesSpec {
        family: "wait",
        keys: &["wait_event_type", "wait_event", "queryid"],
        values: &[("count", Sum), ("samples", Sum), ("avg_sessions", Avg)],
    },
    SeriesSpec {
        family: "host_network",
        keys: &["interface"],
        values: &[
            ("rx_bytes", Rate),
            ("tx_bytes", Rate),
            ("rx_packets", Rate),
            ("tx_packets", Rate),
            ("rx_errors", Rate),
            ("tx_errors", Rate),
            ("rx_drops", Rate),
            ("tx_drops", Rate),
            ("rx_bytes_per_sec", Avg),
            ("tx_bytes_per_sec", Avg),
        ],
    },
    SeriesSpec {
        family: "host_disk_io",
        keys: &["device"],
        values: &[
            ("reads", Rate),
            ("writes", Rate),
            ("read_bytes", Rate),
            ("write_bytes", Rate),
            ("io_time_ms", Rate),
            ("read_bytes_per_sec", Avg),
            ("write_bytes_per_sec", Avg),
            ("util_percent", Avg),
        ],
    },
    SeriesSpec {
        family: "standby",
        keys: &[],
        values: &[
            ("receive_lsn", Rate),
            ("replay_lsn", Rate),
            ("replay_delay_seconds", Max),
            ("replay_lag_bytes", Max),
            ("last_msg_age_seconds", Max),
        ],
    },
    SeriesSpec {
        family: "subscription",
        keys: &["subname", "relid"],
        values: &[
            ("received_lsn", Rate),
            ("latest_end_lsn", Rate),
            ("apply_error_count", Rate),
            ("sync_error_count", Rate),
        ],
    },
    SeriesSpec {
        family: "subscription_tables",
        keys: &["subname", "schemaname", "relname", "state"],
        values: &[],
    },
    SeriesSpec {
        family: "custom",
        keys: &["metric", "datname", "labels", "value_name"],
        values: &[("value", Avg)],
    },
    SeriesSpec {
        family: "host_filesystem",
        keys: &["mount_point"],
        values: &[
            ("total_bytes", Avg),
            ("used_bytes", Avg),
            ("free_bytes", Avg),
            ("total_inodes", Avg),
            ("used_inodes", Avg),
            ("free_inodes", Avg),
        ],
    },
    SeriesSpec {
        family: "collector_event",
        keys: &["collector", "kind"],
        values: &[("suppressed", Sum)],
    },
    // Event families: `row_count` per bucket is the number of events.
    SeriesSpec {
        family: "log",
        keys: &["severity"],
        values: &[("duration_ms", Max)],
    },
    SeriesSpec {
        family: "log_plans",
        keys: &["query_id"],
        values: &[("duration_ms", Max)],
    },
    SeriesSpec {
        family: "log_drops",
        keys: &[],
        values: &[
            ("dropped_events", Sum),
            ("truncated_lines", Sum),
            ("unparsed_lines", Sum),
        ],
    },
];

pub fn find(family: &str) -> Option<&'static SeriesSpec> {
    SERIES.iter().find(|s| s.family == family)
}

/// The bucketing function of the store's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucketing {
    /// Native partitions: PostgreSQL's `date_bin`.
    DateBin,
    /// TimescaleDB hypertables: `time_bucket`.
    TimeBucket,
}

/// The downsampling query of `family` (whose table and key column come from `spec`).
///
/// Binds: `$1` key (instance id or agent id), `$2` from (aligned on a bucket start), `$3` to
/// (exclusive), `$4` step (interval), `$5` look-back before `from` (interval; the buckets there
/// only serve as the previous value of a rate), `$6` row limit. Buckets are aligned on
/// multiples of the step since the Unix epoch, on both layouts.
///
/// Two steps, so the raw rows are only scanned and hash-aggregated, never sorted: (1) one row
/// per (bucket, key) with the aggregates and, per rate column, its largest value and the
/// bucket's last sample time; (2) rates from consecutive buckets of a series (a window over
/// the few bucket rows): `(max_k - max_prev) / (last_time_k - last_time_prev)`, or
/// `max_k / …` when the counter went down (it was reset and counts from zero again, as
/// Prometheus assumes). For a counter that only grows this is exactly the increase between
/// the last samples of consecutive buckets.
pub fn series_sql(spec: &FamilySpec, series: &SeriesSpec, bucketing: Bucketing) -> String {
    let key_column = match spec.key {
        super::metric_families::FamilyKey::Instance => "instance_id",
        super::metric_families::FamilyKey::Agent => "agent_id",
    };
    let bucket = match bucketing {
        Bucketing::DateBin => "date_bin($4::interval, time, 'epoch'::timestamptz)",
        Bucketing::TimeBucket => "time_bucket($4::interval, time, 'epoch'::timestamptz)",
    };
    let keys = series.keys.join(", ");
    let mut inner = vec![
        format!("{bucket} AS time"),
        "count(*)::int8 AS row_count".to_owned(),
        "max(time) AS last_time".to_owned(),
    ];
    inner.extend(series.keys.iter().map(|k| (*k).to_owned()));
    let mut outer = vec!["time".to_owned(), "row_count".to_owned()];
    outer.extend(series.keys.iter().map(|k| (*k).to_owned()));
    for (column, aggregate) in series.values {
        // Aliased `v_…` so a value named like a key or `row_count` cannot collide with them;
        // the handler strips the prefix.
        match aggregate {
            Avg => inner.push(format!("avg({column})::float8 AS v_{column}")),
            Max => inner.push(format!("max({column})::float8 AS v_{column}")),
            Sum => inner.push(format!("sum({column})::float8 AS v_{column}")),
            Rate => {
                inner.push(format!("max({column})::float8 AS c_{column}"));
                outer.push(format!(
                    "(CASE WHEN c_{column} >= lag(c_{column}) OVER w \
                     THEN c_{column} - lag(c_{column}) OVER w ELSE c_{column} END) \
                     / nullif(extract(epoch FROM last_time - lag(last_time) OVER w)::float8, 0) \
                     AS v_{column}"
                ));
                continue;
            }
        }
        outer.push(format!("v_{column}"));
    }
    let mut group = vec!["1".to_owned()];
    group.extend(series.keys.iter().map(|k| (*k).to_owned()));
    let (window, order) = if series.keys.is_empty() {
        (" WINDOW w AS (ORDER BY time)".to_owned(), "time".to_owned())
    } else {
        (
            format!(" WINDOW w AS (PARTITION BY {keys} ORDER BY time)"),
            format!("{keys}, time"),
        )
    };
    format!(
        "WITH buckets AS (SELECT {inner} FROM {table} \
         WHERE {key_column} = $1 AND time >= $2::timestamptz - $5::interval AND time < $3 \
         GROUP BY {group}), \
         rates AS (SELECT {outer} FROM buckets{window}) \
         SELECT * FROM rates WHERE time >= $2 ORDER BY {order} LIMIT $6",
        inner = inner.join(", "),
        table = spec.table,
        outer = outer.join(", "),
        group = group.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::metric_families::{FAMILIES, find as find_family};

    #[test]
    fn every_family_has_a_series_made_of_its_own_columns() {
        for family in FAMILIES {
            let series = find(family.name)
                .unwrap_or_else(|| panic!("family {} has no series spec", family.name));
            for column in series
                .keys
                .iter()
                .chain(series.values.iter().map(|(c, _)| c))
            {
                assert!(
                    family.columns.contains(column),
                    "{}: {column} is not a column of the family",
                    family.name
                );
            }
        }
        assert_eq!(SERIES.len(), FAMILIES.len(), "a series spec without family");
    }

    #[test]
    fn bucketing_follows_the_layout() {
        let spec = find_family("database").expect("database");
        let series = find("database").expect("series");
        let native = series_sql(spec, series, Bucketing::DateBin);
        assert!(native.contains("date_bin($4::interval, time, 'epoch'::timestamptz)"));
        assert!(native.contains("PARTITION BY datname ORDER BY time"));
        assert!(native.contains("GROUP BY 1, datname"));
        assert!(native.contains("FROM metric_database WHERE instance_id = $1"));
        let tsdb = series_sql(spec, series, Bucketing::TimeBucket);
        assert!(tsdb.contains("time_bucket($4::interval, time, 'epoch'::timestamptz)"));
        assert!(!tsdb.contains("date_bin"));
        let cpu = series_sql(
            find_family("host_cpu").expect("host_cpu"),
            find("host_cpu").expect("series"),
            Bucketing::DateBin,
        );
        assert!(cpu.contains("WHERE agent_id = $1"));
        assert!(!cpu.contains("lag("), "no rate, no lag: {cpu}");
    }
}
