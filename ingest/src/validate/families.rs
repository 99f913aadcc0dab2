//! Per-family checks: each wire message becomes a row type whose values the
//! store accepts as they are (integer widths, NUL-free text, finite floats).

use chrono::{DateTime, Utc};
use lasect_proto::v1;

/// What is wrong with one field of one sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field,
        reason: reason.into(),
    }
}

/// Longest `version()` text kept; real ones are around 100 bytes.
const MAX_VERSION_BYTES: usize = 1024;
/// PostgreSQL identifiers are at most NAMEDATALEN - 1 bytes.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// The name of a monitored instance, as configured on its agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceName(String);

impl InstanceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InstanceName {
    type Error = FieldError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        if name.is_empty() {
            return Err(invalid(
                "instance",
                "must not be empty for PostgreSQL samples",
            ));
        }
        if name.chars().count() > 63 {
            return Err(invalid("instance", "must be at most 63 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("instance", "must not contain control characters"));
        }
        Ok(Self(name))
    }
}

/// Facts of an `InstanceInfo` sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceFacts {
    pub server_version_num: i32,
    pub version: String,
    pub in_recovery: bool,
}

impl TryFrom<v1::InstanceInfo> for InstanceFacts {
    type Error = FieldError;

    fn try_from(info: v1::InstanceInfo) -> Result<Self, Self::Error> {
        if info.server_version_num < 0 {
            return Err(invalid("server_version_num", "must not be negative"));
        }
        if info.version.len() > MAX_VERSION_BYTES {
            return Err(invalid(
                "version",
                format!("must be at most {MAX_VERSION_BYTES} bytes"),
            ));
        }
        if info.version.contains('\0') {
            return Err(invalid("version", "must not contain NUL"));
        }
        Ok(Self {
            server_version_num: info.server_version_num,
            version: info.version,
            in_recovery: info.in_recovery,
        })
    }
}

/// Columns of `metric_database` after `numbackends`, in table order; all
/// cumulative counters or sizes, so never negative.
pub const DATABASE_COUNTERS: [&str; 14] = [
    "xact_commit",
    "xact_rollback",
    "blks_read",
    "blks_hit",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "conflicts",
    "temp_files",
    "temp_bytes",
    "deadlocks",
    "size_bytes",
];

/// One `pg_stat_database` row, without its time and instance.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseStats {
    pub datid: i64,
    pub datname: String,
    pub numbackends: Option<i32>,
    /// Values of [`DATABASE_COUNTERS`], in that order; None = not collected.
    pub counters: [Option<i64>; 14],
    pub stats_reset: Option<DateTime<Utc>>,
}

impl TryFrom<v1::DatabaseRow> for DatabaseStats {
    type Error = FieldError;

    fn try_from(row: v1::DatabaseRow) -> Result<Self, Self::Error> {
        if row.datname.is_empty() {
            return Err(invalid("datname", "must not be empty"));
        }
        if row.datname.len() > MAX_IDENTIFIER_BYTES || row.datname.contains('\0') {
            return Err(invalid(
                "datname",
                "must be at most 63 bytes without NUL characters",
            ));
        }
        let numbackends =
            row.numbackends
                .map(|n| {
                    i32::try_from(n).ok().filter(|n| *n >= 0).ok_or_else(|| {
                        invalid("numbackends", format!("{n} is not within 0..=2^31-1"))
                    })
                })
                .transpose()?;
        let counters = [
            row.xact_commit,
            row.xact_rollback,
            row.blks_read,
            row.blks_hit,
            row.tup_returned,
            row.tup_fetched,
            row.tup_inserted,
            row.tup_updated,
            row.tup_deleted,
            row.conflicts,
            row.temp_files,
            row.temp_bytes,
            row.deadlocks,
            row.size_bytes,
        ];
        for (name, value) in DATABASE_COUNTERS.iter().zip(counters) {
            if let Some(v) = value.filter(|v| *v < 0) {
                return Err(invalid(name, format!("must not be negative, got {v}")));
            }
        }
        let stats_reset = row
            .stats_reset_unix_micros
            .map(|micros| {
                DateTime::from_timestamp_micros(micros)
                    .filter(|t| (1970..=9999).contains(&chrono::Datelike::year(t)))
                    .ok_or_else(|| {
                        invalid(
                            "stats_reset_unix_micros",
                            format!("{micros} is not a time between 1970 and 9999"),
                        )
                    })
            })
            .transpose()?;
        Ok(Self {
            datid: i64::from(row.datid),
            datname: row.datname,
            numbackends,
            counters,
            stats_reset,
        })
    }
}

/// A `HostCpu` sample, without its time.
#[derive(Debug, Clone, PartialEq)]
pub struct HostCpu {
    pub cpu_count: i32,
    pub usage_percent: f64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
}

impl TryFrom<v1::HostCpu> for HostCpu {
    type Error = FieldError;

    fn try_from(cpu: v1::HostCpu) -> Result<Self, Self::Error> {
        let cpu_count = i32::try_from(cpu.cpu_count)
            .map_err(|_| invalid("cpu_count", format!("{} is too large", cpu.cpu_count)))?;
        if !(cpu.usage_percent.is_finite() && (0.0..=100.0).contains(&cpu.usage_percent)) {
            return Err(invalid(
                "usage_percent",
                format!("must be within 0..=100, got {}", cpu.usage_percent),
            ));
        }
        for (name, load) in [
            ("load1", cpu.load1),
            ("load5", cpu.load5),
            ("load15", cpu.load15),
        ] {
            if !(load.is_finite() && load >= 0.0) {
                return Err(invalid(
                    name,
                    format!("must be a finite number >= 0, got {load}"),
                ));
            }
        }
        Ok(Self {
            cpu_count,
            usage_percent: cpu.usage_percent,
            load1: cpu.load1,
            load5: cpu.load5,
            load15: cpu.load15,
        })
    }
}

/// A `HostMemory` sample, without its time; columns in table order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMemory {
    /// total, used, available, free, swap_total, swap_used (bytes).
    pub bytes: [i64; 6],
}

/// Columns of `metric_host_memory` after `agent_id`, in table order.
pub const HOST_MEMORY_COLUMNS: [&str; 6] = [
    "total_bytes",
    "used_bytes",
    "available_bytes",
    "free_bytes",
    "swap_total_bytes",
    "swap_used_bytes",
];

impl TryFrom<v1::HostMemory> for HostMemory {
    type Error = FieldError;

    fn try_from(mem: v1::HostMemory) -> Result<Self, Self::Error> {
        let values = [
            mem.total_bytes,
            mem.used_bytes,
            mem.available_bytes,
            mem.free_bytes,
            mem.swap_total_bytes,
            mem.swap_used_bytes,
        ];
        let mut bytes = [0i64; 6];
        for ((slot, value), name) in bytes.iter_mut().zip(values).zip(HOST_MEMORY_COLUMNS) {
            *slot = i64::try_from(value)
                .map_err(|_| invalid(name, format!("{value} does not fit a bigint")))?;
        }
        Ok(Self { bytes })
    }
}
