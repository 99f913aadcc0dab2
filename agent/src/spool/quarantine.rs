//! `<state_dir>/spool/quarantine/`: batches ingest refused for good, and
//! damaged parts of segments found at start, kept for a human to inspect.
//!
//! A refused batch is `batch-<seq, 20 digits>.rec`: one text line
//! `lasect-quarantine v1 seq=<seq> reason=<reason, one line>`, then the
//! batch's spool record (see `record`). Damaged segment bytes are
//! `damaged-<segment file>-<offset>.bin`, the raw bytes from the first bad one
//! to the end of the segment. Only the newest [`KEEP_FILES`] files are kept.

use std::fs;
use std::io;
use std::path::Path;

pub const DIR_NAME: &str = "quarantine";
pub const KEEP_FILES: usize = 100;

/// Writes the quarantine file of a refused batch.
pub fn write_batch(dir: &Path, seq: u64, reason: &str, record: &[u8]) -> io::Result<()> {
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut bytes = format!("lasect-quarantine v1 seq={seq} reason={reason}\n").into_bytes();
    bytes.extend_from_slice(record);
    fs::write(dir.join(format!("batch-{seq:020}.rec")), bytes)?;
    prune(dir)
}

/// Keeps damaged segment bytes.
pub fn write_damaged(dir: &Path, segment: &str, offset: u64, bytes: &[u8]) -> io::Result<()> {
    fs::write(dir.join(format!("damaged-{segment}-{offset}.bin")), bytes)?;
    prune(dir)
}

/// Removes the oldest files beyond [`KEEP_FILES`].
pub fn prune(dir: &Path) -> io::Result<()> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let modified = entry.metadata()?.modified()?;
        files.push((modified, entry.file_name(), entry.path()));
    }
    if files.len() <= KEEP_FILES {
        return Ok(());
    }
    files.sort();
    let excess = files.len() - KEEP_FILES;
    for (_, _, path) in files.into_iter().take(excess) {
        fs::remove_file(path)?;
    }
    Ok(())
}
