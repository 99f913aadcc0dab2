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
use std::path::Path;

use anyhow::Context;
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

/// Sizes of consecutive batches of one agent in every encoding.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct WireReport {
    /// `agent` or `database` (generated batches), `real agent` (a spool).
    pub shape: &'static str,
    pub batches: u64,
    pub samples: u64,
    /// Metric rows (generated batches only: the loadgen knows its shape).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    pub protobuf_bytes: u64,
    /// As sent by agents: delta pushes (`DeltaBatch` against the bases kept
    /// from earlier batches), `CODEC_ZSTD_DICT_V3`.
    pub wire_bytes: u64,
    /// The same delta pushes with `CODEC_ZSTD_DICT_V2`, the dictionary
    /// trained on format 0 (what the retrained one gains).
    pub delta_v2_dictionary_bytes: u64,
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
    pub delta_v2_dictionary_bytes_per_sample: f64,
    pub lz4_protobuf_bytes_per_sample: f64,
    pub zstd_no_dictionary_bytes_per_sample: f64,
    pub json_gzip_bytes_per_sample: f64,
    /// Delta pushes and JSON + gzip over the batches after the first
    /// (`None` with a single batch).
    pub steady_wire_bytes_per_sample: Option<f64>,
    pub steady_json_gzip_bytes_per_sample: Option<f64>,
}

const START_MICROS: i64 = 1_700_000_000_000_000;

/// `ticks` consecutive generated batches of [`MEASURED_AGENT`] in `shape`.
pub fn compare(shape: Shape, ticks: u64) -> anyhow::Result<WireReport> {
    let batches = (0..ticks).map(|tick| {
        tick_batch(
            shape,
            MEASURED_AGENT,
            tick,
            START_MICROS + tick as i64 * 10_000_000,
        )
        .encode_to_vec()
    });
    let name = if shape.all_families {
        "agent"
    } else {
        "database"
    };
    let mut report = measure(name, batches)?;
    report.rows = Some((0..ticks).map(|tick| shape.rows_at(tick)).sum());
    Ok(report)
}

/// The batches a real agent left in its spool (`state_dir`, the agent's
/// state dir: an agent that could not reach ingest keeps every batch it
/// took), in seq order, measured as [`compare`] measures generated ones.
/// What the real agent's samples cost on the wire, where the loadgen's
/// figure is the cost of samples shaped like them.
pub fn compare_spool(state_dir: &Path) -> anyhow::Result<WireReport> {
    let mut entries = lasect_agent::spool::read_all(state_dir)
        .with_context(|| format!("read the spool of {}", state_dir.display()))?;
    entries.sort_by_key(|entry| entry.seq);
    anyhow::ensure!(
        !entries.is_empty(),
        "the spool of {} holds no batch",
        state_dir.display()
    );
    let plains = entries
        .iter()
        .map(|entry| {
            payload::decompress(
                entry.batch.codec as i32,
                entry.batch.uncompressed_size,
                &entry.batch.payload,
                usize::MAX,
            )
            .with_context(|| format!("batch {} of the spool", entry.seq))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    measure("real agent", plains)
}

/// Every encoding of `batches` (encoded `SampleBatch`es of one agent, in
/// the order it took them): agent and ingest in steady state, every batch
/// offered and kept.
fn measure(
    shape: &'static str,
    batches: impl IntoIterator<Item = Vec<u8>>,
) -> anyhow::Result<WireReport> {
    let (mut wire, mut whole, mut lz4, mut zstd_plain, mut pb) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut delta_plain, mut delta_v2) = (0u64, 0u64);
    let (mut sender, mut receiver) = (SenderBases::default(), ReceiverBases::default());
    let (mut gz, mut plain, mut samples, mut count) = (0u64, 0u64, 0u64, 0u64);
    // After the first batch, which has no base and carries what an agent
    // sends once (statement texts): what a connected agent pays per push.
    let (mut steady_wire, mut steady_gz, mut steady_samples) = (0u64, 0u64, 0u64);
    for encoded in batches {
        let batch = payload::decode_plain(&encoded)?;
        count += 1;
        samples += batch.samples.len() as u64;
        pb += encoded.len() as u64;
        whole += payload::encode(&batch)?.payload.len() as u64;
        let seq = count;
        let delta = sender.encode(seq, &encoded)?;
        let wire_len = payload::compress(payload::DELTA_CODEC, &delta.plain)?.len() as u64;
        wire += wire_len;
        delta_plain += zstd::bulk::compress(&delta.plain, payload::ZSTD_LEVEL_V2)?.len() as u64;
        delta_v2 += payload::compress(Codec::ZstdDictV2, &delta.plain)?.len() as u64;
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
        let gz_len = encoder.finish()?.len() as u64;
        gz += gz_len;
        if count > 1 {
            steady_wire += wire_len;
            steady_gz += gz_len;
            steady_samples += batch.samples.len() as u64;
        }
    }
    let per = |bytes: u64| bytes as f64 / samples.max(1) as f64;
    let steady_per =
        |bytes: u64| (steady_samples > 0).then(|| bytes as f64 / steady_samples as f64);
    Ok(WireReport {
        shape,
        batches: count,
        samples,
        rows: None,
        protobuf_bytes: pb,
        wire_bytes: wire,
        whole_bytes: whole,
        delta_no_dictionary_bytes: delta_plain,
        delta_v2_dictionary_bytes: delta_v2,
        lz4_protobuf_bytes: lz4,
        zstd_no_dictionary_bytes: zstd_plain,
        json_gzip_bytes: gz,
        json_bytes: plain,
        wire_bytes_per_sample: per(wire),
        whole_bytes_per_sample: per(whole),
        delta_no_dictionary_bytes_per_sample: per(delta_plain),
        delta_v2_dictionary_bytes_per_sample: per(delta_v2),
        lz4_protobuf_bytes_per_sample: per(lz4),
        zstd_no_dictionary_bytes_per_sample: per(zstd_plain),
        json_gzip_bytes_per_sample: per(gz),
        steady_wire_bytes_per_sample: steady_per(steady_wire),
        steady_json_gzip_bytes_per_sample: steady_per(steady_gz),
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

/// Trains the dictionary of `CODEC_ZSTD_DICT_V3` (`DeltaBatch` format 1,
/// [`lasect_proto::delta::Format::CURRENT`]) on an hour of delta payloads
/// of [`TRAINING_AGENTS`], in both shapes.
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

    /// A spool written by the agent's own code reads back as the batches
    /// it holds, in seq order, whatever order they were pushed in.
    #[test]
    fn a_spool_is_measured_batch_by_batch() {
        use lasect_agent::outbox::{Outbox as _, OutboxEntry};
        use lasect_agent::spool::{Spool, SpoolOptions};

        let dir = tempfile::tempdir().expect("tempdir");
        let shape = Shape::agent(3);
        let spool = Spool::open(dir.path(), SpoolOptions::default()).expect("open");
        for tick in [1u64, 0, 2] {
            let time = START_MICROS + tick as i64 * 10_000_000;
            let batch = tick_batch(shape, MEASURED_AGENT, tick, time);
            spool
                .push(OutboxEntry {
                    seq: tick + 1,
                    priority: 0,
                    created_unix_micros: time,
                    sample_count: batch.samples.len() as u32,
                    batch: payload::encode_with(&batch, Codec::Lz4).expect("encode"),
                })
                .expect("push");
        }
        spool.close();
        let from_spool = compare_spool(dir.path()).expect("spool report");
        let generated = compare(shape, 3).expect("report");
        assert_eq!(from_spool.shape, "real agent");
        assert_eq!(from_spool.rows, None);
        // The same batches in the same order code to the same bytes.
        assert_eq!(
            (
                from_spool.batches,
                from_spool.samples,
                from_spool.wire_bytes
            ),
            (generated.batches, generated.samples, generated.wire_bytes)
        );
        assert_eq!(from_spool.json_gzip_bytes, generated.json_gzip_bytes);
        assert!(from_spool.steady_wire_bytes_per_sample.is_some());

        let empty = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(empty.path().join("spool")).expect("mkdir");
        let error = compare_spool(empty.path()).expect_err("nothing to measure");
        assert!(error.to_string().contains("holds no batch"), "{error}");
        let missing = empty.path().join("no-such-agent");
        let error = compare_spool(&missing).expect_err("no spool");
        assert!(
            format!("{error:#}").contains("read the spool of"),
            "{error:#}"
        );
    }
}
