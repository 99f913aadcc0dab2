//! Delta pushes (`PushRequest.delta_crc32c`): which earlier samples a batch
//! is coded against, on both ends.
//!
//! - The agent ([`SenderBases`]) codes each sample of a batch against the
//!   two newest samples of the same instance and family that ingest
//!   acknowledged *and kept* on the current connection.
//! - Ingest ([`ReceiverBases`], one per agent) keeps, per instance and
//!   family, the [`KEPT_PER_KEY`] newest samples (by seq) of the batches the
//!   agent offered as bases (`PushRequest.offer_base`), and says so in the
//!   ack (`PushAck.kept`); an ingest that never says so never gets a delta.
//!   [`decode_delta_batch`] rebuilds a batch from what it keeps.
//!
//! The agent keeps at most one offered push in flight. So when it names its
//! two newest kept samples of a key as bases, ingest holds at most one
//! newer sample of that key than they, and [`KEPT_PER_KEY`] covers them
//! whatever order the pushes of a window arrive in. Everything else that
//! can go wrong (ingest restarted, memory pressure evicted an agent's
//! bases, another ingest behind a balancer) is caught by ingest, which
//! answers FAILED_PRECONDITION; the agent then forgets its bases and sends
//! that batch whole. A CRC32C of the original batch makes a disagreement
//! about a base's contents an error, never wrong data.

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;

use crate::delta::{self, DeltaError, SampleKey};
use crate::v1::{DeltaBatch, DeltaSample};

/// Samples ingest keeps per agent, instance and family: the agent's two
/// bases and the one offered push that may be in flight.
pub const KEPT_PER_KEY: usize = 3;

/// One kept sample: where it came from and its encoded bytes.
#[derive(Debug, Clone)]
struct Kept {
    seq: u64,
    index: u32,
    sample: Arc<[u8]>,
}

/// A batch ready to be sent as a delta push.
#[derive(Debug, Clone)]
pub struct DeltaPayload {
    /// The encoded `DeltaBatch`.
    pub plain: Vec<u8>,
    /// CRC32C of the original encoded `SampleBatch`.
    pub crc32c: u32,
    /// Samples coded against at least one base; 0 means the delta form
    /// gains nothing over sending the batch whole.
    pub coded_samples: usize,
}

#[derive(Debug, Default, Clone)]
struct SenderKey {
    /// The newest kept sample, then the one before.
    newer: Option<Kept>,
    older: Option<Kept>,
}

/// The agent's side: bases per key, on one connection.
#[derive(Debug, Default, Clone)]
pub struct SenderBases {
    keys: HashMap<SampleKey, SenderKey>,
}

impl SenderBases {
    /// Forgets every base (a new connection, or ingest missed a base).
    pub fn reset(&mut self) {
        self.keys.clear();
    }

    /// Codes the encoded `SampleBatch` `plain` of batch `seq` against the
    /// bases kept before it.
    pub fn encode(&mut self, seq: u64, plain: &[u8]) -> Result<DeltaPayload, DeltaError> {
        self.encode_in(delta::Format::CURRENT, seq, plain)
    }

    /// [`encode`](Self::encode) in a given format (what agents of an older
    /// format send, for tests of ingest).
    pub fn encode_in(
        &mut self,
        format: delta::Format,
        seq: u64,
        plain: &[u8],
    ) -> Result<DeltaPayload, DeltaError> {
        let samples = delta::split_batch(plain)?;
        let mut batch = DeltaBatch {
            samples: Vec::with_capacity(samples.len()),
            format: format.to_wire(),
        };
        let mut coded_samples = 0;
        for sample in samples {
            let key = delta::sample_key(sample);
            let state = key.as_ref().and_then(|k| self.keys.get(k));
            let pick = |base: &Option<Kept>| base.as_ref().filter(|b| b.seq < seq).cloned();
            let (newer, older) = match state {
                Some(s) => match (pick(&s.newer), pick(&s.older)) {
                    (Some(n), o) => (Some(n), o),
                    (None, _) => (None, None),
                },
                None => (None, None),
            };
            let coded = match &newer {
                Some(n) => {
                    coded_samples += 1;
                    delta::encode_sample(
                        sample,
                        Some(&n.sample),
                        older.as_ref().map(|o| &o.sample[..]),
                        format,
                    )?
                }
                None => delta::CodedSample {
                    coded: sample.to_vec(),
                    bits: Vec::new(),
                    rows: Vec::new(),
                },
            };
            let back = |b: &Option<Kept>| b.as_ref().map_or(0, |b| seq - b.seq);
            let index = |b: &Option<Kept>| b.as_ref().map_or(0, |b| b.index);
            batch.samples.push(DeltaSample {
                sample: coded.coded,
                bits: coded.bits,
                rows: coded.rows,
                newer_back: back(&newer),
                newer_index: index(&newer),
                older_back: back(&older),
                older_index: index(&older),
            });
        }
        Ok(DeltaPayload {
            plain: batch.encode_to_vec(),
            crc32c: crc32c::crc32c(plain),
            coded_samples,
        })
    }

    /// Batch `seq` (encoded `SampleBatch` `plain`) was acknowledged and
    /// kept by ingest: its samples become the newest bases of their keys.
    pub fn kept(&mut self, seq: u64, plain: &[u8]) {
        let Ok(samples) = delta::split_batch(plain) else {
            return;
        };
        for (index, sample) in samples.into_iter().enumerate() {
            let (Some(key), Ok(index)) = (delta::sample_key(sample), u32::try_from(index)) else {
                continue;
            };
            let state = self.keys.entry(key).or_default();
            let kept = Kept {
                seq,
                index,
                sample: Arc::from(sample),
            };
            match &state.newer {
                Some(n) if n.seq >= seq => {
                    // An older ack arriving late: at most a better `older`.
                    if n.seq > seq && state.older.as_ref().is_none_or(|o| o.seq < seq) {
                        state.older = Some(kept);
                    }
                }
                _ => state.older = state.newer.replace(kept),
            }
        }
    }
}

/// Ingest's side, for one agent: the kept samples per key.
#[derive(Debug, Default)]
pub struct ReceiverBases {
    keys: HashMap<SampleKey, Vec<Kept>>,
    bytes: usize,
}

impl ReceiverBases {
    /// Bytes of samples kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keeps the samples of batch `seq` (its encoded samples, in order),
    /// each displacing the oldest of its key beyond [`KEPT_PER_KEY`].
    pub fn keep(&mut self, seq: u64, samples: &[Arc<[u8]>]) {
        for (index, sample) in samples.iter().enumerate() {
            let (Some(key), Ok(index)) = (delta::sample_key(sample), u32::try_from(index)) else {
                continue;
            };
            let list = self.keys.entry(key).or_default();
            if list.iter().any(|k| k.seq == seq && k.index == index) {
                continue;
            }
            self.bytes += sample.len();
            list.push(Kept {
                seq,
                index,
                sample: Arc::clone(sample),
            });
            if list.len() > KEPT_PER_KEY {
                list.sort_by_key(|k| std::cmp::Reverse((k.seq, k.index)));
                for gone in list.drain(KEPT_PER_KEY..) {
                    self.bytes -= gone.sample.len();
                }
            }
        }
    }

    /// The kept sample `index` of batch `seq`.
    pub fn find(&self, seq: u64, index: u32) -> Option<Arc<[u8]>> {
        self.keys
            .values()
            .flatten()
            .find(|k| k.seq == seq && k.index == index)
            .map(|k| Arc::clone(&k.sample))
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DeltaBatchError {
    #[error("not a valid DeltaBatch: {0}")]
    Decode(String),
    #[error(
        "sample {index} names a base this ingest does not hold (seq {seq}, sample {base_index})"
    )]
    MissingBase {
        index: usize,
        seq: u64,
        base_index: u32,
    },
    #[error("sample {index}: {source}")]
    Sample {
        index: usize,
        #[source]
        source: DeltaError,
    },
    #[error("the rebuilt batch does not match its CRC32C (a base differs from the agent's)")]
    Crc,
    #[error("coding format {0} is not known to this ingest")]
    Format(u32),
}

/// A delta push rebuilt.
#[derive(Debug)]
pub struct Rebuilt {
    /// The encoded `SampleBatch`.
    pub batch: Vec<u8>,
    /// Its samples, each its own allocation, ready to be kept.
    pub samples: Vec<Arc<[u8]>>,
}

/// Rebuilds the encoded `SampleBatch` of batch `seq` from the encoded
/// `DeltaBatch` `plain`, with bases from `find(seq, index)`; the result is
/// at most `limit` bytes and matches `crc32c`, or this fails. Returns the
/// batch and its samples (each its own allocation, ready to be kept).
pub fn decode_delta_batch(
    seq: u64,
    plain: &[u8],
    crc32c: u32,
    limit: usize,
    find: impl Fn(u64, u32) -> Option<Arc<[u8]>>,
) -> Result<Rebuilt, DeltaBatchError> {
    let batch = DeltaBatch::decode(plain).map_err(|e| DeltaBatchError::Decode(e.to_string()))?;
    let format =
        delta::Format::from_wire(batch.format).ok_or(DeltaBatchError::Format(batch.format))?;
    let mut out = Vec::with_capacity(plain.len().min(limit));
    let mut samples = Vec::with_capacity(batch.samples.len());
    for (index, coded) in batch.samples.into_iter().enumerate() {
        let base = |back: u64, base_index: u32| -> Result<Option<Arc<[u8]>>, DeltaBatchError> {
            if back == 0 {
                return Ok(None);
            }
            let missing = DeltaBatchError::MissingBase {
                index,
                seq: seq.saturating_sub(back),
                base_index,
            };
            let base_seq = seq.checked_sub(back).ok_or(missing.clone())?;
            find(base_seq, base_index).map(Some).ok_or(missing)
        };
        let newer = base(coded.newer_back, coded.newer_index)?;
        let older = match newer {
            Some(_) => base(coded.older_back, coded.older_index)?,
            None => None,
        };
        let room = limit.saturating_sub(out.len());
        let sample = match &newer {
            Some(n) => delta::decode_sample(
                &delta::CodedParts {
                    coded: &coded.sample,
                    bits: &coded.bits,
                    rows: &coded.rows,
                },
                Some(n),
                older.as_deref(),
                format,
                room,
            )
            .map_err(|source| DeltaBatchError::Sample { index, source })?,
            None if coded.sample.len() <= room => coded.sample,
            None => {
                return Err(DeltaBatchError::Sample {
                    index,
                    source: DeltaError::TooLarge { limit },
                });
            }
        };
        delta::push_sample(&mut out, &sample);
        if out.len() > limit {
            return Err(DeltaBatchError::Sample {
                index,
                source: DeltaError::TooLarge { limit },
            });
        }
        samples.push(Arc::from(sample));
    }
    if crc32c::crc32c(&out) != crc32c {
        return Err(DeltaBatchError::Crc);
    }
    Ok(Rebuilt {
        batch: out,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::sample::Family;
    use crate::v1::{DatabaseRow, DatabaseSnapshot, HostCpu, Sample, SampleBatch};

    fn batch(tick: i64, with_cpu: bool) -> Vec<u8> {
        let time = 1_700_000_000_000_000 + tick * 10_000_000;
        let mut samples = vec![Sample {
            instance: "main".into(),
            time_unix_micros: time,
            family: Some(Family::Database(DatabaseSnapshot {
                databases: (0..5)
                    .map(|i| DatabaseRow {
                        datid: 16_384 + i,
                        datname: format!("db{i}"),
                        xact_commit: Some(1_000 + tick * 77 + i64::from(i)),
                        ..Default::default()
                    })
                    .collect(),
            })),
        }];
        if with_cpu {
            samples.push(Sample {
                instance: String::new(),
                time_unix_micros: time,
                family: Some(Family::HostCpu(HostCpu {
                    cpu_count: 2,
                    usage_percent: tick as f64,
                    ..Default::default()
                })),
            });
        }
        SampleBatch { samples }.encode_to_vec()
    }

    /// Agent and ingest in lock step: every batch after the first is
    /// coded, and rebuilds to its exact bytes.
    #[test]
    fn batches_round_trip_through_both_ends() {
        let (mut sender, mut receiver) = (SenderBases::default(), ReceiverBases::default());
        for seq in 1..30u64 {
            let plain = batch(seq as i64, seq % 3 == 0);
            let delta = sender.encode(seq, &plain).expect("encode");
            if seq > 1 {
                assert!(delta.coded_samples >= 1, "seq {seq}");
            }
            let Rebuilt {
                batch: back,
                samples,
            } = decode_delta_batch(seq, &delta.plain, delta.crc32c, 1 << 20, |s, i| {
                receiver.find(s, i)
            })
            .expect("decode");
            assert_eq!(back, plain);
            receiver.keep(seq, &samples);
            sender.kept(seq, &plain);
        }
        // Two keys, three samples kept each.
        assert_eq!(
            receiver.keys.values().map(Vec::len).sum::<usize>(),
            2 * KEPT_PER_KEY
        );
    }

    /// A window of pushes in flight, one of them offered: whatever order
    /// they arrive in, every base they name is still kept.
    #[test]
    fn bases_named_by_a_window_in_flight_are_all_kept() {
        let (mut sender, mut receiver) = (SenderBases::default(), ReceiverBases::default());
        let mut next = 1u64;
        for round in 0..6 {
            // Eight in flight; the first is offered.
            let window: Vec<_> = (next..next + 8)
                .map(|seq| {
                    let plain = batch(seq as i64, seq % 2 == 0);
                    (seq, sender.encode(seq, &plain).expect("encode"), plain)
                })
                .collect();
            next += 8;
            let offered = window[0].0;
            let arrivals: Vec<_> = if round % 2 == 0 {
                window.iter().rev().collect()
            } else {
                window.iter().collect()
            };
            for (seq, delta, plain) in arrivals {
                if round > 0 {
                    assert!(delta.coded_samples > 0, "seq {seq}");
                }
                let Rebuilt {
                    batch: back,
                    samples,
                } = decode_delta_batch(*seq, &delta.plain, delta.crc32c, 1 << 20, |s, i| {
                    receiver.find(s, i)
                })
                .unwrap_or_else(|e| panic!("seq {seq}: {e}"));
                assert_eq!(&back, plain);
                if *seq == offered {
                    receiver.keep(*seq, &samples);
                    sender.kept(*seq, plain);
                }
            }
        }
    }

    #[test]
    fn a_missing_or_different_base_is_refused_not_misread() {
        let mut sender = SenderBases::default();
        let (a, b) = (batch(1, false), batch(2, false));
        sender.kept(1, &a);
        let delta = sender.encode(2, &b).expect("encode");
        assert_eq!(delta.coded_samples, 1);
        assert!(matches!(
            decode_delta_batch(2, &delta.plain, delta.crc32c, 1 << 20, |_, _| None),
            Err(DeltaBatchError::MissingBase { seq: 1, .. })
        ));
        // Ingest holds something else under seq 1.
        let other: Arc<[u8]> = Arc::from(delta::split_batch(&batch(9, false)).expect("split")[0]);
        assert!(matches!(
            decode_delta_batch(2, &delta.plain, delta.crc32c, 1 << 20, |_, _| Some(
                Arc::clone(&other)
            )),
            Err(DeltaBatchError::Crc)
        ));
        assert!(matches!(
            decode_delta_batch(2, b"\xff\xff", 0, 1 << 20, |_, _| None),
            Err(DeltaBatchError::Decode(_))
        ));
        // A base seq beyond the batch's own is missing, not an underflow.
        let far = DeltaBatch {
            samples: vec![DeltaSample {
                sample: vec![],
                newer_back: u64::MAX,
                ..Default::default()
            }],
            format: delta::Format::CURRENT.to_wire(),
        }
        .encode_to_vec();
        assert!(matches!(
            decode_delta_batch(2, &far, 0, 1 << 20, |_, _| None),
            Err(DeltaBatchError::MissingBase { .. })
        ));
    }

    #[test]
    fn every_known_format_decodes_and_an_unknown_one_is_refused() {
        let (a, b) = (batch(1, false), batch(2, false));
        let kept = |plain: &[u8]| -> Vec<Arc<[u8]>> {
            delta::split_batch(plain)
                .expect("split")
                .into_iter()
                .map(Arc::from)
                .collect()
        };
        let bases = kept(&a);
        let find = |seq: u64, index: u32| (seq == 1).then(|| Arc::clone(&bases[index as usize]));
        for format in [delta::Format::Copied, delta::Format::Referenced] {
            let mut sender = SenderBases::default();
            sender.kept(1, &a);
            let delta = sender.encode_in(format, 2, &b).expect("encode");
            assert_eq!(
                DeltaBatch::decode(&delta.plain[..]).expect("decode").format,
                format.to_wire()
            );
            let rebuilt =
                decode_delta_batch(2, &delta.plain, delta.crc32c, 1 << 20, find).expect("rebuild");
            assert_eq!(rebuilt.batch, b);
        }
        let mut sender = SenderBases::default();
        sender.kept(1, &a);
        let delta = sender.encode(2, &b).expect("encode");
        let mut unknown = DeltaBatch::decode(&delta.plain[..]).expect("decode");
        unknown.format = 9;
        assert!(matches!(
            decode_delta_batch(2, &unknown.encode_to_vec(), delta.crc32c, 1 << 20, find),
            Err(DeltaBatchError::Format(9))
        ));
        // An ingest that knows only format 0 ignores the field: it rebuilds
        // other bytes, which the CRC refuses (the agent then sends it whole).
        unknown.format = 0;
        assert!(matches!(
            decode_delta_batch(2, &unknown.encode_to_vec(), delta.crc32c, 1 << 20, find),
            Err(DeltaBatchError::Crc)
        ));
    }
}
