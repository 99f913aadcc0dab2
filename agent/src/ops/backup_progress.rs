//! Live progress of a running pgBackRest backup (docs/BACKUPS.md, "Progress"): while the
//! backup runs, `pgbackrest info --output=json` is asked every few seconds and what it says
//! about the stanza's backup lock (held, percent done; bytes when the installed pgBackRest
//! reports them: 2.45 gives the percent only) goes up the Control stream as `RunProgress`.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use super::backup::{self, Config, Server};
use super::{OpContext, ProgressReporter};

/// How often pgBackRest is asked while a backup runs.
const EVERY: Duration = Duration::from_secs(2);

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
}
