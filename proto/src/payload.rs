//! Encoding of a batch payload: protobuf `SampleBatch`, then compressed
//! with one of the [`Codec`]s:
//!
//! - `CODEC_LZ4`: LZ4 block format without a size prefix (what agents before
//!   the zstd codec send; ingest keeps accepting it);
//! - `CODEC_ZSTD_DICT_V1`: one Zstandard frame at [`ZSTD_LEVEL`] compressed
//!   with the dictionary [`DICTIONARY_V1`] (trained on realistic batches, see
//!   `proto/dict/README.md`). Small batches are mostly structure (field
//!   tags, names, version strings) that the dictionary already holds, which
//!   LZ4 on its own cannot exploit in a 1-10 KB message;
//! - `CODEC_ZSTD_DICT_V2`: the same with the dictionary [`DICTIONARY_V2`],
//!   trained on `DeltaBatch` payloads (delta pushes, see [`crate::bases`])
//!   of format 0, at [`ZSTD_LEVEL_V2`];
//! - `CODEC_ZSTD_DICT_V3`: the same with [`DICTIONARY_V3`], trained on
//!   `DeltaBatch` payloads of format 1 (what agents send delta pushes with).
//!
//! The plaintext length travels beside the payload
//! (`PushRequest.uncompressed_size`) so the receiver refuses an oversized
//! batch before allocating or decompressing anything, and decompression of
//! either codec cannot write past that size (a bomb is refused, never
//! expanded). An unknown codec value is an error, never a guess.

use std::cell::RefCell;
use std::sync::OnceLock;

use prost::Message;

use crate::v1::{Codec, SampleBatch};

/// The zstd dictionary of `CODEC_ZSTD_DICT_V1`. Never change these bytes: a
/// new dictionary is a new codec value (old agents' spools hold batches
/// compressed with this one).
pub const DICTIONARY_V1: &[u8] = include_bytes!("../dict/samples-v1.zdict");

/// zstd level of the agent's encoder: level 3 is zstd's default and costs
/// the agent well under a millisecond per batch; higher levels gain a few
/// percent on these sizes.
pub const ZSTD_LEVEL: i32 = 3;

/// The dictionary of `CODEC_ZSTD_DICT_V2`, for `DeltaBatch` payloads.
/// Never change these bytes either.
pub const DICTIONARY_V2: &[u8] = include_bytes!("../dict/samples-v2.zdict");

/// The dictionary of `CODEC_ZSTD_DICT_V3`, for `DeltaBatch` payloads of
/// format 1. Never change these bytes either.
pub const DICTIONARY_V3: &[u8] = include_bytes!("../dict/samples-v3.zdict");

/// zstd level of `CODEC_ZSTD_DICT_V2` and `_V3`: a delta push is small
/// (mostly under 10 KB), where level 9 costs the agent about 0.1 ms and
/// gains 5% over level 3.
pub const ZSTD_LEVEL_V2: i32 = 9;

/// The codec agents send whole batches (`SampleBatch`) with.
pub const DEFAULT_CODEC: Codec = Codec::ZstdDictV1;

/// The codec agents send delta pushes (`DeltaBatch`) with.
pub const DELTA_CODEC: Codec = Codec::ZstdDictV3;

/// A batch ready to be spooled and sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedBatch {
    pub codec: Codec,
    pub uncompressed_size: u32,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("codec {0} is not supported (expected CODEC_LZ4 or CODEC_ZSTD_DICT_V1 to _V3)")]
    UnsupportedCodec(i32),
    #[error("declared uncompressed size {declared} exceeds the limit of {limit} bytes")]
    TooLarge { declared: u64, limit: u64 },
    #[error("payload does not decompress to the declared {declared} bytes: {reason}")]
    Corrupt { declared: u32, reason: String },
    #[error("decompressed payload is not a valid SampleBatch: {0}")]
    Decode(String),
    #[error("compression failed: {0}")]
    Compress(String),
}

/// Encodes and compresses a batch with the agents' codec.
pub fn encode(batch: &SampleBatch) -> Result<CompressedBatch, PayloadError> {
    encode_with(batch, DEFAULT_CODEC)
}

/// Encodes and compresses a batch with `codec`. Fails for
/// `CODEC_UNSPECIFIED` and for a batch larger than 4 GiB, which no
/// collector produces.
pub fn encode_with(batch: &SampleBatch, codec: Codec) -> Result<CompressedBatch, PayloadError> {
    let plain = batch.encode_to_vec();
    let uncompressed_size = u32::try_from(plain.len()).map_err(|_| PayloadError::TooLarge {
        declared: plain.len() as u64,
        limit: u64::from(u32::MAX),
    })?;
    let payload = compress(codec, &plain)?;
    Ok(CompressedBatch {
        codec,
        uncompressed_size,
        payload,
    })
}

/// Compresses an encoded batch with `codec`.
pub fn compress(codec: Codec, plain: &[u8]) -> Result<Vec<u8>, PayloadError> {
    match codec {
        Codec::Lz4 => Ok(lz4_flex::block::compress(plain)),
        Codec::ZstdDictV1 | Codec::ZstdDictV2 | Codec::ZstdDictV3 => {
            let dictionary = Dictionary::of(codec).encoder();
            let mut compressor = zstd::bulk::Compressor::with_prepared_dictionary(dictionary)
                .map_err(|e| PayloadError::Compress(e.to_string()))?;
            // The size and dictionary id are in the frame header; the
            // checksum is left out (TLS and the spool's CRC cover the bytes).
            compressor
                .compress(plain)
                .map_err(|e| PayloadError::Compress(e.to_string()))
        }
        Codec::Unspecified => Err(PayloadError::UnsupportedCodec(codec as i32)),
    }
}

/// One dictionary codec: its bytes and level, prepared for compression and
/// decompression once per process, and a decompression context per thread.
struct Dictionary {
    bytes: &'static [u8],
    level: i32,
    encoder: OnceLock<zstd::dict::EncoderDictionary<'static>>,
    decoder: OnceLock<zstd::dict::DecoderDictionary<'static>>,
    contexts: &'static std::thread::LocalKey<Decoder>,
}

static DICT_V1: Dictionary = Dictionary::new(DICTIONARY_V1, ZSTD_LEVEL, &ZSTD_DECODER_V1);
static DICT_V2: Dictionary = Dictionary::new(DICTIONARY_V2, ZSTD_LEVEL_V2, &ZSTD_DECODER_V2);
static DICT_V3: Dictionary = Dictionary::new(DICTIONARY_V3, ZSTD_LEVEL_V2, &ZSTD_DECODER_V3);

impl Dictionary {
    const fn new(
        bytes: &'static [u8],
        level: i32,
        contexts: &'static std::thread::LocalKey<Decoder>,
    ) -> Self {
        Self {
            bytes,
            level,
            encoder: OnceLock::new(),
            decoder: OnceLock::new(),
            contexts,
        }
    }

    /// The dictionary of a zstd codec (callers match the codec first).
    fn of(codec: Codec) -> &'static Dictionary {
        match codec {
            Codec::ZstdDictV1 => &DICT_V1,
            Codec::ZstdDictV2 => &DICT_V2,
            _ => &DICT_V3,
        }
    }

    fn encoder(&'static self) -> &'static zstd::dict::EncoderDictionary<'static> {
        self.encoder
            .get_or_init(|| zstd::dict::EncoderDictionary::copy(self.bytes, self.level))
    }

    fn decoder(&'static self) -> &'static zstd::dict::DecoderDictionary<'static> {
        self.decoder
            .get_or_init(|| zstd::dict::DecoderDictionary::copy(self.bytes))
    }
}

type Decoder = RefCell<Option<zstd::bulk::Decompressor<'static>>>;

thread_local! {
    /// A zstd decompression context per thread and dictionary, with the
    /// dictionary attached: creating one per push cost about 3% of
    /// ingest's CPU.
    static ZSTD_DECODER_V1: Decoder = const { RefCell::new(None) };
    static ZSTD_DECODER_V2: Decoder = const { RefCell::new(None) };
    static ZSTD_DECODER_V3: Decoder = const { RefCell::new(None) };
}

/// Decompresses one zstd payload with `dictionary` into at most `capacity`
/// bytes (the buffer is allocated at exactly `capacity`; a frame that would
/// write more is an error).
fn zstd_decompress(
    decoders: &'static std::thread::LocalKey<Decoder>,
    dictionary: &'static zstd::dict::DecoderDictionary<'static>,
    payload: &[u8],
    capacity: usize,
) -> std::io::Result<Vec<u8>> {
    decoders.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            // Not reachable (no re-entry), but never a panic: a fresh context.
            return zstd::bulk::Decompressor::with_prepared_dictionary(dictionary)?
                .decompress(payload, capacity);
        };
        let decoder = match slot.as_mut() {
            Some(decoder) => decoder,
            None => slot.insert(zstd::bulk::Decompressor::with_prepared_dictionary(
                dictionary,
            )?),
        };
        let result = decoder.decompress(payload, capacity);
        if result.is_err() {
            // A context that failed mid-frame is not reused.
            *slot = None;
        }
        result
    })
}

/// Decompresses a payload to exactly `uncompressed_size` bytes, refusing
/// anything that would expand beyond `max_uncompressed` bytes (checked
/// before any allocation).
pub fn decompress(
    codec: i32,
    uncompressed_size: u32,
    payload: &[u8],
    max_uncompressed: usize,
) -> Result<Vec<u8>, PayloadError> {
    let codec = Codec::try_from(codec)
        .ok()
        .filter(|c| *c != Codec::Unspecified)
        .ok_or(PayloadError::UnsupportedCodec(codec))?;
    if uncompressed_size as usize > max_uncompressed {
        return Err(PayloadError::TooLarge {
            declared: u64::from(uncompressed_size),
            limit: max_uncompressed as u64,
        });
    }
    let corrupt = |reason: String| PayloadError::Corrupt {
        declared: uncompressed_size,
        reason,
    };
    // Both decoders allocate exactly `uncompressed_size` and fail if the
    // stream would write past it, so a lying size cannot expand memory.
    let plain = match codec {
        Codec::Lz4 => lz4_flex::block::decompress(payload, uncompressed_size as usize)
            .map_err(|e| corrupt(e.to_string()))?,
        Codec::ZstdDictV1 | Codec::ZstdDictV2 | Codec::ZstdDictV3 => {
            let dictionary = Dictionary::of(codec);
            zstd_decompress(
                dictionary.contexts,
                dictionary.decoder(),
                payload,
                uncompressed_size as usize,
            )
            .map_err(|e| corrupt(e.to_string()))?
        }
        Codec::Unspecified => return Err(PayloadError::UnsupportedCodec(codec as i32)),
    };
    if plain.len() != uncompressed_size as usize {
        return Err(corrupt(format!("got {} bytes", plain.len())));
    }
    Ok(plain)
}

/// Decompresses and decodes a payload, refusing anything that would expand
/// beyond `max_uncompressed` bytes.
pub fn decode(
    codec: i32,
    uncompressed_size: u32,
    payload: &[u8],
    max_uncompressed: usize,
) -> Result<SampleBatch, PayloadError> {
    let plain = decompress(codec, uncompressed_size, payload, max_uncompressed)?;
    decode_plain(&plain)
}

/// Decodes an encoded (decompressed) `SampleBatch`.
pub fn decode_plain(plain: &[u8]) -> Result<SampleBatch, PayloadError> {
    SampleBatch::decode(plain).map_err(|e| PayloadError::Decode(e.to_string()))
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
        assert_eq!(c.codec, Codec::ZstdDictV1, "agents send the zstd codec");
        let back =
            decode(c.codec as i32, c.uncompressed_size, &c.payload, 1 << 20).expect("decode");
        assert_eq!(back, batch());
    }

    #[test]
    fn lz4_is_still_accepted() {
        let c = encode_with(&batch(), Codec::Lz4).expect("encode");
        let back =
            decode(Codec::Lz4 as i32, c.uncompressed_size, &c.payload, 1 << 20).expect("decode");
        assert_eq!(back, batch());
        // Codecs are not interchangeable: LZ4 bytes are not a zstd frame.
        let err = decode(
            Codec::ZstdDictV1 as i32,
            c.uncompressed_size,
            &c.payload,
            1 << 20,
        )
        .expect_err("must fail");
        assert!(matches!(err, PayloadError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn the_dictionary_pays_for_itself_on_small_batches() {
        let plain = batch().encode_to_vec();
        let with = compress(Codec::ZstdDictV1, &plain).expect("zstd");
        let without = zstd::bulk::compress(&plain, ZSTD_LEVEL).expect("zstd");
        assert!(
            with.len() < without.len(),
            "{} vs {}",
            with.len(),
            without.len()
        );
    }

    #[test]
    fn unknown_codecs_are_refused() {
        let c = encode(&batch()).expect("encode");
        for codec in [0, 5, 99, -1] {
            let err =
                decode(codec, c.uncompressed_size, &c.payload, 1 << 20).expect_err("must fail");
            assert_eq!(err, PayloadError::UnsupportedCodec(codec));
        }
        assert!(encode_with(&batch(), Codec::Unspecified).is_err());
    }

    /// Agents sent delta pushes with `CODEC_ZSTD_DICT_V2` before V3: both
    /// stay decodable, and each uses its own dictionary.
    #[test]
    fn every_dictionary_codec_round_trips() {
        let plain = batch().encode_to_vec();
        let mut frames = Vec::new();
        for codec in [Codec::ZstdDictV1, Codec::ZstdDictV2, Codec::ZstdDictV3] {
            let payload = compress(codec, &plain).expect("compress");
            let back = decompress(codec as i32, plain.len() as u32, &payload, 1 << 20)
                .expect("decompress");
            assert_eq!(back, plain, "{codec:?}");
            frames.push(payload);
        }
        // A frame names its dictionary: decoding it with another fails.
        let err = decompress(
            Codec::ZstdDictV2 as i32,
            plain.len() as u32,
            &frames[2],
            1 << 20,
        )
        .expect_err("wrong dictionary");
        assert!(matches!(err, PayloadError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn zstd_bomb_is_refused_before_and_during_decompression() {
        let zeros = vec![0u8; 64 << 20];
        let payload = compress(Codec::ZstdDictV1, &zeros).expect("zstd");
        assert!(payload.len() < 64 << 10, "a bomb: {} bytes", payload.len());
        // Declared honestly: over the limit, refused before anything.
        let err = decode(
            Codec::ZstdDictV1 as i32,
            zeros.len() as u32,
            &payload,
            1 << 20,
        )
        .expect_err("must fail");
        assert!(matches!(err, PayloadError::TooLarge { .. }), "{err}");
        // Declared small: decompression stops at the declared size.
        let err =
            decode(Codec::ZstdDictV1 as i32, 1024, &payload, 16 << 20).expect_err("must fail");
        assert!(matches!(err, PayloadError::Corrupt { .. }), "{err}");

        // The thread's decoder works again after a failed frame.
        for _ in 0..2 {
            let c = encode(&batch()).expect("encode");
            let back =
                decode(c.codec as i32, c.uncompressed_size, &c.payload, 1 << 20).expect("decode");
            assert_eq!(back, batch());
        }
    }

    #[test]
    fn zstd_overstated_size_is_corrupt() {
        let c = encode(&batch()).expect("encode");
        let err = decode(
            Codec::ZstdDictV1 as i32,
            c.uncompressed_size + 10,
            &c.payload,
            1 << 20,
        )
        .expect_err("must fail");
        assert!(matches!(err, PayloadError::Corrupt { .. }), "{err}");
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
