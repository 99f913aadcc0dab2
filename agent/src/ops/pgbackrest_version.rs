//! Which pgBackRest is installed, asked (`pgbackrest version`) before a run's first pgBackRest
//! command (docs/BACKUPS.md, "Faults"): a release older than [`MINIMUM`] would fail later and
//! less clearly (an `info` document without the LSNs the catalogue stores, an unknown option),
//! so the run fails first, naming the version found, the minimum and the fix.
//!
//! The answer is kept per launch (prefix and command) and per executable file (its device,
//! inode, size and modification time): a package upgrade replaces the file, which changes
//! them, so it is noticed at the next run; otherwise the binary is asked again after
//! [`KEEP_FOR`] only.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::OpError;
use super::backup::{self, Server};

/// The oldest release Lasect works with: 2.38 added the backups' LSNs to `info
/// --output=json` (the catalogue stores them) and 2.39 the backup's percent complete (the
/// progress of a running backup) and `restore --type=lsn` choosing the backup that holds the
/// LSN (restores and drills to an LSN). The multi-repository `repo1-*` options, GCS (2.33),
/// Azure (2.28), `--archive-mode` (2.29), `--target-exclusive` and the tablespace maps are
/// older.
pub const MINIMUM: Version = Version {
    major: 2,
    minor: 39,
    patch: 0,
    release: true,
};

/// The newest major release Lasect knows; a later one may have changed what Lasect reads, so
/// it runs with a warning.
const KNOWN_MAJOR: u32 = 2;

/// How long an answer is kept for an unchanged executable.
const KEEP_FOR: Duration = Duration::from_secs(600);

/// How long `pgbackrest version` may take.
const ASK_FOR: Duration = Duration::from_secs(30);

/// A pgBackRest release number: `2.45`, `2.54.0`, `2.46dev` (a development build of 2.46,
/// older than 2.46 itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// `false` for a development or pre-release build (`dev`, `rc1` after the number).
    pub release: bool,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if self.patch != 0 {
            write!(f, ".{}", self.patch)?;
        }
        Ok(())
    }
}

/// The version `pgbackrest version` printed (`pgBackRest 2.45`): the number and the text as
/// printed; `None` when the output is not that.
pub fn parse(output: &str) -> Option<(Version, String)> {
    let line = output
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("pgBackRest "))?;
    let text = line.strip_prefix("pgBackRest ")?.trim();
    if text.is_empty() || text.contains(char::is_whitespace) {
        return None;
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits_end);
    let mut parts = number.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = match parts.next() {
        Some(p) => p.parse().ok()?,
        None => 0,
    };
    if parts.next().is_some() || !suffix.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some((
        Version {
            major,
            minor,
            patch,
            release: suffix.is_empty(),
        },
        text.to_owned(),
    ))
}

/// What the agent does with an installed version.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Supported,
    /// A major release after [`KNOWN_MAJOR`]: runs, with a warning.
    NewerMajor,
    TooOld,
}

pub fn judge(version: Version) -> Verdict {
    if version < MINIMUM {
        Verdict::TooOld
    } else if version.major > KNOWN_MAJOR {
        Verdict::NewerMajor
    } else {
        Verdict::Supported
    }
}

/// The run's error for a release older than [`MINIMUM`].
pub fn too_old(found: &str, command: &str) -> String {
    format!(
        "pgBackRest {found} is installed ({command}), older than {MINIMUM}, the oldest release \
         Lasect works with (its `info` gives the backups' LSNs and progress, its restore to an \
         LSN picks the right backup). Fix: install a newer pgBackRest, e.g. apt-get install \
         pgbackrest from the PostgreSQL apt repository (apt.postgresql.org) or your \
         distribution's backports, or point [control.pgbackrest] command at a newer one"
    )
}

/// The run's error when `pgbackrest version` printed something else.
pub fn unreadable(command: &str, output: &str) -> String {
    format!(
        "cannot tell which pgBackRest {command} is: `{command} version` printed {:?}, not \
         `pgBackRest <version>` (Lasect needs pgBackRest {MINIMUM} or newer: apt-get install \
         pgbackrest, or [control.pgbackrest] command)",
        backup::truncate(output.trim())
    )
}

/// One launch of one executable file, as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    launch: Vec<String>,
    file: Option<FileId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileId {
    path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    modified: Option<SystemTime>,
}

impl FileId {
    fn of(path: &Path) -> Option<FileId> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileId {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            modified: meta.modified().ok(),
        })
    }
}

/// The file `command` runs: itself when it is a path, else the first on the agent's `PATH`
/// (a prefix such as `runuser` keeps that `PATH`).
fn executable(command: &str) -> Option<PathBuf> {
    if command.contains('/') {
        return Some(PathBuf::from(command));
    }
    super::on_path(command)
}

/// When it was asked, and what it answered (the number, the text as printed).
type Answer = (Instant, Version, String);

static ANSWERS: LazyLock<Mutex<HashMap<Key, Answer>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
/// The newer major releases already warned about: once each per agent process.
static WARNED: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// Fails unless the pgBackRest `server` runs is [`MINIMUM`] or newer; asks it (as the
/// database user, like every command) unless the answer for this file is recent.
pub(super) async fn ensure(server: &Server) -> Result<(), OpError> {
    let mut launch = server.run_as.clone();
    launch.push(server.pgbackrest.clone());
    let key = Key {
        file: executable(&server.pgbackrest).and_then(|p| FileId::of(&p)),
        launch,
    };
    let known = ANSWERS
        .lock()
        .ok()
        .and_then(|answers| answers.get(&key).cloned())
        .filter(|(at, _, _)| at.elapsed() < KEEP_FOR);
    let (version, text) = match known {
        Some((_, version, text)) => (version, text),
        None => {
            let Some(output) = ask(server).await? else {
                // It did not answer: the command itself will fail with the launcher's or
                // pgBackRest's own words (not installed, not executable).
                return Ok(());
            };
            let Some((version, text)) = parse(&output) else {
                return Err(OpError::Failed {
                    message: unreadable(&server.pgbackrest, &output),
                    detail: json!({ "output": backup::truncate(&output) }),
                });
            };
            if let Ok(mut answers) = ANSWERS.lock() {
                answers.retain(|_, (at, _, _)| at.elapsed() < KEEP_FOR);
                answers.insert(key, (Instant::now(), version, text.clone()));
            }
            (version, text)
        }
    };
    match judge(version) {
        Verdict::Supported => Ok(()),
        Verdict::NewerMajor => {
            let first = WARNED
                .lock()
                .map(|mut w| w.insert(text.clone()))
                .unwrap_or(false);
            if first {
                tracing::warn!(
                    version = %text,
                    command = %server.pgbackrest,
                    "pgBackRest {text} is a major release newer than Lasect knows ({KNOWN_MAJOR}.x): \
                     backups run, but check the catalogue and progress it reports"
                );
            }
            Ok(())
        }
        Verdict::TooOld => Err(OpError::Failed {
            message: too_old(&text, &server.pgbackrest),
            detail: json!({ "version": text, "minimum": MINIMUM.to_string() }),
        }),
    }
}

/// `pgbackrest version`'s stdout, or `None` when it could not be started or failed.
async fn ask(server: &Server) -> Result<Option<String>, OpError> {
    let launch = backup::launch(server);
    let mut command = tokio::process::Command::new(launch[0]);
    command
        .args(&launch[1..])
        .arg("version")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let Ok(child) = command.spawn() else {
        return Ok(None);
    };
    match tokio::time::timeout(ASK_FOR, child.wait_with_output()).await {
        Err(_) => Err(OpError::Failed {
            message: format!(
                "`{} version` did not answer within {ASK_FOR:?}",
                server.pgbackrest
            ),
            detail: Value::Null,
        }),
        Ok(Ok(out)) if out.status.success() => {
            Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
        }
        Ok(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32, patch: u32, release: bool) -> Version {
        Version {
            major,
            minor,
            patch,
            release,
        }
    }

    #[test]
    fn versions_are_read_as_pgbackrest_prints_them() {
        assert_eq!(
            parse("pgBackRest 2.45\n"),
            Some((v(2, 45, 0, true), "2.45".into()))
        );
        assert_eq!(
            parse("pgBackRest 2.54.0\n"),
            Some((v(2, 54, 0, true), "2.54.0".into()))
        );
        assert_eq!(
            parse("  pgBackRest 2.46dev\n"),
            Some((v(2, 46, 0, false), "2.46dev".into()))
        );
        assert_eq!(
            parse("WARN: something first\npgBackRest 3.1.2"),
            Some((v(3, 1, 2, true), "3.1.2".into()))
        );
        for bad in [
            "",
            "pgBackRest",
            "pgBackRest \n",
            "pgBackRest 2",
            "pgBackRest two.45",
            "pgBackRest 2.45.1.7",
            "pgBackRest 2.45 extra",
            "pgBackRest 2.45-rc1",
            "pg_dump (PostgreSQL) 16.4",
            "2.45",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn old_releases_are_refused_and_new_majors_warned() {
        assert_eq!(judge(v(2, 38, 0, true)), Verdict::TooOld);
        assert_eq!(judge(v(2, 39, 0, false)), Verdict::TooOld, "2.39dev");
        assert_eq!(judge(v(1, 99, 0, true)), Verdict::TooOld);
        assert_eq!(judge(v(2, 39, 0, true)), Verdict::Supported);
        assert_eq!(judge(v(2, 45, 0, true)), Verdict::Supported);
        assert_eq!(judge(v(2, 60, 1, true)), Verdict::Supported);
        assert_eq!(judge(v(3, 0, 0, true)), Verdict::NewerMajor);
        assert!(v(2, 38, 1, true) < MINIMUM);
        assert!(v(2, 100, 0, true) > v(2, 99, 9, true));
    }

    #[test]
    fn the_messages_name_the_version_the_minimum_and_the_fix() {
        let old = too_old("2.30", "/usr/bin/pgbackrest");
        for part in [
            "pgBackRest 2.30",
            "/usr/bin/pgbackrest",
            "older than 2.39",
            "apt-get install pgbackrest",
            "apt.postgresql.org",
            "[control.pgbackrest] command",
        ] {
            assert!(old.contains(part), "{part}: {old}");
        }
        let odd = unreadable("pgbackrest", "Usage: something else\n");
        assert!(
            odd.contains("\"Usage: something else\"") && odd.contains("2.39"),
            "{odd}"
        );
    }

    #[test]
    fn an_upgraded_binary_is_another_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("pgbackrest");
        std::fs::write(&bin, "#!/bin/sh\necho pgBackRest 2.38\n").expect("write");
        let before = FileId::of(&bin).expect("file");
        assert_eq!(FileId::of(&bin), Some(before.clone()), "unchanged");
        // As dpkg installs a package's file: a new file renamed over the old one.
        let new = dir.path().join("pgbackrest.dpkg-new");
        std::fs::write(&new, "#!/bin/sh\necho pgBackRest 2.45\n").expect("write");
        std::fs::rename(&new, &bin).expect("rename");
        assert_ne!(FileId::of(&bin), Some(before), "replaced");
        assert_eq!(
            executable("/opt/pgbackrest/bin/pgbackrest"),
            Some(PathBuf::from("/opt/pgbackrest/bin/pgbackrest"))
        );
    }
}
