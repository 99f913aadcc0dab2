//! Crash-safe file writes: a temp file in the same directory, fsync, rename, fsync of the
//! directory. A reader sees either the old file or the complete new one, never a torn key.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::PkiError;

/// Mode of private key files.
pub(crate) const KEY_MODE: u32 = 0o600;
/// Mode of certificate files (public).
pub(crate) const CERT_MODE: u32 = 0o644;

/// Atomically replaces `path` with `contents`, created with `mode`.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    // A leftover temp file from a crashed run of this same pid would make create_new fail.
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| PkiError::io("create", &tmp, e))?;
        file.write_all(contents)
            .map_err(|e| PkiError::io("write", &tmp, e))?;
        file.sync_all()
            .map_err(|e| PkiError::io("fsync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| PkiError::io("rename into place", path, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| PkiError::io("fsync directory", dir, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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
