//! The decoding half of a push, apart from the gRPC service so that tests
//! and the fuzz target (`ingest/fuzz`, through `crate::fuzz_harness`) run
//! exactly what the server runs:
//! size-limited decompression of any codec, the rebuilding of a delta push
//! from the bases ingest keeps, protobuf decoding, then validation of every
//! sample into store-ready rows (all or nothing).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lasect_proto::bases::{DeltaBatchError, Rebuilt, decode_delta_batch};
use lasect_proto::delta;
use lasect_proto::payload::{self, PayloadError};

use crate::validate::{Batch, BatchError, Rules};

/// The limits a payload is decoded under.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_uncompressed_bytes: usize,
    pub max_samples_per_batch: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A delta push this ingest cannot rebuild: the agent should send the
    /// batch whole (FAILED_PRECONDITION, never a refusal of the batch).
    #[error("cannot rebuild the delta push: {0}")]
    Delta(#[from] DeltaBatchError),
}

/// A push's payload as received.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    pub seq: u64,
    pub codec: i32,
    pub uncompressed_size: u32,
    pub bytes: &'a [u8],
    /// `PushRequest.delta_crc32c`: the payload is a `DeltaBatch`.
    pub delta_crc32c: Option<u32>,
    /// `PushRequest.offer_base`: return the samples to keep as bases.
    pub offer_base: bool,
}

/// A decoded push.
#[derive(Debug)]
pub struct Decoded {
    pub batch: Batch,
    /// The encoded samples, when the push offered them as bases.
    pub samples: Option<Vec<Arc<[u8]>>>,
}

/// Decompresses, rebuilds (a delta push, with bases from `find`), decodes
/// and validates a push received at `now`.
pub fn decode_push(
    push: Payload<'_>,
    limits: DecodeLimits,
    now: DateTime<Utc>,
    find: impl Fn(u64, u32) -> Option<Arc<[u8]>>,
) -> Result<Decoded, PushError> {
    let mut plain = payload::decompress(
        push.codec,
        push.uncompressed_size,
        push.bytes,
        limits.max_uncompressed_bytes,
    )?;
    let mut samples = None;
    if let Some(crc32c) = push.delta_crc32c {
        let Rebuilt {
            batch: rebuilt,
            samples: parts,
        } = decode_delta_batch(
            push.seq,
            &plain,
            crc32c,
            limits.max_uncompressed_bytes,
            find,
        )?;
        plain = rebuilt;
        samples = push.offer_base.then_some(parts);
    } else if push.offer_base {
        let parts = delta::split_batch(&plain).map_err(|e| PayloadError::Decode(e.to_string()))?;
        samples = Some(parts.into_iter().map(Arc::from).collect());
    }
    let decoded = payload::decode_plain(&plain)?;
    let rules = Rules {
        max_samples: limits.max_samples_per_batch,
        now,
    };
    Ok(Decoded {
        batch: Batch::from_samples(decoded, &rules)?,
        samples,
    })
}

/// Decompresses, decodes and validates the payload of a push received at
/// `now`.
pub fn decode_batch(
    codec: i32,
    uncompressed_size: u32,
    payload: &[u8],
    limits: DecodeLimits,
    now: DateTime<Utc>,
) -> Result<Batch, PushError> {
    let push = Payload {
        seq: 0,
        codec,
        uncompressed_size,
        bytes: payload,
        delta_crc32c: None,
        offer_base: false,
    };
    Ok(decode_push(push, limits, now, |_, _| None)?.batch)
}

/// What the writer relies on in a validated batch: every row has one value
/// per column of its table, of the column's type; instance-keyed rows point
/// at an instance of the batch and host rows at none; statement texts point
/// at an instance. `decode_batch` only returns batches that pass; the fuzz
/// target and the property tests check that it does.
pub fn check_invariants(batch: &Batch) -> Result<(), String> {
    use crate::validate::schema::Key;
    for t in &batch.tables {
        for (i, row) in t.rows.iter().enumerate() {
            if row.values.len() != t.table.columns.len() {
                return Err(format!(
                    "{} row {i}: {} values",
                    t.table.name,
                    row.values.len()
                ));
            }
            for ((name, ty), value) in t.table.columns.iter().zip(&row.values) {
                if value.column_type() != *ty {
                    return Err(format!("{}.{name} row {i}: {value:?}", t.table.name));
                }
            }
            let keyed = match t.table.key {
                Key::Instance => row.instance.is_some_and(|k| k < batch.instances.len()),
                Key::Agent => row.instance.is_none(),
            };
            if !keyed {
                return Err(format!(
                    "{} row {i}: instance {:?}",
                    t.table.name, row.instance
                ));
            }
        }
    }
    if let Some(text) = batch
        .statement_texts
        .iter()
        .find(|t| t.instance >= batch.instances.len())
    {
        return Err(format!("statement text of instance #{}", text.instance));
    }
    Ok(())
}
