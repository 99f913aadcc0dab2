//! Encoding of a batch payload: protobuf `SampleBatch`, then LZ4 block
//! compression without a size prefix. The plaintext length travels beside the
//! payload (`PushRequest.uncompressed_size`) so the receiver can refuse an
//! oversized batch before allocating or decompressing anything.

use prost::Message;

use crate::v1::{Codec, SampleBatch};

/// A batch ready to be spooled and sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedBatch {
    pub codec: Codec,
    pub uncompressed_size: u32,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("codec {0} is not supported (expected CODEC_LZ4)")]
    UnsupportedCodec(i32),
    #[error("declared uncompressed size {declared} exceeds the limit of {limit} bytes")]
    TooLarge { declared: u64, limit: u64 },
    #[error("payload does not decompress to the declared {declared} bytes: {reason}")]
    Corrupt { declared: u32, reason: String },
    #[error("decompressed payload is not a valid SampleBatch: {0}")]
    Decode(String),
}

/// Encodes and compresses a batch. Fails only if the encoded batch is larger
/// than 4 GiB, which no collector produces.
pub fn encode(batch: &SampleBatch) -> Result<CompressedBatch, PayloadError> {
    let plain = batch.encode_to_vec();
    let uncompressed_size = u32::try_from(plain.len()).map_err(|_| PayloadError::TooLarge {
        declared: plain.len() as u64,
        limit: u64::from(u32::MAX),
    })?;
    Ok(CompressedBatch {
        codec: Codec::Lz4,
        uncompressed_size,
        payload: lz4_flex::block::compress(&plain),
    })
}

/// Decompresses and decodes a payload, refusing anything that would expand
/// beyond `max_uncompressed` bytes.
pub fn decode(
    codec: i32,
    uncompressed_size: u32,
    payload: &[u8],
    max_uncompressed: usize,
) -> Result<SampleBatch, PayloadError> {
    if codec != Codec::Lz4 as i32 {
        return Err(PayloadError::UnsupportedCodec(codec));
    }
    if uncompressed_size as usize > max_uncompressed {
        return Err(PayloadError::TooLarge {
            declared: u64::from(uncompressed_size),
            limit: max_uncompressed as u64,
        });
    }
    // decompress() allocates exactly `uncompressed_size` and fails if the
    // stream would write past it, so a lying size cannot expand memory.
    let plain = lz4_flex::block::decompress(payload, uncompressed_size as usize).map_err(|e| {
        PayloadError::Corrupt {
            declared: uncompressed_size,
            reason: e.to_string(),
        }
    })?;
    if plain.len() != uncompressed_size as usize {
        return Err(PayloadError::Corrupt {
            declared: uncompressed_size,
            reason: format!("got {} bytes", plain.len()),
        });
    }
    SampleBatch::decode(plain.as_slice()).map_err(|e| PayloadError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{DatabaseRow, DatabaseSnapshot, Sample, sample::Family};

    fn batch() -> SampleBatch {
        SampleBatch {
            samples: vec![Sample {
                instance: "main".into(),
                time_unix_micros: 1_700_000_000_000_000,
                family: Some(Family::Database(DatabaseSnapshot {
                    databases: vec![DatabaseRow {
                        datid: 5,
                        datname: "postgres".into(),
                        xact_commit: Some(42),
                        ..Default::default()
                    }],
                })),
            }],
        }
    }

    #[test]
    fn round_trip() {
        let c = encode(&batch()).expect("encode");
        let back =
            decode(c.codec as i32, c.uncompressed_size, &c.payload, 1 << 20).expect("decode");
        assert_eq!(back, batch());
    }

    #[test]
    fn bomb_is_refused_before_decompression() {
        // 64 MiB of zeros compresses to a few hundred KiB.
        let zeros = vec![0u8; 64 << 20];
        let payload = lz4_flex::block::compress(&zeros);
        let err = decode(Codec::Lz4 as i32, zeros.len() as u32, &payload, 1 << 20)
            .expect_err("must fail");
        assert!(matches!(err, PayloadError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn understated_size_is_corrupt_not_overflow() {
        let zeros = vec![0u8; 1 << 20];
        let payload = lz4_flex::block::compress(&zeros);
        let err = decode(Codec::Lz4 as i32, 1024, &payload, 16 << 20).expect_err("must fail");
        assert!(matches!(err, PayloadError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn garbage_is_an_error() {
        let err =
            decode(Codec::Lz4 as i32, 100, b"\xff\xff\xff\xff", 1 << 20).expect_err("must fail");
        assert!(matches!(err, PayloadError::Corrupt { .. }), "{err}");
        let err = decode(0, 100, b"", 1 << 20).expect_err("must fail");
        assert_eq!(err, PayloadError::UnsupportedCodec(0));
    }

    #[test]
    fn unknown_family_decodes_as_none() {
        // A sample whose only family field number (999) this build does not know.
        let mut raw = Vec::new();
        prost::encoding::string::encode(1, &"main".to_string(), &mut raw);
        prost::encoding::int64::encode(2, &7, &mut raw);
        prost::encoding::bytes::encode(999, &vec![1u8, 2, 3], &mut raw);
        let mut outer = Vec::new();
        prost::encoding::bytes::encode(1, &raw, &mut outer);
        let batch = SampleBatch::decode(outer.as_slice()).expect("tolerates unknown fields");
        assert_eq!(batch.samples.len(), 1);
        assert!(batch.samples[0].family.is_none());
        assert_eq!(batch.samples[0].instance, "main");
    }
}
