//! One spool record: the byte layout of a batch on disk, and its checks.
//!
//! ```text
//! offset size field
//!      0    4 body_len        u32 LE, bytes after the 8-byte frame (28..=MAX_BODY)
//!      4    4 crc32c          u32 LE, CRC32C (Castagnoli) of the body
//!      8    1 version         record format version (1)
//!      9    1 priority        0 = metrics (droppable); >0 never dropped
//!     10    1 codec           `lasect.v1.Codec` of the payload (1 = LZ4 block, 2 = zstd + dictionary v1)
//!     11    1 reserved        0
//!     12    8 seq             u64 LE, the batch seq
//!     20    8 created         i64 LE, µs since the Unix epoch, when the batch was made
//!     28    4 sample_count    u32 LE
//!     32    4 uncompressed    u32 LE, plaintext size of the payload
//!     36    n payload         the compressed batch exactly as sent on the wire
//! ```
//!
//! The CRC covers every body byte, so a record whose CRC matches is exactly
//! what was written; a length that is out of range or runs past the end of
//! the data is reported without reading any further.

use lasect_proto::payload::CompressedBatch;
use lasect_proto::v1::Codec;

use crate::outbox::OutboxEntry;

/// Bytes before the body: length and CRC.
pub const FRAME_LEN: usize = 8;
/// Fixed part of the body before the payload.
pub const BODY_HEADER_LEN: usize = 28;
/// Largest body accepted when reading; a length beyond it is damage, not a batch.
pub const MAX_BODY: usize = 64 << 20;
/// The record format this code writes and reads.
pub const RECORD_VERSION: u8 = 1;

/// What a record says about its batch, without the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    pub seq: u64,
    pub priority: u8,
    pub created_unix_micros: i64,
    pub sample_count: u32,
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The data ends inside the record: a torn write.
    #[error("truncated record ({have} of {need} bytes)")]
    Truncated { have: usize, need: usize },
    #[error("record length {0} is out of range")]
    BadLength(u32),
    #[error("record checksum mismatch")]
    BadCrc,
    #[error("unsupported record version {0}")]
    BadVersion(u8),
    #[error("unknown codec {0}")]
    BadCodec(u8),
}

impl RecordError {
    /// Whether the data simply stops early (a torn tail), as opposed to
    /// bytes that are present but wrong.
    pub fn is_truncation(&self) -> bool {
        matches!(self, Self::Truncated { .. })
    }
}

/// Encodes an entry into a full record (frame + body).
pub fn encode(entry: &OutboxEntry) -> Vec<u8> {
    let payload = &entry.batch.payload;
    let body_len = BODY_HEADER_LEN + payload.len();
    let mut out = Vec::with_capacity(FRAME_LEN + body_len);
    // A payload over 4 GiB cannot come from payload::encode (it fails first).
    out.extend_from_slice(&u32::try_from(body_len).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(RECORD_VERSION);
    out.push(entry.priority);
    out.push(u8::try_from(entry.batch.codec as i32).unwrap_or(0));
    out.push(0);
    out.extend_from_slice(&entry.seq.to_le_bytes());
    out.extend_from_slice(&entry.created_unix_micros.to_le_bytes());
    out.extend_from_slice(&entry.sample_count.to_le_bytes());
    out.extend_from_slice(&entry.batch.uncompressed_size.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[FRAME_LEN..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Reads the record at the start of `data`: the entry and the record's total
/// length, or why there is no valid record there.
pub fn decode(data: &[u8]) -> Result<(OutboxEntry, usize), RecordError> {
    let (meta, total) = check(data)?;
    let body = &data[FRAME_LEN..total];
    let codec = codec_of(body[2])?;
    let entry = OutboxEntry {
        seq: meta.seq,
        priority: meta.priority,
        created_unix_micros: meta.created_unix_micros,
        sample_count: meta.sample_count,
        batch: CompressedBatch {
            codec,
            uncompressed_size: u32_at(body, 24),
            payload: body[BODY_HEADER_LEN..].to_vec(),
        },
    };
    Ok((entry, total))
}

/// Validates the record at the start of `data` (length, CRC, version, codec) and
/// returns its metadata and total length.
pub fn check(data: &[u8]) -> Result<(RecordMeta, usize), RecordError> {
    if data.len() < FRAME_LEN {
        return Err(RecordError::Truncated {
            have: data.len(),
            need: FRAME_LEN,
        });
    }
    let body_len = u32_at(data, 0);
    let body_usize = body_len as usize;
    if !(BODY_HEADER_LEN..=MAX_BODY).contains(&body_usize) {
        return Err(RecordError::BadLength(body_len));
    }
    let total = FRAME_LEN + body_usize;
    if data.len() < total {
        return Err(RecordError::Truncated {
            have: data.len(),
            need: total,
        });
    }
    let body = &data[FRAME_LEN..total];
    if crc32c::crc32c(body) != u32_at(data, 4) {
        return Err(RecordError::BadCrc);
    }
    if body[0] != RECORD_VERSION {
        return Err(RecordError::BadVersion(body[0]));
    }
    codec_of(body[2])?;
    let meta = RecordMeta {
        priority: body[1],
        seq: u64::from_le_bytes(array_at(body, 4)),
        created_unix_micros: i64::from_le_bytes(array_at(body, 12)),
        sample_count: u32_at(body, 20),
    };
    Ok((meta, total))
}

fn codec_of(byte: u8) -> Result<Codec, RecordError> {
    match Codec::try_from(i32::from(byte)) {
        Ok(c @ (Codec::Lz4 | Codec::ZstdDictV1)) => Ok(c),
        _ => Err(RecordError::BadCodec(byte)),
    }
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array_at(data, at))
}

/// Callers have checked that `data` holds `at + N` bytes.
fn array_at<const N: usize>(data: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&data[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn entry(seq: u64, payload_len: usize) -> OutboxEntry {
        OutboxEntry {
            seq,
            priority: 0,
            created_unix_micros: 1_700_000_000_000_000 + i64::try_from(seq).expect("small"),
            sample_count: 3,
            batch: CompressedBatch {
                codec: Codec::Lz4,
                uncompressed_size: 77,
                payload: (0..payload_len).map(|i| (i % 251) as u8).collect(),
            },
        }
    }

    #[test]
    fn round_trip() {
        let e = entry(42, 100);
        let bytes = encode(&e);
        assert_eq!(bytes.len(), FRAME_LEN + BODY_HEADER_LEN + 100);
        let (back, len) = decode(&bytes).expect("decode");
        assert_eq!((back, len), (e, bytes.len()));
    }

    #[test]
    fn a_batch_of_the_agents_codec_round_trips() {
        let batch = lasect_proto::payload::encode(&lasect_proto::v1::SampleBatch::default())
            .expect("encode");
        assert_eq!(batch.codec, Codec::ZstdDictV1);
        let e = OutboxEntry {
            batch,
            ..entry(7, 0)
        };
        let bytes = encode(&e);
        assert_eq!(check(&bytes).map(|(meta, _)| meta.seq), Ok(7));
        let (back, len) = decode(&bytes).expect("decode");
        assert_eq!((back, len), (e, bytes.len()));
    }

    #[test]
    fn damage_is_detected() {
        let bytes = encode(&entry(1, 10));
        assert!(
            decode(&bytes[..bytes.len() - 1])
                .expect_err("short")
                .is_truncation()
        );
        assert!(decode(&bytes[..3]).expect_err("short").is_truncation());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            let err = decode(&bad).expect_err("a flipped bit must be detected");
            assert!(!matches!(err, RecordError::BadCodec(_)), "{err}");
        }
        // A CRC-valid record of an unknown codec (found by fuzzing) is not
        // reported as a record by `check` either, so scanning stops there.
        let mut other_codec = bytes.clone();
        other_codec[10] = 0;
        let crc = crc32c::crc32c(&other_codec[FRAME_LEN..]);
        other_codec[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(check(&other_codec), Err(RecordError::BadCodec(0)));
        let mut huge = bytes.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge), Err(RecordError::BadLength(u32::MAX)));
    }
}
