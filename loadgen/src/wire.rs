//! `wire_bytes_per_sample`: what one agent's batches cost on the wire as
//! our LZ4 protobuf, against the same samples as JSON compressed with gzip
//! (how JSON-over-HTTP collectors ship metrics).
//!
//! Both encodings carry the same samples, batch by batch (one batch per
//! tick, as sent): the JSON document of a batch is an array of objects
//! with the protobuf field names, `null` for absent values, gzip at the
//! default level.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use lasect_proto::v1::{SampleBatch, sample::Family};
use serde_json::{Value, json};

use crate::batch::{Shape, tick_batch};

/// Sizes of `ticks` consecutive batches of one agent in both encodings.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct WireReport {
    pub batches: u64,
    pub samples: u64,
    pub rows: u64,
    pub lz4_protobuf_bytes: u64,
    pub json_gzip_bytes: u64,
    pub json_bytes: u64,
    pub lz4_protobuf_bytes_per_sample: f64,
    pub json_gzip_bytes_per_sample: f64,
}

pub fn compare(shape: Shape, ticks: u64) -> anyhow::Result<WireReport> {
    let (mut lz4, mut gz, mut plain, mut samples) = (0u64, 0u64, 0u64, 0u64);
    let start = 1_700_000_000_000_000i64;
    for tick in 0..ticks {
        let batch = tick_batch(shape, 1, tick, start + tick as i64 * 10_000_000);
        samples += batch.samples.len() as u64;
        lz4 += lasect_proto::payload::encode(&batch)?.payload.len() as u64;
        let text = serde_json::to_vec(&to_json(&batch))?;
        plain += text.len() as u64;
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(&text)?;
        gz += encoder.finish()?.len() as u64;
    }
    Ok(WireReport {
        batches: ticks,
        samples,
        rows: ticks * shape.rows_per_batch(),
        lz4_protobuf_bytes: lz4,
        json_gzip_bytes: gz,
        json_bytes: plain,
        lz4_protobuf_bytes_per_sample: lz4 as f64 / samples.max(1) as f64,
        json_gzip_bytes_per_sample: gz as f64 / samples.max(1) as f64,
    })
}

fn to_json(batch: &SampleBatch) -> Value {
    let samples: Vec<Value> = batch
        .samples
        .iter()
        .map(|s| {
            let (family, body) = match &s.family {
                Some(Family::Database(d)) => (
                    "database",
                    json!({ "databases": d.databases.iter().map(|r| json!({
                        "datid": r.datid, "datname": r.datname,
                        "numbackends": r.numbackends, "xact_commit": r.xact_commit,
                        "xact_rollback": r.xact_rollback, "blks_read": r.blks_read,
                        "blks_hit": r.blks_hit, "tup_returned": r.tup_returned,
                        "tup_fetched": r.tup_fetched, "tup_inserted": r.tup_inserted,
                        "tup_updated": r.tup_updated, "tup_deleted": r.tup_deleted,
                        "conflicts": r.conflicts, "temp_files": r.temp_files,
                        "temp_bytes": r.temp_bytes, "deadlocks": r.deadlocks,
                        "size_bytes": r.size_bytes,
                        "stats_reset_unix_micros": r.stats_reset_unix_micros,
                    })).collect::<Vec<_>>() }),
                ),
                Some(Family::HostCpu(c)) => (
                    "host_cpu",
                    json!({ "cpu_count": c.cpu_count, "usage_percent": c.usage_percent,
                            "load1": c.load1, "load5": c.load5, "load15": c.load15 }),
                ),
                Some(Family::HostMemory(m)) => (
                    "host_memory",
                    json!({ "total_bytes": m.total_bytes, "used_bytes": m.used_bytes,
                            "available_bytes": m.available_bytes, "free_bytes": m.free_bytes,
                            "swap_total_bytes": m.swap_total_bytes,
                            "swap_used_bytes": m.swap_used_bytes }),
                ),
                Some(Family::InstanceInfo(i)) => (
                    "instance_info",
                    json!({ "server_version_num": i.server_version_num,
                            "version": i.version, "in_recovery": i.in_recovery }),
                ),
                // Families this generator does not produce.
                Some(_) | None => ("unknown", Value::Null),
            };
            json!({ "instance": s.instance, "time_unix_micros": s.time_unix_micros, family: body })
        })
        .collect();
    json!({ "samples": samples })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_encodings_are_measured() {
        let report = compare(Shape { databases: 10 }, 3).expect("compare");
        assert_eq!(report.samples, 12);
        assert!(report.lz4_protobuf_bytes > 0);
        assert!(report.json_gzip_bytes > 0 && report.json_gzip_bytes < report.json_bytes);
    }
}
