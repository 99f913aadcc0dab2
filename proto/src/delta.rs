//! The sample delta codec: a `Sample` sent as its difference from the last
//! two samples of the same instance and family that the receiver already
//! holds (its *bases*), which is most of what a monitoring sample is:
//! counters that grow at a steady rate, gauges that barely move, names and
//! ids that never change.
//!
//! # Format
//!
//! A coded sample has three parts (the `sample`, `bits` and `rows` fields
//! of a `DeltaSample`):
//!
//! - **coded**: protobuf wire format with exactly the fields of the sample,
//!   in the same order, under the same tags. A varint field holds the
//!   *residual* of the value (below); a nested message holds the coded form
//!   of that message (so its length prefix is the coded length). Strings,
//!   bytes and packed repeated scalars, and fixed-width fields (doubles),
//!   are coded by [`Format`]:
//!   - format 0 ([`Format::Copied`]) copies them unchanged;
//!   - format 1 ([`Format::Referenced`]) codes them against their
//!     counterpart in the newer base. A length-delimited value equal to its
//!     counterpart (or empty, with none) is coded empty; any other is coded
//!     as a 0 byte followed by the value. A fixed-width value is XORed with
//!     a counterpart of the same width (copied without one), so a double
//!     that did not change is zero bytes and one that did keeps its sign
//!     and exponent bytes zero. On real servers most of a sample's bytes
//!     are such values (setting values, names, statement timings), which
//!     zstd alone cannot take from an earlier push.
//! - **bits**: for every varint, in order, the bits of its zigzag residual
//!   below the top set bit, least significant first, packed LSB-first.
//! - **rows**: for every nested message, in order, two varints naming its
//!   counterpart in the newer and the older base: 0 for none, else 1 + the
//!   zigzag of (its position among the base's fields of that number − its
//!   own position).
//!
//! The residual of a varint `v` is `z = zigzag(v - p)` (wrapping, on the raw
//! 64-bit value) for the prediction `p`. Its coded varint is
//! `zigzag(bitlen(z) - e)`, where `e` is the *expected* bit length: that of
//! `zigzag(a - b)` minus 3 (0 without both bases), since a counter's jitter
//! grows with its rate. So a value that moves as predicted costs a small
//! coded byte and its few low bits.
//!
//! A field's *counterpart* in a base is the field with the same number in
//! the counterpart message (the sample itself in the base at the root):
//! for a scalar, the same occurrence among the fields of that number; for a
//! nested message, the one the rows stream names. The encoder picks the one
//! with the same *row key* (the values of its string fields and of its
//! integer fields named `…id`, so a table row is matched by database,
//! schema, name and relid wherever it moved in the list; among those with
//! the same key, the same occurrence).
//!
//! The prediction `p` of a varint is `a` in the newer base plus the change
//! from the older base `b`, scaled to the time since the newer (a counter
//! keeps its rate): `a + (a - b) * (t - ta) / (ta - tb)` with the
//! `time_unix_micros` of the three samples (integer arithmetic, rounding
//! toward zero); `2a - b` where those times are missing or not increasing,
//! and for `time_unix_micros` itself. It is `a` when only the newer base
//! has a varint counterpart, and 0 when none has.
//!
//! Which fields are messages, and which identify a row, comes from the
//! schema `build.rs` generates from `samples.proto`: the wire type alone
//! cannot tell a message from a string.
//!
//! # Invariants
//!
//! - Decoding gives back the exact bytes of the encoded sample when it was
//!   canonical protobuf (prost's output is), with the same bases.
//! - Predictions depend only on the bases, so a wrong or missing base can
//!   make a sample decode to different values but never makes decoding
//!   fail or panic: whoever uses this codec checks the reconstructed batch
//!   (ingest compares a CRC32C the agent computed over the original).
//! - Row matches are chosen by the encoder and sent (the *rows* stream), so
//!   a newer agent with other row keys needs no change on ingest. A nested
//!   message field that ingest's schema does not know (a newer agent's
//!   family) is copied as it is coded, so it rebuilds to different bytes
//!   and the CRC sends that batch whole: never wrong data.
//! - Decoding never writes more than its `limit`, so a small coded sample
//!   cannot expand into a large allocation (a varint residual of one byte
//!   may stand for a ten-byte value).

use std::collections::HashMap;

use crate::delta_schema::{MESSAGES, SAMPLE};

/// The kind of a field, from the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldKind {
    /// A nested message (index into `MESSAGES`).
    Message(usize),
    /// A repeated scalar, packed into one length-delimited field (none in
    /// `samples.proto` yet; copied unchanged when there is).
    #[allow(dead_code)]
    Packed,
    /// Anything else: the wire type says how it is laid out.
    Scalar,
}

#[derive(Debug)]
pub(crate) struct MessageSchema {
    #[allow(dead_code)]
    pub name: &'static str,
    /// The fields that identify a row of this message among its siblings.
    pub keys: &'static [u32],
    /// `(field number, kind)`, sorted by number.
    pub fields: &'static [(u32, FieldKind)],
}

impl MessageSchema {
    fn kind(&self, number: u32) -> FieldKind {
        match self.fields.binary_search_by_key(&number, |(n, _)| *n) {
            Ok(i) => self.fields[i].1,
            // An unknown field (a newer agent): its wire type decides.
            Err(_) => FieldKind::Scalar,
        }
    }
}

/// How strings and fixed-width values are coded (`DeltaBatch.format`, see
/// the module docs). A new way to code is a new format: ingest decodes
/// every format it knows, so agents can be upgraded before or after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// 0: copied as they are.
    Copied,
    /// 1: coded against their counterparts in the newer base.
    Referenced,
}

impl Format {
    /// What agents send.
    pub const CURRENT: Format = Format::Referenced;

    /// The format of a `DeltaBatch.format` value; `None` for one this
    /// build does not know.
    pub fn from_wire(value: u32) -> Option<Self> {
        match value {
            0 => Some(Self::Copied),
            1 => Some(Self::Referenced),
            _ => None,
        }
    }

    pub fn to_wire(self) -> u32 {
        match self {
            Self::Copied => 0,
            Self::Referenced => 1,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DeltaError {
    #[error("malformed protobuf at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
    #[error("the decoded sample would exceed {limit} bytes")]
    TooLarge { limit: usize },
    #[error("messages nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Deeper nesting than any sample has is refused (the walk recurses).
pub const MAX_DEPTH: usize = 16;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// One field as read from the wire.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Fixed64(&'a [u8]),
    Len(&'a [u8]),
    Fixed32(&'a [u8]),
}

#[derive(Debug, Clone, Copy)]
struct Field<'a> {
    number: u32,
    value: Value<'a>,
}

/// Reads the fields of one message, in order.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn error(&self, reason: &'static str) -> DeltaError {
        DeltaError::Malformed {
            offset: self.at,
            reason,
        }
    }

    fn varint(&mut self) -> Result<u64, DeltaError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.bytes.get(self.at) else {
                return Err(self.error("truncated varint"));
            };
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error("varint longer than ten bytes"))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], DeltaError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| self.error("field runs past the end of its message"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn next(&mut self) -> Result<Option<Field<'a>>, DeltaError> {
        if self.at >= self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3)
            .ok()
            .filter(|n| *n > 0 && *n < (1 << 29))
            .ok_or_else(|| self.error("invalid field number"))?;
        let value = match (key & 7) as u8 {
            VARINT => Value::Varint(self.varint()?),
            FIXED64 => Value::Fixed64(self.take(8)?),
            LEN => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| self.error("length does not fit in memory"))?;
                Value::Len(self.take(len)?)
            }
            FIXED32 => Value::Fixed32(self.take(4)?),
            _ => return Err(self.error("unsupported wire type (groups)")),
        };
        Ok(Some(Field { number, value }))
    }
}

/// A base message, its fields grouped by number for the counterpart lookup.
/// A base that is not valid protobuf counts as an absent base, the same way
/// on both sides.
/// A base message, its fields grouped by number for the counterpart lookup.
/// A base that is not valid protobuf counts as an absent base, the same way
/// on both sides.
#[derive(Default)]
struct Base<'a> {
    /// `(number, occurrences)`, in order of first appearance.
    fields: Vec<(u32, Vec<Value<'a>>)>,
    /// Encoding only: positions of nested messages by field number and row
    /// key, built on first use.
    keyed: HashMap<u32, HashMap<Vec<u8>, Vec<usize>>>,
}

impl<'a> Base<'a> {
    fn parse(bytes: Option<&'a [u8]>) -> Self {
        let Some(bytes) = bytes else {
            return Self::default();
        };
        let mut fields: Vec<(u32, Vec<Value<'a>>)> = Vec::new();
        let mut reader = Reader::new(bytes);
        loop {
            match reader.next() {
                Ok(Some(field)) => {
                    // Fields of one number are usually adjacent: look at the
                    // last group first.
                    match fields.iter_mut().rev().find(|(n, _)| *n == field.number) {
                        Some((_, values)) => values.push(field.value),
                        None => fields.push((field.number, vec![field.value])),
                    }
                }
                Ok(None) => {
                    return Self {
                        fields,
                        keyed: HashMap::new(),
                    };
                }
                Err(_) => return Self::default(),
            }
        }
    }

    fn values(&self, number: u32) -> &[Value<'a>] {
        self.fields
            .iter()
            .find(|(n, _)| *n == number)
            .map_or(&[], |(_, values)| values.as_slice())
    }

    fn get(&self, number: u32, occurrence: usize) -> Option<Value<'a>> {
        self.values(number).get(occurrence).copied()
    }

    /// The position (among the fields `number`) of the `nth` nested message
    /// of schema `child` whose row key is `key`.
    fn position_of(&mut self, number: u32, child: usize, key: &[u8], nth: usize) -> Option<usize> {
        if !self.keyed.contains_key(&number) {
            let mut index: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
            for (position, value) in self.values(number).iter().enumerate() {
                if let Value::Len(row) = value {
                    index.entry(row_key(child, row)).or_default().push(position);
                }
            }
            self.keyed.insert(number, index);
        }
        self.keyed.get(&number)?.get(key)?.get(nth).copied()
    }
}

/// The row key of an encoded message of schema `schema`: its key fields'
/// numbers and raw values, in order. A message that does not parse has
/// the key of its valid prefix.
fn row_key(schema: usize, row: &[u8]) -> Vec<u8> {
    let mut key = Vec::new();
    let Some(schema) = MESSAGES.get(schema) else {
        return key;
    };
    if schema.keys.is_empty() {
        return key;
    }
    let mut reader = Reader::new(row);
    while let Ok(Some(field)) = reader.next() {
        if !schema.keys.contains(&field.number) {
            continue;
        }
        put_varint(&mut key, u64::from(field.number));
        match field.value {
            Value::Varint(v) => put_varint(&mut key, v),
            Value::Len(bytes) | Value::Fixed64(bytes) | Value::Fixed32(bytes) => {
                put_varint(&mut key, bytes.len() as u64);
                key.extend_from_slice(bytes);
            }
        }
    }
    key
}

/// Counts the occurrences of each field number (or row key) seen so far.
struct Occurrences<K>(Vec<(K, usize)>);

impl<K> Default for Occurrences<K> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<K: PartialEq> Occurrences<K> {
    fn next(&mut self, key: K) -> usize {
        match self.0.iter_mut().rev().find(|(k, _)| *k == key) {
            Some((_, count)) => {
                *count += 1;
                *count - 1
            }
            None => {
                self.0.push((key, 1));
                0
            }
        }
    }
}

/// Occurrences of row keys, which can be many (a thousand tables).
#[derive(Default)]
struct RowOccurrences(HashMap<(u32, Vec<u8>), usize>);

impl RowOccurrences {
    fn next(&mut self, number: u32, key: Vec<u8>) -> usize {
        let count = self.0.entry((number, key)).or_insert(0);
        *count += 1;
        *count - 1
    }
}

/// A row match as written to the rows stream: 0 for none, else 1 + the
/// zigzag of the matched position's distance from the row's own.
fn code_match(position: Option<usize>, own: usize) -> u64 {
    position.map_or(0, |p| zigzag(p as i64 - own as i64) + 1)
}

fn decode_match(coded: u64, own: usize) -> Option<usize> {
    let distance = unzigzag(coded.checked_sub(1)?);
    usize::try_from((own as i64).checked_add(distance)?).ok()
}

/// The times of a sample and its two bases, when they increase: how far
/// to carry a base's change forward.
#[derive(Debug, Clone, Copy)]
struct Scale {
    since_newer: i128,
    between_bases: i128,
}

impl Scale {
    fn of(t: u64, newer: Option<Value<'_>>, older: Option<Value<'_>>) -> Option<Self> {
        let (Some(Value::Varint(ta)), Some(Value::Varint(tb))) = (newer, older) else {
            return None;
        };
        let (t, ta, tb) = (t as i64, ta as i64, tb as i64);
        (t >= ta && ta > tb).then(|| Self {
            since_newer: i128::from(t) - i128::from(ta),
            between_bases: i128::from(ta) - i128::from(tb),
        })
    }
}

fn predict(newer: Option<Value<'_>>, older: Option<Value<'_>>, scale: Option<Scale>) -> u64 {
    match (newer, older) {
        (Some(Value::Varint(a)), Some(Value::Varint(b))) => {
            let change = a.wrapping_sub(b) as i64;
            let step = match scale {
                Some(s) => {
                    let step = i128::from(change) * s.since_newer / s.between_bases;
                    i64::try_from(step).unwrap_or(change)
                }
                None => change,
            };
            a.wrapping_add(step as u64)
        }
        (Some(Value::Varint(a)), _) => a,
        _ => 0,
    }
}

/// The bit length a residual is expected to have: that of the change
/// between the bases (a counter's jitter grows with its rate); 0 without
/// both bases.
fn expected_len(newer: Option<Value<'_>>, older: Option<Value<'_>>) -> u32 {
    match (newer, older) {
        (Some(Value::Varint(a)), Some(Value::Varint(b))) => {
            let change = zigzag(a.wrapping_sub(b) as i64);
            (64 - change.leading_zeros()).saturating_sub(EXPECTED_LEN_MARGIN)
        }
        _ => 0,
    }
}

/// How many bits shorter than the change between the bases a residual
/// usually is.
const EXPECTED_LEN_MARGIN: u32 = 3;

/// `Sample.time_unix_micros`, which sets the [`Scale`] of what follows it.
const SAMPLE_TIME: u32 = 2;

fn nested<'a>(value: Option<Value<'a>>) -> Option<&'a [u8]> {
    match value {
        Some(Value::Len(bytes)) => Some(bytes),
        _ => None,
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

fn put_len(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_key(out, number, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Which way a walk goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Encode,
    Decode,
}

struct Walk<'a> {
    direction: Direction,
    format: Format,
    limit: usize,
    /// Encoding: the bits written so far; decoding: the bits to read.
    bits: Bits<'a>,
    /// Encoding: the row matches chosen so far; decoding: those to read.
    rows: Rows<'a>,
}

/// The row match stream beside a coded sample (see the module docs).
enum Rows<'a> {
    Write(Vec<u8>),
    Read(Reader<'a>),
}

/// The bit stream beside a coded sample (see the module docs).
enum Bits<'a> {
    Write(BitWriter),
    Read(BitReader<'a>),
}

#[derive(Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    pending: u64,
    pending_bits: u32,
}

impl BitWriter {
    /// Appends the low `count` (< 64) bits of `value`, least significant first.
    fn put(&mut self, value: u64, count: u32) {
        debug_assert!(count < 64);
        let mut value = value & ((1u64 << count) - 1);
        let mut count = count;
        while count > 0 {
            let room = 64 - self.pending_bits;
            let take = room.min(count);
            self.pending |= (value & low_mask(take)) << self.pending_bits;
            self.pending_bits += take;
            value = if take == 64 { 0 } else { value >> take };
            count -= take;
            while self.pending_bits >= 8 {
                self.bytes.push(self.pending as u8);
                self.pending >>= 8;
                self.pending_bits -= 8;
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.pending_bits > 0 {
            self.bytes.push(self.pending as u8);
        }
        self.bytes
    }
}

fn low_mask(count: u32) -> u64 {
    if count >= 64 {
        u64::MAX
    } else {
        (1u64 << count) - 1
    }
}

pub(crate) struct BitReader<'a> {
    bytes: &'a [u8],
    /// Bits read so far.
    at: usize,
}

impl BitReader<'_> {
    fn take(&mut self, count: u32) -> Result<u64, DeltaError> {
        let end = self.at + count as usize;
        if end > self.bytes.len() * 8 {
            return Err(DeltaError::Malformed {
                offset: self.bytes.len(),
                reason: "bit stream ends early",
            });
        }
        let mut value = 0u64;
        for i in 0..count as usize {
            let bit = self.at + i;
            value |= u64::from((self.bytes[bit / 8] >> (bit % 8)) & 1) << i;
        }
        self.at = end;
        Ok(value)
    }
}

impl Walk<'_> {
    /// The coded varint of a residual: its bit length, with the bits below
    /// its top bit written to the bit stream.
    fn code_residual(&mut self, zz: u64, expected: u32) -> u64 {
        let len = 64 - zz.leading_zeros();
        if let Bits::Write(w) = &mut self.bits
            && len > 0
        {
            w.put(zz, len - 1);
        }
        zigzag(i64::from(len) - i64::from(expected))
    }

    /// The residual a coded varint stands for, reading its low bits.
    fn residual(&mut self, coded: u64, expected: u32) -> Result<u64, DeltaError> {
        let Bits::Read(r) = &mut self.bits else {
            return Ok(coded);
        };
        match unzigzag(coded)
            .checked_add(i64::from(expected))
            .unwrap_or(-1)
        {
            0 => Ok(0),
            len @ 1..=64 => {
                let len = len as u32;
                Ok((1u64 << (len - 1)) | r.take(len - 1)?)
            }
            _ => Err(DeltaError::Malformed {
                offset: 0,
                reason: "residual longer than 64 bits",
            }),
        }
    }

    /// Appends the transform of a fixed-width value: in format 1, XOR with
    /// a counterpart of the same width (its own inverse, so the same both
    /// ways).
    fn put_fixed(&self, out: &mut Vec<u8>, bytes: &[u8], counterpart: Option<Value<'_>>) {
        match (self.format, counterpart) {
            (Format::Referenced, Some(Value::Fixed64(c) | Value::Fixed32(c)))
                if c.len() == bytes.len() =>
            {
                out.extend(bytes.iter().zip(c).map(|(value, base)| value ^ base));
            }
            _ => out.extend_from_slice(bytes),
        }
    }

    /// Appends the transform of a length-delimited scalar field (a string,
    /// bytes): in format 1, empty when it equals its counterpart (an empty
    /// value when there is none), else a 0 byte and the value.
    fn put_bytes(
        &self,
        out: &mut Vec<u8>,
        number: u32,
        bytes: &[u8],
        counterpart: Option<Value<'_>>,
    ) {
        if self.format == Format::Copied {
            return put_len(out, number, bytes);
        }
        let counterpart = match counterpart {
            Some(Value::Len(c)) => c,
            _ => &[],
        };
        match self.direction {
            Direction::Encode if bytes == counterpart => put_len(out, number, &[]),
            Direction::Encode => {
                put_key(out, number, LEN);
                put_varint(out, bytes.len() as u64 + 1);
                out.push(0);
                out.extend_from_slice(bytes);
            }
            // The marker byte is not checked: whatever it holds, a value
            // that differs from the agent's fails the batch's CRC.
            Direction::Decode => put_len(out, number, bytes.get(1..).unwrap_or(counterpart)),
        }
    }

    /// Appends the transform of `message` (of schema `schema`) to `out`.
    fn message(
        &mut self,
        schema: usize,
        message: &[u8],
        (newer, older): (Option<&[u8]>, Option<&[u8]>),
        mut scale: Option<Scale>,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), DeltaError> {
        if depth > MAX_DEPTH {
            return Err(DeltaError::TooDeep);
        }
        let Some(schema_of) = MESSAGES.get(schema) else {
            return Err(DeltaError::TooDeep);
        };
        let (mut newer, mut older) = (Base::parse(newer), Base::parse(older));
        let mut seen = Occurrences::default();
        let mut rows_seen = RowOccurrences::default();
        let mut reader = Reader::new(message);
        while let Some(field) = reader.next()? {
            let n = field.number;
            let occurrence = seen.next(n);
            match field.value {
                Value::Varint(v) => {
                    let (a, b) = (newer.get(n, occurrence), older.get(n, occurrence));
                    let p = predict(a, b, scale);
                    let expected = expected_len(a, b);
                    let (coded, value) = match self.direction {
                        Direction::Encode => (
                            self.code_residual(zigzag(v.wrapping_sub(p) as i64), expected),
                            v,
                        ),
                        Direction::Decode => {
                            let zz = self.residual(v, expected)?;
                            let value = p.wrapping_add(unzigzag(zz) as u64);
                            (value, value)
                        }
                    };
                    if schema == SAMPLE && n == SAMPLE_TIME && occurrence == 0 {
                        scale = Scale::of(value, a, b);
                    }
                    put_key(out, n, VARINT);
                    put_varint(out, coded);
                }
                Value::Fixed64(bytes) => {
                    put_key(out, n, FIXED64);
                    self.put_fixed(out, bytes, newer.get(n, occurrence));
                }
                Value::Fixed32(bytes) => {
                    put_key(out, n, FIXED32);
                    self.put_fixed(out, bytes, newer.get(n, occurrence));
                }
                Value::Len(bytes) => match schema_of.kind(n) {
                    FieldKind::Message(child) => {
                        let (in_newer, in_older) = match &mut self.rows {
                            Rows::Write(stream) => {
                                // The encoder matches rows by key; the
                                // decoder follows what it chose.
                                let key = row_key(child, bytes);
                                let nth = rows_seen.next(n, key.clone());
                                let in_newer = newer.position_of(n, child, &key, nth);
                                let in_older = older.position_of(n, child, &key, nth);
                                put_varint(stream, code_match(in_newer, occurrence));
                                put_varint(stream, code_match(in_older, occurrence));
                                (in_newer, in_older)
                            }
                            Rows::Read(stream) => (
                                decode_match(stream.varint()?, occurrence),
                                decode_match(stream.varint()?, occurrence),
                            ),
                        };
                        let mut inner = Vec::with_capacity(bytes.len() + 16);
                        self.message(
                            child,
                            bytes,
                            (
                                in_newer.and_then(|p| nested(newer.get(n, p))),
                                in_older.and_then(|p| nested(older.get(n, p))),
                            ),
                            scale,
                            depth + 1,
                            &mut inner,
                        )?;
                        put_len(out, n, &inner);
                    }
                    FieldKind::Packed | FieldKind::Scalar => {
                        self.put_bytes(out, n, bytes, newer.get(n, occurrence));
                    }
                },
            }
            if out.len() > self.limit {
                return Err(DeltaError::TooLarge { limit: self.limit });
            }
        }
        Ok(())
    }
}

/// The coded form of an encoded `Sample` against its bases (`newer`, then
/// `older`; either may be absent), in `format`.
pub fn encode_sample(
    sample: &[u8],
    newer: Option<&[u8]>,
    older: Option<&[u8]>,
    format: Format,
) -> Result<CodedSample, DeltaError> {
    let mut walk = Walk {
        direction: Direction::Encode,
        format,
        // The coded form is at most a byte per string larger than the
        // sample, which is bounded already.
        limit: usize::MAX,
        bits: Bits::Write(BitWriter::default()),
        rows: Rows::Write(Vec::new()),
    };
    let mut coded = Vec::with_capacity(sample.len());
    walk.message(SAMPLE, sample, (newer, older), None, 0, &mut coded)?;
    let bits = match walk.bits {
        Bits::Write(w) => w.finish(),
        Bits::Read(_) => Vec::new(),
    };
    let rows = match walk.rows {
        Rows::Write(stream) => stream,
        Rows::Read(_) => Vec::new(),
    };
    Ok(CodedSample { coded, bits, rows })
}

/// A sample in coded form: the protobuf-shaped part and its bit stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodedSample {
    pub coded: Vec<u8>,
    pub bits: Vec<u8>,
    pub rows: Vec<u8>,
}

impl CodedSample {
    pub fn parts(&self) -> CodedParts<'_> {
        CodedParts {
            coded: &self.coded,
            bits: &self.bits,
            rows: &self.rows,
        }
    }

    /// Bytes of all parts.
    pub fn len(&self) -> usize {
        self.coded.len() + self.bits.len() + self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The parts of a coded sample, as received.
#[derive(Debug, Clone, Copy)]
pub struct CodedParts<'a> {
    pub coded: &'a [u8],
    pub bits: &'a [u8],
    pub rows: &'a [u8],
}

/// The encoded `Sample` that `coded` stands for, given the same bases and
/// format it was encoded with; fails beyond `limit` bytes.
pub fn decode_sample(
    coded: &CodedParts<'_>,
    newer: Option<&[u8]>,
    older: Option<&[u8]>,
    format: Format,
    limit: usize,
) -> Result<Vec<u8>, DeltaError> {
    let mut walk = Walk {
        direction: Direction::Decode,
        format,
        limit,
        bits: Bits::Read(BitReader {
            bytes: coded.bits,
            at: 0,
        }),
        rows: Rows::Read(Reader::new(coded.rows)),
    };
    let coded = coded.coded;
    let mut out = Vec::with_capacity(coded.len().min(limit));
    walk.message(SAMPLE, coded, (newer, older), None, 0, &mut out)?;
    Ok(out)
}

/// What makes two samples each other's bases: the instance and the family
/// (the field number of `Sample.family`). Host samples have an empty
/// instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SampleKey {
    pub instance: String,
    pub family: u32,
}

/// The key of an encoded `Sample`; `None` when it has no family (nothing
/// to predict it from) or is not valid protobuf.
pub fn sample_key(sample: &[u8]) -> Option<SampleKey> {
    let schema = MESSAGES.get(SAMPLE)?;
    let mut reader = Reader::new(sample);
    let mut instance = String::new();
    let mut family = None;
    while let Ok(Some(field)) = reader.next() {
        match (field.number, field.value) {
            (1, Value::Len(bytes)) => instance = String::from_utf8(bytes.to_vec()).ok()?,
            (n, Value::Len(_)) if matches!(schema.kind(n), FieldKind::Message(_)) => {
                family = Some(n);
            }
            _ => {}
        }
    }
    if reader.at < sample.len() {
        return None;
    }
    Some(SampleKey {
        instance,
        family: family?,
    })
}

/// The encoded samples of an encoded `SampleBatch`, in order.
pub fn split_batch(batch: &[u8]) -> Result<Vec<&[u8]>, DeltaError> {
    let mut reader = Reader::new(batch);
    let mut samples = Vec::new();
    while let Some(field) = reader.next()? {
        match (field.number, field.value) {
            (1, Value::Len(bytes)) => samples.push(bytes),
            _ => {
                return Err(DeltaError::Malformed {
                    offset: reader.at,
                    reason: "a SampleBatch holds only samples",
                });
            }
        }
    }
    Ok(samples)
}

/// Appends one sample to an encoded `SampleBatch` under construction.
pub fn push_sample(batch: &mut Vec<u8>, sample: &[u8]) {
    put_len(batch, 1, sample);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::sample::Family;
    use crate::v1::{DatabaseRow, DatabaseSnapshot, HostCpu, Sample, TableRow, TableSnapshot};
    use prost::Message;

    /// An encoded sample of instance `main`, `secs` seconds after a fixed start.
    fn sample_at(secs: i64, family: Family) -> Vec<u8> {
        Sample {
            instance: "main".into(),
            time_unix_micros: 1_700_000_000_000_000 + secs * 1_000_000,
            family: Some(family),
        }
        .encode_to_vec()
    }

    fn database(tick: i64, rows: usize) -> Vec<u8> {
        Sample {
            instance: "main".into(),
            time_unix_micros: 1_700_000_000_000_000 + tick * 10_000_000,
            family: Some(Family::Database(DatabaseSnapshot {
                databases: (0..rows)
                    .map(|i| DatabaseRow {
                        datid: 16_384 + i as u32,
                        datname: format!("db{i}"),
                        numbackends: Some(3),
                        xact_commit: Some(1_000_000 + tick * 1_234 + i as i64),
                        xact_rollback: Some(-5 - tick),
                        blks_hit: if tick % 2 == 0 {
                            Some(i64::MAX - tick)
                        } else {
                            None
                        },
                        ..Default::default()
                    })
                    .collect(),
            })),
        }
        .encode_to_vec()
    }

    #[test]
    fn a_sample_decodes_to_its_exact_bytes_with_any_bases() {
        let (a, b, c) = (database(0, 3), database(1, 3), database(2, 4));
        let other = Sample {
            instance: String::new(),
            time_unix_micros: 5,
            family: Some(Family::HostCpu(HostCpu {
                cpu_count: 4,
                usage_percent: 1.5,
                ..Default::default()
            })),
        }
        .encode_to_vec();
        let garbage = [0xff_u8, 0xff, 0x01];
        type Pair<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
        let bases: [Pair<'_>; 6] = [
            (None, None),
            (Some(&b), None),
            (Some(&b), Some(&a)),
            (Some(&other), Some(&a)),
            (Some(&garbage), Some(&garbage)),
            (Some(&a), Some(&c)),
        ];
        for format in [Format::Copied, Format::Referenced] {
            for (newer, older) in bases {
                for sample in [&c, &settings(2, 0), &statements(2)] {
                    let coded = encode_sample(sample, newer, older, format).expect("encode");
                    let back = decode_sample(&coded.parts(), newer, older, format, 1 << 20)
                        .expect("decode");
                    assert_eq!(&back, sample);
                }
            }
        }
    }

    /// `pg_settings` as the agent sends it: `changed` settings have a value
    /// of their own.
    fn settings(tick: i64, changed: usize) -> Vec<u8> {
        use crate::v1::{Setting, SettingsSnapshot};
        sample_at(
            tick * 300,
            Family::Settings(SettingsSnapshot {
                settings: (0..350)
                    .map(|i| Setting {
                        name: format!("setting_number_{i}"),
                        setting: if i < changed {
                            format!("{}", 1_000 + tick)
                        } else {
                            format!("value-{}", i * 7)
                        },
                        unit: if i % 3 == 0 {
                            "kB".into()
                        } else {
                            String::new()
                        },
                        source: "configuration file".into(),
                        pending_restart: false,
                    })
                    .collect(),
                changes: Vec::new(),
            }),
        )
    }

    /// Statement rows whose timings are doubles, half of them unchanged.
    fn statements(tick: i64) -> Vec<u8> {
        use crate::v1::{StatementRow, StatementSnapshot};
        sample_at(
            tick * 30,
            Family::Statement(StatementSnapshot {
                rows: (0..100)
                    .map(|i| StatementRow {
                        queryid: 7_000_000_000 + i,
                        dbid: 5,
                        userid: 10,
                        toplevel: true,
                        calls: Some(3),
                        total_exec_time_ms: Some(if i % 2 == 0 {
                            0.1 * i as f64 + 0.37
                        } else {
                            0.1 * (i as f64 + tick as f64).sqrt()
                        }),
                        ..Default::default()
                    })
                    .collect(),
                texts: Vec::new(),
            }),
        )
    }

    #[test]
    fn strings_and_doubles_that_did_not_change_code_to_almost_nothing() {
        // Every value the same as 300 s before but one: format 0 still
        // copies every name and value, format 1 sends only the one.
        let (before, now) = (settings(1, 1), settings(2, 1));
        let copied = encode_sample(&now, Some(&before), None, Format::Copied).expect("encode");
        let referenced =
            encode_sample(&now, Some(&before), None, Format::Referenced).expect("encode");
        assert!(
            copied.coded.len() > now.len() * 9 / 10,
            "{} of {}",
            copied.coded.len(),
            now.len()
        );
        assert!(
            referenced.len() * 5 < now.len(),
            "{} of {}",
            referenced.len(),
            now.len()
        );
        let parts = referenced.parts();
        assert_eq!(
            decode_sample(&parts, Some(&before), None, Format::Referenced, 1 << 20),
            Ok(now.clone())
        );
        // Against another base the values differ (the batch CRC is what
        // catches it), but nothing fails or panics.
        let other = settings(2, 20);
        let wrong = decode_sample(&parts, Some(&other), None, Format::Referenced, 1 << 20);
        assert_ne!(wrong, Ok(now));

        // Doubles: unchanged ones become zero bytes.
        let (before, now) = (statements(1), statements(2));
        let copied = encode_sample(&now, Some(&before), None, Format::Copied).expect("encode");
        let referenced =
            encode_sample(&now, Some(&before), None, Format::Referenced).expect("encode");
        let zeros = |c: &CodedSample| c.coded.iter().filter(|b| **b == 0).count();
        assert!(
            zeros(&referenced) >= zeros(&copied) + 50 * 7,
            "{} vs {}",
            zeros(&referenced),
            zeros(&copied)
        );
        assert_eq!(
            decode_sample(
                &referenced.parts(),
                Some(&before),
                None,
                Format::Referenced,
                1 << 20
            ),
            Ok(now)
        );
    }

    #[test]
    fn a_copied_string_counts_against_the_limit() {
        let now = settings(2, 0);
        let coded = encode_sample(&now, Some(&now), None, Format::Referenced).expect("encode");
        let small = coded.coded.len() * 2;
        assert!(small < now.len());
        assert_eq!(
            decode_sample(&coded.parts(), Some(&now), None, Format::Referenced, small),
            Err(DeltaError::TooLarge { limit: small })
        );
    }

    #[test]
    fn formats_round_trip_on_the_wire() {
        for format in [Format::Copied, Format::Referenced] {
            assert_eq!(Format::from_wire(format.to_wire()), Some(format));
        }
        assert_eq!(Format::from_wire(2), None);
    }

    #[test]
    fn a_steady_counter_codes_to_almost_nothing() {
        let (a, b, c) = (database(0, 50), database(2, 50), database(4, 50));
        let coded = encode_sample(&c, Some(&b), Some(&a), Format::CURRENT).expect("encode");
        // Tags remain; every varint is a residual of 0 or so.
        let alone = encode_sample(&c, None, None, Format::CURRENT).expect("encode");
        assert!(
            coded.len() * 10 < c.len() * 7,
            "{} vs {}",
            coded.len(),
            c.len()
        );
        assert!(coded.len() < alone.len());
    }

    #[test]
    fn decoding_stops_at_its_limit() {
        // One-byte residuals that stand for ten-byte values.
        let big = Sample {
            instance: "i".into(),
            time_unix_micros: -1,
            family: Some(Family::Table(TableSnapshot {
                tables: (0..200)
                    .map(|_| TableRow {
                        seq_scan: Some(-1),
                        idx_scan: Some(-1),
                        ..Default::default()
                    })
                    .collect(),
            })),
        }
        .encode_to_vec();
        let coded = encode_sample(&big, Some(&big), None, Format::CURRENT).expect("encode");
        let small = coded.coded.len();
        assert!(small * 3 < big.len(), "{small} vs {}", big.len());
        assert_eq!(
            decode_sample(&coded.parts(), Some(&big), None, Format::CURRENT, small),
            Err(DeltaError::TooLarge { limit: small })
        );
        assert_eq!(
            decode_sample(&coded.parts(), Some(&big), None, Format::CURRENT, big.len()),
            Ok(big)
        );
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let good = database(1, 2);
        for cut in 0..good.len() {
            // Every truncation either decodes (a cut between fields) or fails.
            let parts = CodedParts {
                coded: &good[..cut],
                bits: &[],
                rows: &[],
            };
            let _ = decode_sample(&parts, Some(&good), Some(&good), Format::CURRENT, 1 << 20);
        }
        for bad in [
            &[0x0b_u8][..],
            &[0x08, 0xff],
            &[0x00, 0x01],
            &[0x12, 0x7f, 0x01],
        ] {
            let parts = CodedParts {
                coded: bad,
                bits: &[],
                rows: &[],
            };
            assert!(
                decode_sample(&parts, None, None, Format::CURRENT, 1 << 20).is_err(),
                "{bad:?}"
            );
        }
        // Residuals whose bits or row matches are missing.
        let coded =
            encode_sample(&good, Some(&database(0, 2)), None, Format::CURRENT).expect("encode");
        for (bits, rows) in [(&[][..], &coded.rows[..]), (&coded.bits[..], &[][..])] {
            let parts = CodedParts {
                coded: &coded.coded,
                bits,
                rows,
            };
            assert!(
                decode_sample(
                    &parts,
                    Some(&database(0, 2)),
                    None,
                    Format::CURRENT,
                    1 << 20
                )
                .is_err()
            );
        }
    }

    #[test]
    fn keys_and_batches_split() {
        let a = database(0, 1);
        assert_eq!(
            sample_key(&a),
            Some(SampleKey {
                instance: "main".into(),
                family: 10,
            })
        );
        let mut batch = Vec::new();
        push_sample(&mut batch, &a);
        push_sample(&mut batch, &database(1, 2));
        let parts = split_batch(&batch).expect("split");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], &a[..]);
        assert!(split_batch(&[0x10, 0x01]).is_err());
    }
}
