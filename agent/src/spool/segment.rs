//! Segment files: naming, the header, scanning for records, appending.
//!
//! A segment is `seg-<id>.log` (`id` in 16 hex digits, increasing) holding a
//! 16-byte header followed by records back to back:
//!
//! ```text
//! offset size field
//!      0    8 magic           b"LSCTSPL\n"
//!      8    4 format version  u32 LE (1)
//!     12    4 reserved        0
//!     16      records, see `record`
//! ```
//!
//! Only the newest segment of a running agent is ever appended to; after a
//! restart the agent starts a new one, so damage in an old segment can only
//! be at its tail or inside it, never followed by records written later.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::record::{self, RecordError, RecordMeta};

pub const MAGIC: &[u8; 8] = b"LSCTSPL\n";
pub const SEGMENT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 16;

pub fn header() -> [u8; HEADER_LEN] {
    let mut h = [0; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h
}

pub fn file_name(id: u64) -> String {
    format!("seg-{id:016x}.log")
}

/// The id of a segment file name, `None` for any other file.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// One valid record found by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    pub meta: RecordMeta,
    pub offset: u64,
    pub len: u32,
}

/// Where reading a segment stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every byte belongs to a valid record.
    Clean,
    /// The header itself is missing, wrong or of another version.
    BadHeader(String),
    /// The data stops inside a record at `offset` (a torn write).
    Torn { offset: u64 },
    /// The bytes at `offset` are not a valid record (bit flip, garbage).
    Corrupt { offset: u64, error: RecordError },
}

/// The valid records of a segment image, in order, and how it ends. Never
/// panics, whatever the bytes.
pub fn scan(data: &[u8]) -> (Vec<Located>, End) {
    if data.len() < HEADER_LEN {
        return (
            Vec::new(),
            End::BadHeader(format!("{} bytes, shorter than the header", data.len())),
        );
    }
    if &data[..8] != MAGIC {
        return (Vec::new(), End::BadHeader("bad magic number".into()));
    }
    let mut version = [0; 4];
    version.copy_from_slice(&data[8..12]);
    let version = u32::from_le_bytes(version);
    if version != SEGMENT_VERSION {
        return (
            Vec::new(),
            End::BadHeader(format!("unsupported segment version {version}")),
        );
    }
    let mut records = Vec::new();
    let mut at = HEADER_LEN;
    while at < data.len() {
        match record::check(&data[at..]) {
            Ok((meta, len)) => {
                records.push(Located {
                    meta,
                    offset: at as u64,
                    len: u32::try_from(len).unwrap_or(u32::MAX),
                });
                at += len;
            }
            Err(e) if e.is_truncation() => {
                return (records, End::Torn { offset: at as u64 });
            }
            Err(error) => {
                return (
                    records,
                    End::Corrupt {
                        offset: at as u64,
                        error,
                    },
                );
            }
        }
    }
    (records, End::Clean)
}

/// Reads `len` bytes at `offset` of a segment file.
pub fn read_at(path: &Path, offset: u64, len: u32) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut buf = vec![0; len as usize];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// A seam to make writes fail as if the disk were full, for tests on
/// machines where a tiny filesystem cannot be mounted.
#[derive(Debug, Clone, Default)]
pub struct DiskFaults(Arc<AtomicBool>);

impl DiskFaults {
    pub fn set_full(&self, full: bool) {
        self.0.store(full, Ordering::SeqCst);
    }

    fn check(&self) -> io::Result<()> {
        if self.0.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    }
}

/// The segment being appended to.
#[derive(Debug)]
pub struct Writer {
    pub id: u64,
    pub path: PathBuf,
    file: File,
    /// Bytes known to be written completely (header + whole records).
    pub len: u64,
    faults: DiskFaults,
}

impl Writer {
    /// Creates a new segment with its header, durably (file and directory).
    /// A file left behind by a failed create is removed.
    pub fn create(dir: &Path, id: u64, faults: DiskFaults) -> io::Result<Self> {
        let path = dir.join(file_name(id));
        let result = (|| {
            faults.check()?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            file.write_all(&header())?;
            file.sync_all()?;
            sync_dir(dir)?;
            Ok(file)
        })();
        match result {
            Ok(file) => Ok(Self {
                id,
                path,
                file,
                len: HEADER_LEN as u64,
                faults,
            }),
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Appends one record and returns its offset. On failure the file is cut
    /// back to its previous length so no partial record stays behind (if
    /// even that fails, recovery drops the torn tail; the caller stops
    /// appending to this segment either way).
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<u64> {
        let offset = self.len;
        let written = self
            .faults
            .check()
            .and_then(|()| self.file.write_all_at(bytes, offset));
        match written {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(offset)
            }
            Err(e) => {
                let _ = self.file.set_len(offset);
                Err(e)
            }
        }
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// Makes renames, creations and removals in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_file_name(&file_name(0xabc)), Some(0xabc));
        for bad in [
            "seg-1.log",
            "seg-000000000000000g.log",
            "state",
            "seg-0000000000000001.tmp",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn headers_are_checked() {
        assert!(matches!(scan(b"LSCT").1, End::BadHeader(_)));
        let mut h = header();
        assert_eq!(scan(&h), (Vec::new(), End::Clean));
        h[8] = 9;
        assert!(matches!(scan(&h).1, End::BadHeader(m) if m.contains("version 9")));
        h[0] = b'X';
        assert!(matches!(scan(&h).1, End::BadHeader(m) if m.contains("magic")));
    }
}
