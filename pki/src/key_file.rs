//! The CA's files: modes, and reads and writes mapped to [`PkiError`]. Writes go through
//! [`crate::atomic_file`], so a reader never sees a torn key or certificate.

use std::fs;
use std::path::Path;

use crate::PkiError;
use crate::atomic_file::AtomicWriteError;

/// Mode of private key files.
pub(crate) const KEY_MODE: u32 = 0o600;
/// Mode of certificate files (public).
pub(crate) const CERT_MODE: u32 = 0o644;

/// Atomically and durably replaces `path` with `contents`, created with `mode`.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    crate::atomic_file::write_atomic(path, contents, mode).map_err(
        |AtomicWriteError {
             action,
             path,
             source,
         }| PkiError::io(action, path, source),
    )
}

/// Reads a UTF-8 (PEM) file.
pub(crate) fn read_pem(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|e| PkiError::io("read", path, e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writes_with_mode_and_replaces() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.key");
        write_atomic(&path, b"one", KEY_MODE).expect("first write");
        write_atomic(&path, b"two", KEY_MODE).expect("second write");
        assert_eq!(fs::read(&path).expect("read back"), b"two");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("list dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "temp files left behind");
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nope/x.key");
        assert!(matches!(
            write_atomic(&path, b"x", KEY_MODE),
            Err(PkiError::Io { .. })
        ));
    }
}
