//! The fuzz harness of a push (`ingest/fuzz`, and the seeds and property tests of
//! `ingest/tests/push_decode.rs`): one input byte string becomes a push that goes through
//! exactly what the server runs ([`crate::push`]), in one of several modes, and every batch it
//! accepts must keep [`check_invariants`]. Delta pushes are coded against two kept bases the
//! harness builds once.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lasect_proto::bases::DeltaBatchError;
use lasect_proto::delta;
use lasect_proto::payload;

use crate::push::{
    DecodeLimits, Decoded, Payload, PushError, check_invariants, decode_batch, decode_push,
};
use crate::validate::Batch;

/// The batch seq of the harness's delta pushes; seqs 1 and 2 are its
/// kept bases.
const FUZZ_SEQ: u64 = 3;

/// An encoded batch of the families agents send most, at tick `tick`.
fn fuzz_base(tick: i64) -> Vec<u8> {
    use lasect_proto::v1::sample::Family;
    use lasect_proto::v1::{DatabaseRow, DatabaseSnapshot, HostCpu, Sample, SampleBatch};
    use prost::Message as _;
    let time = 1_749_999_000_000_000 + tick * 10_000_000;
    SampleBatch {
        samples: vec![
            Sample {
                instance: "main".into(),
                time_unix_micros: time,
                family: Some(Family::Database(DatabaseSnapshot {
                    databases: (0..3)
                        .map(|i| DatabaseRow {
                            datid: 16_384 + i,
                            datname: format!("db{i}"),
                            xact_commit: Some(1_000 * tick + i64::from(i)),
                            numbackends: Some(3),
                            ..Default::default()
                        })
                        .collect(),
                })),
            },
            Sample {
                instance: String::new(),
                time_unix_micros: time,
                family: Some(Family::HostCpu(HostCpu {
                    cpu_count: 4,
                    usage_percent: 10.0,
                    ..Default::default()
                })),
            },
        ],
    }
    .encode_to_vec()
}

/// Both ends of the harness's delta pushes, with batches 1 and 2 kept.
fn fuzz_bases() -> &'static (
    lasect_proto::bases::SenderBases,
    lasect_proto::bases::ReceiverBases,
) {
    use lasect_proto::bases::{ReceiverBases, SenderBases};
    static BASES: std::sync::OnceLock<(SenderBases, ReceiverBases)> = std::sync::OnceLock::new();
    BASES.get_or_init(|| {
        let (mut sender, mut receiver) = (SenderBases::default(), ReceiverBases::default());
        for seq in 1..=2u64 {
            let plain = fuzz_base(seq as i64);
            if let Ok(parts) = delta::split_batch(&plain) {
                let parts: Vec<Arc<[u8]>> = parts.into_iter().map(Arc::from).collect();
                receiver.keep(seq, &parts);
            }
            sender.kept(seq, &plain);
        }
        (sender, receiver)
    })
}

/// A mode-4 fuzz input (a raw `DeltaBatch` and its CRC32C) that codes the
/// encoded `SampleBatch` `plain` against the harness's bases: the seed of
/// that mode.
pub fn delta_seed(plain: &[u8]) -> Option<Vec<u8>> {
    let coded = fuzz_bases().0.clone().encode(FUZZ_SEQ, plain).ok()?;
    let mut seed = vec![4u8];
    seed.extend(coded.crc32c.to_le_bytes());
    seed.extend(coded.plain);
    Some(seed)
}

/// A delta push of the encoded `DeltaBatch` `plain` with `crc32c`,
/// compressed as agents do, decoded against the harness's bases.
fn fuzz_delta(
    plain: &[u8],
    crc32c: u32,
    limits: DecodeLimits,
    now: DateTime<Utc>,
) -> Result<Decoded, PushError> {
    let codec = payload::DELTA_CODEC;
    let bytes = payload::compress(codec, plain)?;
    let push = Payload {
        seq: FUZZ_SEQ,
        codec: codec as i32,
        uncompressed_size: u32::try_from(plain.len()).unwrap_or(u32::MAX),
        bytes: &bytes,
        delta_crc32c: Some(crc32c),
        offer_base: true,
    };
    let (_, receiver) = fuzz_bases();
    decode_push(push, limits, now, |seq, index| receiver.find(seq, index))
}

/// One fuzz input: the first byte picks how the rest is used, so the fuzzer
/// reaches the decompressors (raw payloads with any codec and declared
/// size), validation (a protobuf the harness compresses correctly) and the
/// rebuilding of delta pushes (a raw `DeltaBatch` against the harness's
/// bases; a protobuf the harness codes as a delta, which must decode to
/// what it decodes to whole).
/// Returns the decode result, or `Err` naming the broken invariant when an
/// accepted batch does not keep [`check_invariants`] (the callers' bug
/// report).
pub fn one(data: &[u8], now: DateTime<Utc>) -> Result<Result<Batch, PushError>, String> {
    use lasect_proto::v1::Codec;
    let limits = DecodeLimits {
        max_uncompressed_bytes: 1 << 20,
        max_samples_per_batch: 10_000,
    };
    let (mode, rest) = data.split_first().unwrap_or((&0, &[]));
    let result = match mode % 6 {
        // A protobuf SampleBatch, compressed as an agent would.
        0 | 1 => {
            let codec = if mode % 4 == 0 {
                Codec::ZstdDictV1
            } else {
                Codec::Lz4
            };
            let payload = match payload::compress(codec, rest) {
                Ok(p) => p,
                Err(e) => return Ok(Err(e.into())),
            };
            let size = u32::try_from(rest.len()).unwrap_or(u32::MAX);
            decode_batch(codec as i32, size, &payload, limits, now)
        }
        // A raw payload: codec and declared size from the next bytes.
        2 | 3 => {
            let codec = i32::from(rest.first().copied().unwrap_or(0) % 5);
            let size = rest
                .get(1..4)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], 0]));
            let payload = rest.get(4..).unwrap_or_default();
            decode_batch(codec, size, payload, limits, now)
        }
        // A raw DeltaBatch, its CRC32C in the first 4 bytes.
        4 => {
            let crc = rest
                .get(..4)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            fuzz_delta(rest.get(4..).unwrap_or_default(), crc, limits, now).map(|d| d.batch)
        }
        // A SampleBatch coded as a delta by the harness.
        _ => {
            let whole = payload::compress(payload::DEFAULT_CODEC, rest)
                .map_err(PushError::from)
                .and_then(|bytes| {
                    let size = u32::try_from(rest.len()).unwrap_or(u32::MAX);
                    decode_batch(payload::DEFAULT_CODEC as i32, size, &bytes, limits, now)
                });
            let mut sender = fuzz_bases().0.clone();
            let Ok(coded) = sender.encode(FUZZ_SEQ, rest) else {
                // The codec takes what agents send (canonical protobuf); an
                // agent sends anything else whole.
                return Ok(whole);
            };
            let delta = fuzz_delta(&coded.plain, coded.crc32c, limits, now).map(|d| d.batch);
            match (&delta, &whole) {
                (Ok(d), Ok(w)) if d.rows() != w.rows() => {
                    return Err(format!(
                        "the delta push stores {} rows, the whole batch {}",
                        d.rows(),
                        w.rows()
                    ));
                }
                (Ok(_), Err(e)) => {
                    return Err(format!("a delta push is accepted whole refuses: {e}"));
                }
                // Input prost would encode otherwise: the rebuilt bytes
                // differ from it, which the CRC catches.
                (Err(PushError::Delta(DeltaBatchError::Crc)), Ok(_)) => {}
                (Err(e), Ok(_)) => return Err(format!("a valid batch fails as a delta: {e}")),
                _ => {}
            }
            delta
        }
    };
    if let Ok(batch) = &result {
        check_invariants(batch)?;
    }
    Ok(result)
}
