//! `wire_bytes_per_sample`: what one agent's batches cost on the wire as
//! sent (protobuf compressed with the agents' codec), against the same
//! samples as JSON compressed with gzip (how JSON-over-HTTP collectors ship
//! metrics).
//!
//! Both encodings carry the same samples, batch by batch (one batch per
//! tick, as sent): the JSON document of a batch is the `SampleBatch` with
//! the protobuf field names (serde of the generated messages, `null` for
//! absent values), gzip at the default level. The other codecs are
//! reported beside it (LZ4, what agents sent before; zstd without the
//! dictionary, to show what the dictionary adds).
//!
//! The dictionary of `CODEC_ZSTD_DICT_V1` was trained by [`train`] on
//! agents [`TRAINING_AGENTS`], never on the agent measured here
//! ([`MEASURED_AGENT`]): the structure is shared, the values are not.

use std::io::Write;
use std::ops::Range;

use flate2::Compression;
use flate2::write::GzEncoder;
use lasect_proto::bases::{Rebuilt, ReceiverBases, SenderBases, decode_delta_batch};
use lasect_proto::payload::{self, ZSTD_LEVEL};
use lasect_proto::v1::Codec;
use prost::Message;

use crate::batch::{Shape, tick_batch};

/// The agent whose batches are measured.
pub const MEASURED_AGENT: u64 = 1;
/// The agents whose batches train the dictionary.
pub const TRAINING_AGENTS: Range<u64> = 1_000..1_040;
/// Size of the trained dictionary: larger ones gained little on these batches.
pub const DICTIONARY_BYTES: usize = 32 << 10;

/// Sizes of `ticks` consecutive batches of one agent in every encoding.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct WireReport {
    pub shape: &'static str,
    pub batches: u64,
    pub samples: u64,
    pub rows: u64,
    pub protobuf_bytes: u64,
    /// As sent by agents: delta pushes (`DeltaBatch` against the bases kept
    /// from earlier batches), `CODEC_ZSTD_DICT_V1`.
    pub wire_bytes: u64,
    /// Whole batches (`SampleBatch`), `CODEC_ZSTD_DICT_V1`: an agent's
    /// first push on a connection.
    pub whole_bytes: u64,
    /// The delta pushes compressed without the dictionary (what the
    /// dictionary, trained on loadgen batches, adds).
    pub delta_no_dictionary_bytes: u64,
    pub lz4_protobuf_bytes: u64,
    pub zstd_no_dictionary_bytes: u64,
    pub json_gzip_bytes: u64,
    pub json_bytes: u64,
    pub wire_bytes_per_sample: f64,
    pub whole_bytes_per_sample: f64,
    pub delta_no_dictionary_bytes_per_sample: f64,
    pub lz4_protobuf_bytes_per_sample: f64,
    pub zstd_no_dictionary_bytes_per_sample: f64,
    pub json_gzip_bytes_per_sample: f64,
}

const START_MICROS: i64 = 1_700_000_000_000_000;

pub fn compare(shape: Shape, ticks: u64) -> anyhow::Result<WireReport> {
    let (mut wire, mut whole, mut lz4, mut zstd_plain, mut pb) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut delta_plain = 0u64;
    // Agent and ingest in steady state: every batch offered and kept.
    let (mut sender, mut receiver) = (SenderBases::default(), ReceiverBases::default());
    let (mut gz, mut plain, mut samples, mut rows) = (0u64, 0u64, 0u64, 0u64);
    for tick in 0..ticks {
        let batch = tick_batch(
            shape,
            MEASURED_AGENT,
            tick,
            START_MICROS + tick as i64 * 10_000_000,
        );
        samples += batch.samples.len() as u64;
        rows += shape.rows_at(tick);
        let encoded = batch.encode_to_vec();
        pb += encoded.len() as u64;
        whole += payload::encode(&batch)?.payload.len() as u64;
        let seq = tick + 1;
        let delta = sender.encode(seq, &encoded)?;
        wire += payload::compress(payload::DELTA_CODEC, &delta.plain)?.len() as u64;
        delta_plain += zstd::bulk::compress(&delta.plain, payload::ZSTD_LEVEL_V2)?.len() as u64;
        // What ingest does with it: rebuilt exactly, then kept.
        let Rebuilt {
            batch: rebuilt,
            samples: kept,
        } = decode_delta_batch(seq, &delta.plain, delta.crc32c, usize::MAX, |s, i| {
            receiver.find(s, i)
        })?;
        anyhow::ensure!(
            rebuilt == encoded,
            "batch {seq} did not rebuild to its bytes"
        );
        receiver.keep(seq, &kept);
        sender.kept(seq, &encoded);
        lz4 += payload::compress(Codec::Lz4, &encoded)?.len() as u64;
        zstd_plain += zstd::bulk::compress(&encoded, ZSTD_LEVEL)?.len() as u64;
        let text = serde_json::to_vec(&batch)?;
        plain += text.len() as u64;
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(&text)?;
        gz += encoder.finish()?.len() as u64;
    }
    let per = |bytes: u64| bytes as f64 / samples.max(1) as f64;
    Ok(WireReport {
        shape: if shape.all_families {
            "agent"
        } else {
            "database"
        },
        batches: ticks,
        samples,
        rows,
        protobuf_bytes: pb,
        wire_bytes: wire,
        whole_bytes: whole,
        delta_no_dictionary_bytes: delta_plain,
        lz4_protobuf_bytes: lz4,
        zstd_no_dictionary_bytes: zstd_plain,
        json_gzip_bytes: gz,
        json_bytes: plain,
        wire_bytes_per_sample: per(wire),
        whole_bytes_per_sample: per(whole),
        delta_no_dictionary_bytes_per_sample: per(delta_plain),
        lz4_protobuf_bytes_per_sample: per(lz4),
        zstd_no_dictionary_bytes_per_sample: per(zstd_plain),
        json_gzip_bytes_per_sample: per(gz),
    })
}

/// The `DeltaBatch` payloads of an hour of `agent`'s batches in `shape`,
/// each coded against the batches before it (every one kept by ingest).
fn delta_payloads(shape: Shape, agent: u64) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut sender = SenderBases::default();
    (0..360u64)
        .map(|tick| {
            let time = START_MICROS + tick as i64 * 10_000_000;
            let encoded = tick_batch(shape, agent, tick, time).encode_to_vec();
            let delta = sender.encode(tick + 1, &encoded)?;
            sender.kept(tick + 1, &encoded);
            Ok(delta.plain)
        })
        .collect()
}

/// Trains the dictionary of `CODEC_ZSTD_DICT_V2` on an hour of delta
/// payloads of [`TRAINING_AGENTS`], in both shapes.
pub fn train_delta(databases: u32) -> anyhow::Result<Vec<u8>> {
    let mut samples = Vec::new();
    for agent in TRAINING_AGENTS {
        for shape in [Shape::agent(databases), Shape::database_only(databases)] {
            samples.extend(delta_payloads(shape, agent)?);
        }
    }
    Ok(zstd::dict::from_samples(&samples, DICTIONARY_BYTES)?)
}

/// Trains the dictionary of `CODEC_ZSTD_DICT_V1` on an hour of batches of
/// [`TRAINING_AGENTS`], in both shapes.
pub fn train(databases: u32) -> anyhow::Result<Vec<u8>> {
    let mut samples = Vec::new();
    for agent in TRAINING_AGENTS {
        for shape in [Shape::agent(databases), Shape::database_only(databases)] {
            for tick in 0..360 {
                let time = START_MICROS + tick as i64 * 10_000_000;
                samples.push(tick_batch(shape, agent, tick, time).encode_to_vec());
            }
        }
    }
    Ok(zstd::dict::from_samples(&samples, DICTIONARY_BYTES)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_encoding_is_measured() {
        let report = compare(Shape::database_only(10), 3).expect("compare");
        assert_eq!(report.samples, 12);
        assert!(report.wire_bytes > 0 && report.lz4_protobuf_bytes > 0);
        assert!(report.json_gzip_bytes > 0 && report.json_gzip_bytes < report.json_bytes);
        let json = String::from_utf8(
            serde_json::to_vec(&tick_batch(
                Shape::agent(10),
                MEASURED_AGENT,
                0,
                START_MICROS,
            ))
            .expect("json"),
        )
        .expect("utf-8");
        // The JSON carries the same samples: every family of the batch.
        for family in ["Database", "Statement", "Table", "Index", "Wal", "Wait"] {
            assert!(json.contains(&format!("\"{family}\"")), "{family}");
        }
    }
}
