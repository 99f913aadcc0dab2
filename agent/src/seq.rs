//! Batch sequence numbers that keep increasing across agent restarts.
//!
//! Ingest deduplicates on `(agent, seq)`, so a restarted agent that reused a
//! seq would have its new data discarded as a duplicate. Numbers are handed
//! out from reserved blocks: before the first number of a block is issued,
//! the block's end (the high-water mark) is written durably to
//! `<state_dir>/seq`. After a crash the agent continues from the stored mark,
//! skipping at most one block of unused numbers; it never goes back.
//!
//! File format (one line, ASCII):
//!
//! ```text
//! lasect-agent-seq v1 <next> <check>
//! ```
//!
//! `<next>` is the lowest seq that was never issued; `<check>` is the FNV-1a
//! 64-bit hash (16 hex digits) of everything before it on the line, so a
//! damaged file is refused instead of silently restarting low. The file is
//! replaced atomically and durably with `lasect_pki::atomic_file::write_atomic`
//! (temp file, fsync, rename, fsync the directory).

use std::fs;
use std::path::{Path, PathBuf};

use lasect_pki::atomic_file::write_atomic;

/// Numbers reserved per write of the seq file.
pub const DEFAULT_BLOCK: u64 = 1000;

const FILE_NAME: &str = "seq";
const MAGIC: &str = "lasect-agent-seq";
const VERSION: &str = "v1";

#[derive(Debug, thiserror::Error)]
pub enum SeqError {
    #[error("cannot create state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read sequence file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "sequence file {path} is corrupt ({reason}); refusing to guess where to continue. \
         Remove it only if this agent id is re-enrolled, or write a value above every seq ever sent"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write sequence file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sequence numbers exhausted")]
    Exhausted,
}

/// Hands out strictly increasing seqs, persisting a high-water mark ahead of them.
#[derive(Debug)]
pub struct SeqAllocator {
    dir: PathBuf,
    /// Next number to hand out.
    next: u64,
    /// Exclusive end of the durably reserved range.
    reserved_until: u64,
    block: u64,
}

impl SeqAllocator {
    /// Opens (or starts) the sequence in `state_dir`, creating the directory
    /// if needed. Nothing is written until the first [`SeqAllocator::next_seq`].
    pub fn open(state_dir: &Path) -> Result<Self, SeqError> {
        Self::open_with_block(state_dir, DEFAULT_BLOCK)
    }

    /// Like [`SeqAllocator::open`] with a custom block size (at least 1).
    pub fn open_with_block(state_dir: &Path, block: u64) -> Result<Self, SeqError> {
        fs::create_dir_all(state_dir).map_err(|source| SeqError::CreateDir {
            path: state_dir.to_owned(),
            source,
        })?;
        let path = state_dir.join(FILE_NAME);
        let next = match fs::read(&path) {
            Ok(bytes) => parse(&bytes).map_err(|reason| SeqError::Corrupt {
                path: path.clone(),
                reason,
            })?,
            // Seq 0 is the protobuf default; start at 1 so it never looks unset.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
            Err(source) => return Err(SeqError::Read { path, source }),
        };
        Ok(Self {
            dir: state_dir.to_owned(),
            next,
            reserved_until: next,
            block: block.max(1),
        })
    }

    /// The next seq; reserves a new block on disk first when the current one is used up.
    pub fn next_seq(&mut self) -> Result<u64, SeqError> {
        if self.next >= self.reserved_until {
            let mark = self
                .next
                .checked_add(self.block)
                .ok_or(SeqError::Exhausted)?;
            self.persist(mark)?;
            self.reserved_until = mark;
        }
        let seq = self.next;
        self.next += 1;
        Ok(seq)
    }

    fn persist(&self, mark: u64) -> Result<(), SeqError> {
        let path = self.dir.join(FILE_NAME);
        write_atomic(&path, render(mark).as_bytes(), 0o644).map_err(|e| SeqError::Write {
            path: path.clone(),
            source: e.into(),
        })
    }
}

fn render(next: u64) -> String {
    let body = format!("{MAGIC} {VERSION} {next}");
    format!("{body} {:016x}\n", fnv1a64(body.as_bytes()))
}

fn parse(bytes: &[u8]) -> Result<u64, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let line = text
        .strip_suffix('\n')
        .ok_or_else(|| "truncated (no final newline)".to_string())?;
    let (body, check) = line
        .rsplit_once(' ')
        .ok_or_else(|| "unrecognised format".to_string())?;
    let mut fields = body.split(' ');
    if fields.next() != Some(MAGIC) {
        return Err("unrecognised format".into());
    }
    match fields.next() {
        Some(VERSION) => {}
        Some(v) => return Err(format!("unsupported format version {v:?}")),
        None => return Err("unrecognised format".into()),
    }
    let next = fields
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| "unreadable high-water mark".to_string())?;
    if fields.next().is_some() {
        return Err("unrecognised format".into());
    }
    if check != format!("{:016x}", fnv1a64(body.as_bytes())) {
        return Err("checksum mismatch".into());
    }
    if next == 0 {
        return Err("high-water mark is 0".into());
    }
    Ok(next)
}

/// FNV-1a, 64 bit: enough to detect a damaged or hand-edited file.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_parse_round_trip() {
        for n in [1, 1000, u64::MAX] {
            assert_eq!(parse(render(n).as_bytes()), Ok(n));
        }
    }

    #[test]
    fn damaged_files_are_refused() {
        let good = render(5000);
        let flipped = good.replace("5000", "1000");
        for (bytes, why) in [
            (b"".to_vec(), "truncated"),
            (b"garbage\n".to_vec(), "unrecognised"),
            (good.trim_end().as_bytes().to_vec(), "truncated"),
            (flipped.into_bytes(), "checksum"),
            (vec![0xff, 0xfe, b'\n'], "UTF-8"),
            (
                good.replace(" v1 ", " v9 ").into_bytes(),
                "unsupported format version",
            ),
        ] {
            let err = parse(&bytes).expect_err("damaged file must be refused");
            assert!(err.contains(why), "{err:?} should mention {why:?}");
        }
    }
}
