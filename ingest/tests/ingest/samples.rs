//! Valid samples of every family, timed relative to now.

use lasect_proto::v1::sample::Family;
use lasect_proto::v1::{DatabaseRow, DatabaseSnapshot, HostCpu, HostMemory, InstanceInfo, Sample};

use crate::support::now_micros;

pub const DAY_MICROS: i64 = 86_400_000_000;

pub fn database(instance: &str, time: i64, datnames: &[&str]) -> Sample {
    let databases = datnames
        .iter()
        .zip(1u32..)
        .map(|(name, datid)| DatabaseRow {
            datid,
            datname: (*name).to_owned(),
            numbackends: Some(2),
            xact_commit: Some(100),
            xact_rollback: Some(1),
            blks_hit: Some(5000),
            size_bytes: Some(8 << 20),
            stats_reset_unix_micros: Some(time - DAY_MICROS),
            ..Default::default()
        })
        .collect();
    Sample {
        instance: instance.to_owned(),
        time_unix_micros: time,
        family: Some(Family::Database(DatabaseSnapshot { databases })),
    }
}

pub fn host_cpu(time: i64, usage_percent: f64) -> Sample {
    Sample {
        instance: String::new(),
        time_unix_micros: time,
        family: Some(Family::HostCpu(HostCpu {
            cpu_count: 4,
            usage_percent,
            load1: 0.5,
            load5: 0.25,
            load15: 0.125,
        })),
    }
}

pub fn host_memory(time: i64) -> Sample {
    Sample {
        instance: String::new(),
        time_unix_micros: time,
        family: Some(Family::HostMemory(HostMemory {
            total_bytes: 16 << 30,
            used_bytes: 4 << 30,
            available_bytes: 12 << 30,
            free_bytes: 10 << 30,
            swap_total_bytes: 2 << 30,
            swap_used_bytes: 0,
        })),
    }
}

pub fn instance_info(instance: &str, time: i64) -> Sample {
    Sample {
        instance: instance.to_owned(),
        time_unix_micros: time,
        family: Some(Family::InstanceInfo(InstanceInfo {
            server_version_num: 170_002,
            version: "PostgreSQL 17.2 on x86_64-pc-linux-gnu".to_owned(),
            in_recovery: false,
        })),
    }
}

/// One sample of every family, all for `main` / the host, taken now.
pub fn one_of_each() -> Vec<Sample> {
    let now = now_micros();
    vec![
        database("main", now, &["postgres", "app"]),
        host_cpu(now, 12.5),
        host_memory(now),
        instance_info("main", now),
    ]
}
