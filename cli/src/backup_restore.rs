//! `lasect backup restore`, `lasect backup drill run|list` and `lasect backup progress
//! [--follow]` (docs/BACKUPS.md, "Restore", "Restore drills", "Progress").

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context as _;

use clap::{ArgGroup, Subcommand};
use lasect_api_contract::backup_restore::{
    DrillList, DrillRequest, RestoreRequest, RunningBackups, TablespaceMapping, TargetType,
};
use lasect_api_contract::runs::RunView;
use serde_json::{Value, json};

use crate::api_client::ApiClient;
use crate::args::OutputFormat;
use crate::json_table::render;
use crate::printable::{escape, str_or};
use crate::render as render_body;
use crate::runs_cmd::instance_or_only;

/// Where and how far to restore.
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("point").args(["target_time", "target_lsn", "target_xid", "target_name"])))]
pub struct RestoreArgs {
    /// Instance name or id (default: the only instance you see)
    #[arg(long, short)]
    instance: Option<String>,
    /// Repository id (`lasect backup repo list`)
    #[arg(long)]
    repo: i64,
    /// A new or empty directory on the database host (with --delta: a stopped cluster's)
    #[arg(long)]
    to_dir: String,
    /// Recover to this time (`2026-12-07 10:15:00+00`; the server's time zone without one)
    #[arg(long)]
    target_time: Option<String>,
    /// Recover to this WAL position (`0/3000060`)
    #[arg(long)]
    target_lsn: Option<String>,
    /// Recover to this transaction id
    #[arg(long)]
    target_xid: Option<String>,
    /// Recover to this restore point (`pg_create_restore_point`)
    #[arg(long)]
    target_name: Option<String>,
    /// The backup to start from (a label); default: the newest before the target
    #[arg(long)]
    set: Option<String>,
    /// Restore over the stopped cluster in --to-dir (pgBackRest --delta)
    #[arg(long)]
    delta: bool,
    /// Leave the restored cluster running for inspection
    #[arg(long)]
    start: bool,
    /// Its port (socket only, in a private directory); default: a free one
    #[arg(long, requires = "start")]
    port: Option<u16>,
    /// Stop just before the target (time, LSN or xid), not just after it
    #[arg(long)]
    target_exclusive: bool,
    /// Restore a tablespace elsewhere: NAME=PATH (an absolute, new or empty directory);
    /// repeatable
    #[arg(long, value_name = "NAME=PATH")]
    tablespace_map: Vec<String>,
    /// Restore every other tablespace below this directory (one subdirectory each)
    #[arg(long, value_name = "PATH")]
    tablespace_map_all: Option<String>,
    /// Seconds to wait for the run, 0..=120 (it goes on after: `lasect run watch`)
    #[arg(long, default_value_t = 120)]
    wait: u64,
}

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Restore the latest backup into a scratch directory, start and check it, remove it
    /// (admin)
    Run {
        #[arg(long, short)]
        instance: Option<String>,
        #[arg(long)]
        repo: i64,
        /// A read-only query run on the restored copy, e.g. row counts of chosen tables
        #[arg(long)]
        check_sql: Option<String>,
        /// Skip amcheck's bt_index_check of the B-tree indexes
        #[arg(long)]
        no_amcheck: bool,
        /// Where the scratch copy is made (default: the agent's temporary directory)
        #[arg(long)]
        scratch_dir: Option<String>,
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// The instance's drills, newest first: passed or why not, restore time, data window
    List {
        #[arg(long, short)]
        instance: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

const RUNNING_COLUMNS: &[(&str, &str)] = &[
    ("run", "run_id"),
    ("kind", "kind"),
    ("stanza", "stanza"),
    ("type", "type"),
    ("status", "status"),
    ("stage", "stage"),
    ("percent", "percent"),
    ("bytes done", "bytes_done"),
    ("bytes total", "bytes_total"),
    ("reported", "progress_at"),
    ("started", "started_at"),
];

/// `lasect backup progress`: the instance's backups, restores and drills queued or running,
/// with their progress.
pub async fn progress(
    client: &ApiClient,
    instance: Option<String>,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let id = instance_or_only(client, instance.as_deref()).await?;
    let running: RunningBackups = client
        .get(&format!("api/v1/backups/running?instance_id={id}"))
        .await?;
    render_body(output, &serde_json::to_value(&running)?, |_| {
        running_table(&running)
    })
}

fn running_table(running: &RunningBackups) -> anyhow::Result<String> {
    if running.backups.is_empty() {
        return Ok("no backup, restore or drill is running\n".to_owned());
    }
    let rows = running
        .backups
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(render(&rows, RUNNING_COLUMNS))
}

/// The run kinds `backup progress` shows.
const PROGRESS_KINDS: [&str; 3] = ["backup", "backup_restore", "backup_drill"];

/// `lasect backup progress --follow`: what `progress` shows, then each status change and
/// progress report of the instance's backups, restores and drills as the live stream pushes
/// them (runs created meanwhile too), until none is queued or running. Exit 0, or 5 with the
/// errors of those that ended otherwise than succeeded.
pub async fn progress_follow(
    client: &ApiClient,
    instance: Option<String>,
    output: OutputFormat,
) -> anyhow::Result<String> {
    use crate::live_client::{self, Lines, is_terminal, rank};
    let id = instance_or_only(client, instance.as_deref()).await?;
    let mut live = live_client::connect(client).await?;
    live.subscribe_runs(json!({ "instances": [id], "kinds": PROGRESS_KINDS }))
        .await?;
    // Read after subscribing: nothing committed after this read is missed.
    let path = format!("api/v1/backups/running?instance_id={id}");
    let running: RunningBackups = client.get(&path).await?;
    let lines = Lines::new(output);
    match output {
        OutputFormat::Table => lines.write(&running_table(&running)?, &Value::Null)?,
        OutputFormat::Json => lines.write("", &serde_json::to_value(&running)?)?,
    }
    // Each run still going, with the furthest status shown of it.
    let mut going: BTreeMap<i64, u8> = running
        .backups
        .iter()
        .map(|b| (b.run_id, rank(&b.status)))
        .collect();
    let mut ended_badly = Vec::new();
    while !going.is_empty() {
        let event = match live.next_run().await {
            Ok(event) => event,
            Err(broken) => {
                // One poll: the runs that ended meanwhile are read one by one.
                let now: RunningBackups = client
                    .get(&path)
                    .await
                    .with_context(|| format!("{broken}; then reading their state over HTTP"))?;
                let still: Vec<i64> = now.backups.iter().map(|b| b.run_id).collect();
                for gone in going.keys().filter(|r| !still.contains(r)) {
                    let run: RunView = client.get(&format!("api/v1/runs/{gone}")).await?;
                    lines.write(
                        &crate::runs_cmd::view_line(&run),
                        &serde_json::to_value(&run)?,
                    )?;
                    if !run.succeeded() {
                        ended_badly.push(run);
                    }
                }
                if !still.is_empty() {
                    let ids: Vec<String> = still.iter().map(i64::to_string).collect();
                    return Err(crate::api_client::Unreachable(format!(
                        "{broken}; still queued or running: run {} (follow them again: lasect \
                         backup progress --follow)",
                        ids.join(", run ")
                    ))
                    .into());
                }
                break;
            }
        };
        let status_rank = rank(&event.status);
        match going.get(&event.id).copied() {
            // A change committed before the first read arrives after it: already shown.
            Some(shown) if event.change == "status" && status_rank <= shown => continue,
            Some(_) => {}
            // A run that ended before the first read (it was not in it).
            None if is_terminal(&event.status) => continue,
            None => {}
        }
        lines.event(&event)?;
        if event.change == "status" && is_terminal(&event.status) {
            going.remove(&event.id);
            if event.status != "succeeded" {
                // Its error as the caller may read it, with PostgreSQL's detail.
                ended_badly.push(client.get(&format!("api/v1/runs/{}", event.id)).await?);
            }
        } else {
            let shown = going.entry(event.id).or_insert(status_rank);
            *shown = (*shown).max(status_rank);
        }
    }
    if ended_badly.is_empty() {
        return Ok(String::new());
    }
    let errors: Vec<String> = ended_badly
        .iter()
        .map(|run| crate::runs_cmd::failure(run).0)
        .collect();
    Err(crate::runs_cmd::RunFailed(errors.join("\n")).into())
}

const DRILL_COLUMNS: &[(&str, &str)] = &[
    ("run", "run_id"),
    ("stanza", "stanza"),
    ("status", "status"),
    ("passed", "passed"),
    ("backup", "backup"),
    ("rto s", "rto_seconds"),
    ("rpo s", "rpo_seconds"),
    ("finished", "finished_at"),
    ("reason", "reason"),
];

/// `NAME=PATH` of `--tablespace-map`.
fn tablespace_map(text: &str) -> anyhow::Result<(&str, &str)> {
    match text.split_once('=') {
        Some((name, path)) if !name.is_empty() && path.starts_with('/') => Ok((name, path)),
        _ => Err(crate::exit::Usage(format!(
            "--tablespace-map must be NAME=/absolute/path, not {text:?}"
        ))
        .into()),
    }
}

fn check_wait(wait: u64) -> anyhow::Result<()> {
    if wait > 120 {
        anyhow::bail!("--wait must be 0..=120, not {wait}");
    }
    Ok(())
}

pub async fn restore(
    client: &ApiClient,
    a: RestoreArgs,
    output: OutputFormat,
) -> anyhow::Result<String> {
    check_wait(a.wait)?;
    let target = [
        (TargetType::Time, a.target_time),
        (TargetType::Lsn, a.target_lsn),
        (TargetType::Xid, a.target_xid),
        (TargetType::Name, a.target_name),
    ]
    .into_iter()
    .find_map(|(kind, value)| value.map(|v| (kind, v)));
    let tablespace_map = a
        .tablespace_map
        .iter()
        .map(|m| {
            tablespace_map(m).map(|(name, path)| TablespaceMapping {
                name: name.to_owned(),
                path: path.to_owned(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (target_type, target) = target.unzip();
    let body = RestoreRequest {
        to_dir: a.to_dir,
        target_type,
        target,
        set: a.set,
        delta: a.delta,
        start: a.start,
        port: a.port,
        target_exclusive: a.target_exclusive,
        tablespace_map,
        tablespace_map_all: a.tablespace_map_all,
    };
    let id = instance_or_only(client, a.instance.as_deref()).await?;
    let path = format!(
        "api/v1/instances/{id}/backup/repositories/{}/restore?wait={}",
        a.repo, a.wait
    );
    let run: RunView = client.post(&path, &body).await?;
    render_body(output, &serde_json::to_value(&run)?, |r| {
        Ok(restore_lines(r))
    })
}

pub async fn drill(
    client: &ApiClient,
    command: DrillCommand,
    output: OutputFormat,
) -> anyhow::Result<String> {
    match command {
        DrillCommand::Run {
            instance,
            repo,
            check_sql,
            no_amcheck,
            scratch_dir,
            wait,
        } => {
            check_wait(wait)?;
            let id = instance_or_only(client, instance.as_deref()).await?;
            let body = DrillRequest {
                check_sql,
                amcheck: Some(!no_amcheck),
                scratch_dir,
            };
            let path =
                format!("api/v1/instances/{id}/backup/repositories/{repo}/drills?wait={wait}");
            let run: RunView = client.post(&path, &body).await?;
            render_body(output, &serde_json::to_value(&run)?, |r| Ok(drill_line(r)))
        }
        DrillCommand::List { instance, limit } => {
            let id = instance_or_only(client, instance.as_deref()).await?;
            let drills: DrillList = client
                .get(&format!(
                    "api/v1/backups/drills?instance_id={id}&limit={limit}"
                ))
                .await?;
            render_body(output, &serde_json::to_value(&drills)?, |_| {
                let rows = drills
                    .drills
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(render(&rows, DRILL_COLUMNS))
            })
        }
    }
}

/// The run, and where the restored cluster is.
fn restore_lines(run: &Value) -> String {
    let mut out = format!("run {} {}", run["id"], str_or(&run["status"], "?"));
    match run["status"].as_str() {
        Some("queued" | "dispatched" | "running") => {
            let _ = write!(out, " (follow it: lasect run watch {})", run["id"]);
        }
        Some("succeeded") => {
            let s = &run["summary"];
            let _ = write!(
                out,
                ": restored into {} (recovered to {})",
                escape(&str_or(&s["data_directory"], "?")),
                escape(&json!(s["recovered_to"]).to_string())
            );
            if let Some(connect) = s["started"]["connect"].as_str() {
                let _ = write!(out, "\nrunning: {}", escape(connect));
                if let Some(stop) = s["started"]["stop"].as_str() {
                    let _ = write!(out, "\nstop it: {}", escape(stop));
                }
            }
        }
        _ => {
            if let Some(e) = run["error"].as_str() {
                let _ = write!(out, ": {}", escape(e));
            }
        }
    }
    out.push('\n');
    out
}

fn drill_line(run: &Value) -> String {
    let mut out = format!("run {} {}", run["id"], str_or(&run["status"], "?"));
    match run["status"].as_str() {
        Some("queued" | "dispatched" | "running") => {
            let _ = write!(out, " (follow it: lasect run watch {})", run["id"]);
        }
        Some("succeeded") => {
            let s = &run["summary"];
            let _ = write!(
                out,
                ": drill passed on backup {} (restore {:.1} s, data window {} s)",
                escape(&str_or(&s["backup"], "?")),
                s["rto_seconds"].as_f64().unwrap_or(0.0),
                s["rpo_seconds"]
                    .as_f64()
                    .map_or_else(|| "?".to_owned(), |v| format!("{v:.0}"))
            );
        }
        _ => {
            if let Some(e) = run["error"].as_str() {
                let _ = write!(out, ": {}", escape(e));
            }
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tablespace_map_is_name_equals_absolute_path() {
        assert_eq!(
            tablespace_map("archive=/srv/ts").ok(),
            Some(("archive", "/srv/ts"))
        );
        for bad in ["archive", "=/srv/ts", "archive=srv/ts", ""] {
            assert!(tablespace_map(bad).is_err(), "{bad:?}");
        }
    }
}
