//! Live progress of a running pgBackRest backup or restore (docs/BACKUPS.md, "Progress").
//!
//! A backup: while it runs, `pgbackrest info --output=json` is asked every few seconds and
//! what it says about the stanza's backup lock (held, percent done; bytes when the installed
//! pgBackRest reports them: 2.45 gives the percent only) goes up the Control stream as
//! `RunProgress`.
//!
//! A restore (and a drill's): pgBackRest 2.45 reports nothing while it restores, so the agent
//! measures the bytes written below the restored directories against the size of the backup
//! (`info`'s database size), never going back and never 100 before pgBackRest is done; then
//! each later stage (`recovery`, a drill's `checks`, `done`) is reported as it begins.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use super::backup::{self, Config, Server};
use super::{OpContext, ProgressReporter};

/// How often pgBackRest is asked while a backup runs.
const EVERY: Duration = Duration::from_secs(2);
/// How often a restore's directories are measured.
const RESTORE_EVERY: Duration = Duration::from_millis(500);

/// Stops the watch when dropped.
pub(super) struct Watching(tokio::task::JoinHandle<()>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts watching the backup of `stanza` that the caller is about to run.
pub(super) fn watch(ctx: &OpContext, server: &Server, config: &Config, stanza: &str) -> Watching {
    let reporter = ctx.out.progress_reporter();
    let mut command = backup::command(server, config, stanza, &["info", "--output=json"]);
    // A watch cut short must not leave its `info` running.
    command.kill_on_drop(true);
    let stanza = stanza.to_owned();
    Watching(tokio::spawn(poll(reporter, command, stanza)))
}

async fn poll(reporter: ProgressReporter, mut command: tokio::process::Command, stanza: String) {
    let mut last = Value::Null;
    loop {
        tokio::time::sleep(EVERY).await;
        let Ok(mut child) = command.spawn() else {
            return;
        };
        let mut out = Vec::new();
        if let Some(mut stdout) = child.stdout.take() {
            let _ = stdout.read_to_end(&mut out).await;
        }
        let _ = child.wait().await;
        let Ok(info) = serde_json::from_slice::<Value>(&out) else {
            continue;
        };
        let Some(progress) = progress_of(&info, &stanza) else {
            continue;
        };
        if progress != last {
            if reporter.report(&progress).await.is_err() {
                return;
            }
            last = progress;
        }
    }
}

/// The progress of one restore: the files pgBackRest writes, then the stages after them.
pub(super) struct Restoring {
    reporter: ProgressReporter,
    dirs: Arc<Vec<PathBuf>>,
    total: Option<u64>,
    /// The most bytes seen so far: what is reported never goes back.
    most: Arc<AtomicU64>,
    poll: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Restoring {
    fn drop(&mut self) {
        if let Some(poll) = self.poll.take() {
            poll.abort();
        }
    }
}

impl Restoring {
    /// Reports the start (stage `restore`, nothing written yet) and measures `dirs` until
    /// [`Restoring::files_done`].
    pub(super) async fn start(ctx: &OpContext, dirs: Vec<PathBuf>, total: Option<u64>) -> Self {
        let reporter = ctx.out.progress_reporter();
        let dirs = Arc::new(dirs);
        let most = Arc::new(AtomicU64::new(0));
        let _ = reporter
            .report(&restore_progress("restore", 0, total, false))
            .await;
        let poll = tokio::spawn(measure(
            ctx.out.progress_reporter(),
            Arc::clone(&dirs),
            total,
            Arc::clone(&most),
        ));
        Restoring {
            reporter,
            dirs,
            total,
            most,
            poll: Some(poll),
        }
    }

    /// pgBackRest has written every file: 100 percent, and recovery begins.
    pub(super) async fn files_done(&mut self) {
        if let Some(poll) = self.poll.take() {
            poll.abort();
        }
        let dirs = Arc::clone(&self.dirs);
        let now = tokio::task::spawn_blocking(move || bytes_below(&dirs))
            .await
            .unwrap_or(0);
        self.most.fetch_max(now, Ordering::Relaxed);
        self.stage("recovery").await;
    }

    /// A later stage begins (the files are all there).
    pub(super) async fn stage(&self, stage: &str) {
        let done = self.most.load(Ordering::Relaxed);
        let _ = self
            .reporter
            .report(&restore_progress(stage, done, self.total, true))
            .await;
    }
}

async fn measure(
    reporter: ProgressReporter,
    dirs: Arc<Vec<PathBuf>>,
    total: Option<u64>,
    most: Arc<AtomicU64>,
) {
    let mut reported = 0;
    loop {
        tokio::time::sleep(RESTORE_EVERY).await;
        let measured = Arc::clone(&dirs);
        let Ok(now) = tokio::task::spawn_blocking(move || bytes_below(&measured)).await else {
            return;
        };
        let done = most.fetch_max(now, Ordering::Relaxed).max(now);
        if done > reported {
            if reporter
                .report(&restore_progress("restore", done, total, false))
                .await
                .is_err()
            {
                return;
            }
            reported = done;
        }
    }
}

/// One restore progress report. The percent is of the backup's size, below 100 until the
/// files are all written (`files_done`), and null when the size is unknown.
fn restore_progress(stage: &str, done: u64, total: Option<u64>, files_done: bool) -> Value {
    let percent = if files_done {
        Some(100.0)
    } else {
        total.filter(|t| *t > 0).map(|t| {
            let p = (done as f64 * 100.0 / t as f64).min(99.99);
            (p * 100.0).floor() / 100.0
        })
    };
    json!({
        "stage": stage,
        "percent": percent,
        "bytes_done": done,
        "bytes_total": total,
    })
}

/// The bytes of the files below `dirs` (symbolic links not followed: a tablespace counts
/// where it is restored to, when that is one of `dirs`). Files vanishing meanwhile are fine.
fn bytes_below(dirs: &[PathBuf]) -> u64 {
    let mut total = 0;
    let mut todo: Vec<PathBuf> = dirs.to_vec();
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                todo.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

/// The progress pgBackRest's info document gives for `stanza`'s running backup: `None` when
/// no backup holds the lock (not started yet, or done).
fn progress_of(info: &Value, stanza: &str) -> Option<Value> {
    let entry = info.as_array()?.iter().find(|s| s["name"] == stanza)?;
    let lock = &entry["status"]["lock"]["backup"];
    if lock["held"] != true {
        return None;
    }
    // Hundredths of a percent (pgBackRest prints 6205 as "62.05% complete").
    let percent = lock["pct-cplt"].as_u64().map(|p| p as f64 / 100.0);
    Some(json!({
        "percent": percent,
        "bytes_done": lock["size-cplt"].as_u64(),
        "bytes_total": lock["size"].as_u64(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_of_a_running_backup_is_its_progress() {
        let running = json!([{"name": "main", "status": {"code": 0, "message": "ok",
            "lock": {"backup": {"held": true, "pct-cplt": 6205}}}}]);
        assert_eq!(
            progress_of(&running, "main"),
            Some(json!({"percent": 62.05, "bytes_done": null, "bytes_total": null}))
        );
        let newer = json!([{"name": "main", "status": {"lock": {"backup":
            {"held": true, "pct-cplt": 5000, "size-cplt": 512, "size": 1024}}}}]);
        assert_eq!(
            progress_of(&newer, "main"),
            Some(json!({"percent": 50.0, "bytes_done": 512, "bytes_total": 1024}))
        );
        let idle = json!([{"name": "main", "status": {"lock": {"backup": {"held": false}}}}]);
        assert_eq!(progress_of(&idle, "main"), None);
        assert_eq!(progress_of(&running, "other"), None);
        assert_eq!(progress_of(&json!({"not": "a list"}), "main"), None);
    }

    #[test]
    fn a_restore_is_below_100_until_its_files_are_done() {
        assert_eq!(
            restore_progress("restore", 50, Some(200), false),
            json!({"stage": "restore", "percent": 25.0, "bytes_done": 50, "bytes_total": 200})
        );
        // More than the backup's size (WAL, a delta over a bigger cluster): not yet 100.
        assert_eq!(
            restore_progress("restore", 300, Some(200), false)["percent"],
            99.99
        );
        assert_eq!(
            restore_progress("recovery", 180, Some(200), true)["percent"],
            100.0
        );
        assert!(restore_progress("restore", 5, None, false)["percent"].is_null());
    }

    #[test]
    fn the_bytes_below_count_files_in_every_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let a = root.path().join("a");
        std::fs::create_dir_all(a.join("base/1")).expect("dirs");
        std::fs::write(a.join("PG_VERSION"), "16\n").expect("file");
        std::fs::write(a.join("base/1/1259"), vec![0u8; 8192]).expect("file");
        let b = root.path().join("b");
        std::fs::create_dir(&b).expect("b");
        std::fs::write(b.join("16384"), vec![0u8; 100]).expect("file");
        std::os::unix::fs::symlink(&b, a.join("ts")).expect("link");
        assert_eq!(bytes_below(std::slice::from_ref(&a)), 3 + 8192);
        assert_eq!(
            bytes_below(&[a, b, root.path().join("absent")]),
            3 + 8192 + 100
        );
    }
}
