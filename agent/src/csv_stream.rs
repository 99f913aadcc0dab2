//! CSV that arrives in pieces (a csvlog file still being written, a
//! `COPY … TO STDOUT` stream), read record by record with csv-core.
//!
//! RFC 4180 with `\n` as the only record terminator: a `\r` before it stays
//! in the last field (a reader of CRLF files strips it), and a quote opens a
//! quoted field only at the start of the field. Unlike csv-core alone, an
//! empty line is a record of one empty field: COPY writes a row whose only
//! column is NULL that way, and a log reader must count it, not skip it.
//! Never fails and never panics: csv-core prefers *a* reading to none.

use csv_core::{ReadRecordResult, Reader, ReaderBuilder, Terminator};

pub struct CsvStream {
    reader: Reader,
    /// Whether the fields of a record are kept (a counter needs none).
    keep: bool,
    bytes: Vec<u8>,
    len: usize,
    ends: Vec<usize>,
    fields: usize,
    /// A record has begun and not ended.
    open: bool,
}

impl CsvStream {
    /// A reader that keeps each record's fields until the next [`Self::feed`].
    pub fn new() -> Self {
        Self::with(true)
    }

    /// A reader that only finds where records end.
    pub fn counting() -> Self {
        Self::with(false)
    }

    fn with(keep: bool) -> Self {
        Self {
            reader: ReaderBuilder::new()
                .terminator(Terminator::Any(b'\n'))
                .build(),
            keep,
            bytes: vec![0; 256],
            len: 0,
            ends: vec![0; 32],
            fields: 0,
            open: false,
        }
    }

    /// Reads `input` up to the end of one record: returns how many bytes it
    /// took and whether they completed a record (whose fields
    /// [`Self::fields`] then gives).
    pub fn feed(&mut self, input: &[u8]) -> (usize, bool) {
        if input.is_empty() {
            // csv-core takes empty input as the end of the data.
            return (0, false);
        }
        if !self.open {
            self.len = 0;
            self.fields = 0;
            if input[0] == b'\n' {
                self.ends[0] = 0;
                self.fields = 1;
                return (1, true);
            }
        }
        self.open = true;
        let mut used = 0;
        loop {
            if !self.keep {
                self.len = 0;
                self.fields = 0;
            }
            if self.len == self.bytes.len() {
                self.bytes.resize(self.bytes.len() * 2, 0);
            }
            if self.fields == self.ends.len() {
                self.ends.resize(self.ends.len() * 2, 0);
            }
            let (result, nin, nout, nend) = self.reader.read_record(
                &input[used..],
                &mut self.bytes[self.len..],
                &mut self.ends[self.fields..],
            );
            used += nin;
            self.len += nout;
            self.fields += nend;
            match result {
                ReadRecordResult::Record => {
                    self.open = false;
                    return (used, true);
                }
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {}
                ReadRecordResult::InputEmpty | ReadRecordResult::End => return (used, false),
            }
        }
    }

    /// Whether a record has begun and not ended yet.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The fields of the record the last [`Self::feed`] completed (none for
    /// a counting reader).
    pub fn fields(&self) -> Vec<&[u8]> {
        let ends = &self.ends[..self.fields];
        let mut start = 0;
        ends.iter()
            .map(|&end| {
                let field = self.bytes.get(start..end).unwrap_or_default();
                start = end;
                field
            })
            .collect()
    }

    /// Forgets a record begun and not ended (its reader found it broken).
    pub fn reset(&mut self) {
        self.reader.reset();
        self.open = false;
        self.len = 0;
        self.fields = 0;
    }
}

impl Default for CsvStream {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::CsvStream;

    /// Every record of `input`, fed in pieces of `piece` bytes.
    fn records(input: &[u8], piece: usize) -> Vec<Vec<Vec<u8>>> {
        let mut s = CsvStream::new();
        let mut out = Vec::new();
        for mut chunk in input.chunks(piece) {
            while !chunk.is_empty() {
                let (used, done) = s.feed(chunk);
                chunk = &chunk[used..];
                if done {
                    out.push(s.fields().iter().map(|f| f.to_vec()).collect());
                }
            }
        }
        out
    }

    #[test]
    fn quotes_newlines_empty_lines_and_bytes_survive_any_split() {
        let input: &[u8] =
            b"a,\"b,\"\"c\"\"\nd\"\n\n\"\",x\0\xff\r\n\"long\n\n\",,\"\xc3\n\xa9\"\n";
        let want: Vec<Vec<Vec<u8>>> = vec![
            vec![b"a".to_vec(), b"b,\"c\"\nd".to_vec()],
            vec![b"".to_vec()],
            vec![b"".to_vec(), b"x\0\xff\r".to_vec()],
            vec![b"long\n\n".to_vec(), b"".to_vec(), b"\xc3\n\xa9".to_vec()],
        ];
        for piece in 1..=input.len() {
            assert_eq!(records(input, piece), want, "pieces of {piece} bytes");
        }
    }

    #[test]
    fn long_records_grow_the_buffers() {
        let field = "x".repeat(10_000);
        let line = format!("{}\n", vec![field.as_str(); 100].join(","));
        let r = records(line.as_bytes(), 4096);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].len(), 100);
        assert!(r[0].iter().all(|f| f == field.as_bytes()));
    }

    #[test]
    fn a_reset_drops_the_open_record() {
        let mut s = CsvStream::new();
        assert_eq!(s.feed(b"\"open\n"), (6, false));
        assert!(s.is_open());
        s.reset();
        assert_eq!(s.feed(b"a,b\n"), (4, true));
        assert_eq!(s.fields(), vec![&b"a"[..], &b"b"[..]]);
    }
}
