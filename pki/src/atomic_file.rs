//! Atomic, durable replacement of a whole file.
//!
//! [`write_atomic`] guarantees, on a POSIX file system:
//!
//! - **Whole or nothing.** The contents go to a temp file in the same directory, which is then
//!   renamed over the target. A reader (or a restart after a crash) sees the old file or the
//!   complete new one, never a torn or empty one.
//! - **Durable once it returns.** The temp file is fsynced before the rename and the directory
//!   after it, so neither the contents nor the new directory entry can be lost to a power cut
//!   after `Ok`.
//! - **Private from the start.** The temp file is created with the caller's mode, so a secret is
//!   never readable by others, not even before the rename. The mode goes to `open(2)` and the
//!   process umask applies, as for any created file: 0600 is exact, 0644 may come out narrower.
//! - **Overwrites.** An existing file is replaced (its old mode does not carry over); a missing
//!   directory is an error, not created.
//! - **No litter.** On failure the temp file is removed. Only a crash in the middle can leave
//!   one, named `.<file name>.tmp.<pid>.<n>`.
//!
//! Temp names carry the process id and a per-process counter, so concurrent writers of the same
//! file, in one process or several, do not trample each other's temp file; the last rename wins.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Which step of [`write_atomic`] failed, on which path.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}", path.display())]
pub struct AtomicWriteError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl From<AtomicWriteError> for io::Error {
    /// Keeps the kind of the underlying error; the message names the step and the path.
    fn from(e: AtomicWriteError) -> Self {
        let kind = e.source.kind();
        let message = format!("{e}: {}", e.source);
        io::Error::new(kind, message)
    }
}

/// Distinguishes temp files of concurrent writers within one process.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

fn err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> AtomicWriteError + 'a {
    move |source| AtomicWriteError {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Replaces `path` with `contents` atomically and durably; a new file gets `mode` (see the
/// module documentation for the exact guarantees).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), AtomicWriteError> {
    let Some(file_name) = path.file_name() else {
        return Err(err("write", path)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path does not name a file",
        )));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp_name = OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    // Only a crashed process that had this same pid can have left this name behind.
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(err("create", &tmp))?;
        file.write_all(contents).map_err(err("write", &tmp))?;
        file.sync_all().map_err(err("fsync", &tmp))?;
        drop(file);
        fs::rename(&tmp, path).map_err(err("rename into place", path))?;
        // The rename is durable only once the directory entry is.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err("fsync directory", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    fn temp_leftovers(dir: &Path) -> Vec<OsString> {
        fs::read_dir(dir)
            .expect("list dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().contains(".tmp."))
            .collect()
    }

    #[test]
    fn creates_then_overwrites_with_the_mode_and_no_leftovers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.key");
        write_atomic(&path, b"one", 0o600).expect("first write");
        assert_eq!(fs::read(&path).expect("read back"), b"one");
        assert_eq!(mode_of(&path), 0o600);
        write_atomic(&path, b"two", 0o600).expect("second write");
        assert_eq!(fs::read(&path).expect("read back"), b"two");
        assert_eq!(mode_of(&path), 0o600);
        assert!(temp_leftovers(dir.path()).is_empty());
    }

    #[test]
    fn overwrite_does_not_keep_a_wider_old_mode() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("secret");
        fs::write(&path, b"old").expect("plain write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        write_atomic(&path, b"new", 0o600).expect("overwrite");
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn a_reader_sees_the_old_or_the_new_contents_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("big");
        let a = vec![b'a'; 256 * 1024];
        let b = vec![b'b'; 256 * 1024];
        write_atomic(&path, &a, 0o600).expect("first write");
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (path, done, a, b) = (path.clone(), done.clone(), a.clone(), b.clone());
            std::thread::spawn(move || {
                let mut reads = 0u32;
                while !done.load(Ordering::Relaxed) || reads == 0 {
                    let seen = fs::read(&path).expect("the file is always there");
                    assert!(seen == a || seen == b, "torn read: {} bytes", seen.len());
                    reads += 1;
                }
            })
        };
        for i in 0..40 {
            write_atomic(&path, if i % 2 == 0 { &b } else { &a }, 0o600).expect("rewrite");
        }
        done.store(true, Ordering::Relaxed);
        reader.join().expect("the reader saw only whole files");
    }

    #[test]
    fn a_failed_rename_leaves_the_target_alone_and_no_temp_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A non-empty directory cannot be replaced by a file, even by root.
        let path = dir.path().join("taken");
        fs::create_dir_all(path.join("inside")).expect("make the blocker");
        let e = write_atomic(&path, b"x", 0o600).expect_err("rename over a directory");
        assert_eq!(e.action, "rename into place");
        assert_eq!(e.path, path);
        assert!(path.join("inside").is_dir(), "target untouched");
        assert!(temp_leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_temp_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nope/x.key");
        let e = write_atomic(&path, b"x", 0o600).expect_err("no directory");
        assert_eq!(e.action, "create");
        assert!(e.path.starts_with(dir.path().join("nope")), "{e}");
        assert_eq!(e.source.kind(), io::ErrorKind::NotFound);
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::NotFound);
        assert!(io.to_string().contains("nope"), "{io}");
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        let e = write_atomic(Path::new("/"), b"x", 0o600).expect_err("root is no file");
        assert_eq!(e.source.kind(), io::ErrorKind::InvalidInput);
        let e = write_atomic(Path::new("a/.."), b"x", 0o600).expect_err("'..' is no file");
        assert_eq!(e.source.kind(), io::ErrorKind::InvalidInput);
    }
}
