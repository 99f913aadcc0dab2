//! Durable read offsets of the log files, one file per instance in
//! `<state_dir>/logs/<instance>.json`:
//! `{"saved_unix_secs": …, "files": [{"path", "dev", "ino", "offset"}]}`.
//!
//! Written only after the events read up to those offsets are in the spool,
//! and replaced atomically and durably ([`lasect_pki::atomic_file`]), so
//! after a crash the file holds either the old or the new offsets: a
//! restart re-reads at most what was not yet spooled, and skips nothing. `dev`/`ino` tell a rotated file that reuses a name from the one
//! the offset belongs to.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Offsets {
    pub saved_unix_secs: i64,
    pub files: Vec<FileOffset>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileOffset {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is damaged ({source}); log files are read from their end")]
    Damaged {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The state file of `instance` under `state_dir`; the name is kept to
/// characters safe in a file name.
pub fn state_file(state_dir: &Path, instance: &str) -> PathBuf {
    let safe: String = instance
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    state_dir.join("logs").join(format!("{safe}.json"))
}

/// The saved offsets, or `None` when none were saved yet.
pub fn load(path: &Path) -> Result<Option<Offsets>, OffsetsError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(OffsetsError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| OffsetsError::Damaged {
            path: path.to_owned(),
            source,
        })
}

pub fn save(path: &Path, offsets: &Offsets) -> Result<(), OffsetsError> {
    let err = |source| OffsetsError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(err)?;
    let body = serde_json::to_vec(offsets).map_err(|e| err(std::io::Error::other(e)))?;
    // Nothing secret in it: the agent's usual state-file mode, 0666 less the umask.
    lasect_pki::atomic_file::write_atomic(path, &body, 0o666).map_err(|e| err(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_missing_and_damaged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = state_file(dir.path(), "main/../x y");
        assert_eq!(
            path.file_name().and_then(|n| n.to_str()),
            Some("main_.._x_y.json")
        );
        assert_eq!(load(&path).expect("missing is fine"), None);
        let offsets = Offsets {
            saved_unix_secs: 5,
            files: vec![FileOffset {
                path: "/l/a.log".into(),
                dev: 1,
                ino: 2,
                offset: 3,
            }],
        };
        save(&path, &offsets).expect("save");
        assert_eq!(load(&path).expect("load"), Some(offsets));
        fs::write(&path, b"{\"files\": [tr").expect("damage");
        assert!(matches!(load(&path), Err(OffsetsError::Damaged { .. })));
    }
}
