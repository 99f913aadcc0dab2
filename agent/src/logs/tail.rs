//! Following the log files of one source (a directory, a file name
//! pattern, a format) across rotation and truncation, with offsets that are
//! read ahead in memory and made durable only by [`Tailer::commit`].
//!
//! - Files are read oldest first (modification time, then name), so the
//!   end of a rotated file comes before the start of the next.
//! - A file is known by path and (dev, inode): a new inode at a known path
//!   is a new file, read from its start; a file shorter than its offset was
//!   truncated (`log_truncate_on_rotation`) and is read from its start.
//! - Where to start in a file the agent has no offset for: on the very
//!   first run (no saved offsets) existing files are read from their end
//!   (history is not replayed); files that appear later, or were written
//!   after the last saved offsets, are read from their start.
//! - [`Tailer::rewind`] forgets what was read since the last commit (the
//!   batch could not be spooled), so those events are read again.
//! - A directory or file the agent cannot read gives one warning (again
//!   only after it became readable and failed anew), never an error per
//!   cycle.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{Read as _, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use regex::Regex;

use super::entry::{Entry, Format};
use super::offsets::{self, FileOffset, Offsets};
use super::parse::Parser;

/// Bytes read from one file per cycle at most; the rest waits a cycle.
pub const MAX_READ_BYTES: usize = 4 << 20;
/// Files written this long before the last saved offsets are history.
const HISTORY_SLACK_SECS: i64 = 60;

/// Where a server writes one log format.
#[derive(Debug, Clone)]
pub struct Source {
    pub format: Format,
    pub dir: PathBuf,
    /// Matches the file names of this format (from `log_filename`).
    pub pattern: Regex,
    /// `pg_current_logfile()`, when the server told it.
    pub current: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct FileState {
    dev: u64,
    ino: u64,
    committed: u64,
    read_to: u64,
}

/// What one read produced.
#[derive(Debug, Default)]
pub struct Chunk {
    pub entries: Vec<Entry>,
    pub unparsed_lines: u64,
    pub truncated_lines: u64,
}

pub struct Tailer {
    state_file: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    /// Time of the offsets loaded at start; `None` on a first run.
    saved_unix_secs: Option<i64>,
    /// False until the first listing (decides where unknown files start).
    listed: bool,
    /// Problems already warned about (paths), until they go away.
    warned: HashSet<String>,
    dirty: bool,
}

impl Tailer {
    /// Loads the saved offsets of `state_file` (a damaged file is warned
    /// about and treated as absent).
    pub fn open(state_file: PathBuf) -> Self {
        let saved = match offsets::load(&state_file) {
            Ok(saved) => saved,
            Err(e) => {
                tracing::warn!(error = %e, "cannot use the saved log offsets");
                None
            }
        };
        let saved_unix_secs = saved.as_ref().map(|s| s.saved_unix_secs);
        let files = saved
            .map(|s| s.files)
            .unwrap_or_default()
            .into_iter()
            .map(|f| {
                let state = FileState {
                    dev: f.dev,
                    ino: f.ino,
                    committed: f.offset,
                    read_to: f.offset,
                };
                (f.path, state)
            })
            .collect();
        Self {
            state_file,
            files,
            saved_unix_secs,
            listed: false,
            warned: HashSet::new(),
            dirty: false,
        }
    }

    fn warn_once(&mut self, key: String, message: impl FnOnce() -> String) {
        if self.warned.insert(key) {
            tracing::warn!("{}", message());
        }
    }

    /// Reads what the files of `source` gained since the last read.
    pub fn read(&mut self, source: &Source, parser: &Parser, max_line_bytes: usize) -> Chunk {
        let mut out = Chunk::default();
        let listing = match self.list(source) {
            Some(l) => l,
            None => return out,
        };
        let first_listing = !self.listed;
        self.listed = true;
        let seen: HashSet<&PathBuf> = listing.iter().map(|(p, _)| p).collect();
        let before = self.files.len();
        self.files.retain(|p, _| seen.contains(p));
        self.dirty |= self.files.len() != before;
        for (path, meta) in &listing {
            let (dev, ino, len) = (meta.dev(), meta.ino(), meta.len());
            let state = match self.files.get(path) {
                Some(s) if s.dev == dev && s.ino == ino => *s,
                known => {
                    let start = if known.is_some() {
                        0
                    } else {
                        self.start_of_unknown(first_listing, meta, len)
                    };
                    FileState {
                        dev,
                        ino,
                        committed: start,
                        read_to: start,
                    }
                }
            };
            let mut state = state;
            if len < state.read_to {
                tracing::info!(path = %path.display(), "log file was truncated; reading it from its start");
                state.read_to = 0;
                state.committed = state.committed.min(len);
            }
            if len > state.read_to {
                match read_chunk(path, state.read_to, len) {
                    Ok(buf) => {
                        self.warned.remove(&path.display().to_string());
                        let at_eof = state.read_to + buf.len() as u64 >= len;
                        let mut parsed = parser.parse(&buf, at_eof, max_line_bytes);
                        if parsed.consumed == 0 && !at_eof {
                            // One entry larger than a whole read: take it as it is.
                            parsed = parser.parse(&buf, true, max_line_bytes);
                            if parsed.consumed == 0 {
                                parsed.consumed = buf.len();
                                parsed.unparsed_lines += 1;
                            }
                        }
                        state.read_to += parsed.consumed as u64;
                        out.entries.extend(parsed.entries);
                        out.unparsed_lines += parsed.unparsed_lines;
                        out.truncated_lines += parsed.truncated_lines;
                    }
                    Err(e) => self.warn_once(path.display().to_string(), || {
                        format!(
                            "cannot read log file {}: {e}; its events are skipped until it is readable",
                            path.display()
                        )
                    }),
                }
            }
            if self.files.get(path) != Some(&state) {
                self.dirty = true;
            }
            self.files.insert(path.clone(), state);
        }
        out
    }

    /// Where to start in a file without an offset.
    fn start_of_unknown(&self, first_listing: bool, meta: &std::fs::Metadata, len: u64) -> u64 {
        match self.saved_unix_secs {
            // First run: the server's history is not replayed.
            None if first_listing => len,
            None => 0,
            Some(saved) => {
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                if first_listing && mtime < saved - HISTORY_SLACK_SECS {
                    len
                } else {
                    0
                }
            }
        }
    }

    /// The files of `source`, oldest first; `None` (warned once) when the
    /// directory cannot be listed.
    fn list(&mut self, source: &Source) -> Option<Vec<(PathBuf, std::fs::Metadata)>> {
        let key = source.dir.display().to_string();
        let entries = match std::fs::read_dir(&source.dir) {
            Ok(e) => e,
            Err(e) => {
                self.warn_once(key, || {
                    format!(
                        "cannot list log directory {}: {e}; no log events until it is readable",
                        source.dir.display()
                    )
                });
                return None;
            }
        };
        self.warned.remove(&key);
        let mut files: Vec<(PathBuf, std::fs::Metadata)> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                source.pattern.is_match(&name)
                    || source.current.as_deref() == Some(e.path().as_path())
            })
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                meta.is_file().then(|| (e.path(), meta))
            })
            .collect();
        files.sort_by(|(a, ma), (b, mb)| {
            ma.modified()
                .ok()
                .cmp(&mb.modified().ok())
                .then_with(|| a.cmp(b))
        });
        Some(files)
    }

    /// Makes the offsets read so far durable (call once their events are
    /// in the spool).
    pub fn commit(&mut self) -> Result<(), offsets::OffsetsError> {
        for s in self.files.values_mut() {
            s.committed = s.read_to;
        }
        if !self.dirty {
            return Ok(());
        }
        let saved = Offsets {
            saved_unix_secs: chrono::Utc::now().timestamp(),
            files: self
                .files
                .iter()
                .map(|(path, s)| FileOffset {
                    path: path.clone(),
                    dev: s.dev,
                    ino: s.ino,
                    offset: s.committed,
                })
                .collect(),
        };
        offsets::save(&self.state_file, &saved)?;
        self.dirty = false;
        Ok(())
    }

    /// Forgets what was read since the last commit.
    pub fn rewind(&mut self) {
        for s in self.files.values_mut() {
            s.read_to = s.committed;
        }
    }
}

fn read_chunk(path: &Path, from: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let want = usize::try_from(len - from).unwrap_or(MAX_READ_BYTES);
    let mut buf = Vec::with_capacity(want.min(MAX_READ_BYTES));
    f.take(want.min(MAX_READ_BYTES) as u64)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::logs::prefix::Prefix;

    fn source(dir: &Path) -> Source {
        Source {
            format: Format::Stderr,
            dir: dir.to_owned(),
            pattern: Regex::new(r"\Apostgresql-.*\.log\z").expect("regex"),
            current: None,
        }
    }

    fn parser() -> Parser {
        Parser::Stderr(Prefix::compile("[%p] ").expect("prefix"))
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open");
        f.write_all(text.as_bytes()).expect("write");
    }

    fn messages(r: &Chunk) -> Vec<String> {
        r.entries.iter().map(|e| e.message.clone()).collect()
    }

    #[test]
    fn follows_appends_rotation_truncation_and_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = dir.path().join("log");
        std::fs::create_dir(&logs).expect("mkdir");
        let state = dir.path().join("state/logs/main.json");
        let a = logs.join("postgresql-a.log");
        append(&a, "[1] LOG:  history\n");
        std::fs::write(logs.join("other.txt"), "[1] LOG:  not a log file\n").expect("write");

        let mut t = Tailer::open(state.clone());
        // First run: existing history is skipped.
        assert!(t.read(&source(&logs), &parser(), 1000).entries.is_empty());
        append(&a, "[1] LOG:  one\n");
        assert_eq!(messages(&t.read(&source(&logs), &parser(), 1000)), ["one"]);
        // Not spooled: read again after a rewind.
        t.rewind();
        assert_eq!(messages(&t.read(&source(&logs), &parser(), 1000)), ["one"]);
        t.commit().expect("commit");

        // Rotation: a new file is read from its start.
        append(&a, "[1] LOG:  two\n");
        let b = logs.join("postgresql-b.log");
        append(&b, "[1] LOG:  three\n");
        assert_eq!(
            messages(&t.read(&source(&logs), &parser(), 1000)),
            ["two", "three"]
        );
        // Read but not committed when the agent stops: read again.
        drop(t);
        let mut t = Tailer::open(state.clone());
        assert_eq!(
            messages(&t.read(&source(&logs), &parser(), 1000)),
            ["two", "three"]
        );
        t.commit().expect("commit");
        drop(t);
        // Restart after a commit: nothing repeats, what came meanwhile is read.
        append(&b, "[1] LOG:  four\n");
        let mut t = Tailer::open(state.clone());
        assert_eq!(messages(&t.read(&source(&logs), &parser(), 1000)), ["four"]);
        t.commit().expect("commit");

        // Truncation (log_truncate_on_rotation) and replacement by a new inode.
        std::fs::write(&b, "[1] LOG:  five\n").expect("truncate");
        assert_eq!(messages(&t.read(&source(&logs), &parser(), 1000)), ["five"]);
        std::fs::remove_file(&a).expect("rm");
        append(&a, "[1] LOG:  six and more\n");
        assert_eq!(
            messages(&t.read(&source(&logs), &parser(), 1000)),
            ["six and more"]
        );
    }

    #[test]
    fn a_missing_directory_is_not_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = Tailer::open(dir.path().join("s.json"));
        let r = t.read(&source(&dir.path().join("absent")), &parser(), 1000);
        assert!(r.entries.is_empty());
        assert!(t.warned.len() == 1);
        let _ = t.read(&source(&dir.path().join("absent")), &parser(), 1000);
        assert!(t.warned.len() == 1, "warned once");
    }
}
