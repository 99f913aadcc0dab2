//! `lasect backup`: pgBackRest through the agents (docs/BACKUPS.md). Repositories
//! (`repo add|list|remove`), the stanza (`stanza create|upgrade|check`), backups (`run --type`)
//! and the catalogue (`list`), on `--instance` or the only instance the caller sees.

use std::fmt::Write as _;

use clap::{Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

use lasect_api_contract::runs::RunView;

use crate::api_client::{ApiClient, typed};
use crate::args::OutputFormat;
use crate::json_table::{render, render_one};
use crate::render as render_body;
use crate::runs_cmd::instance_or_only;

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Repositories: where pgBackRest keeps each stanza's backups
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Create, upgrade or check the stanza of a repository (check also diagnoses archiving)
    Stanza {
        action: StanzaVerb,
        #[command(flatten)]
        target: Target,
    },
    /// Take a backup (one at a time per stanza)
    Run {
        #[arg(long = "type", value_enum, default_value_t = BackupType::Full)]
        backup_type: BackupType,
        #[command(flatten)]
        target: Target,
    },
    /// The catalogue the API keeps: backups with type, times, sizes, WAL and LSN range, and
    /// the recovery window
    List {
        #[arg(long, short)]
        instance: Option<String>,
        /// Only this repository
        #[arg(long)]
        repo: Option<i64>,
        /// Ask the agent for a fresh catalogue first (needs --repo; admin)
        #[arg(long, requires = "repo")]
        refresh: bool,
    },
    /// One backup of the catalogue, by label
    Show {
        label: String,
        #[arg(long, short)]
        instance: Option<String>,
    },
    /// Cron schedules of backups, and their firings
    #[command(subcommand)]
    Schedule(crate::backup_schedule::ScheduleCommand),
    /// Restore a stanza into a new directory of the database host: the latest point, a time,
    /// an LSN, a transaction id or a restore point (admin)
    Restore(crate::backup_restore::RestoreArgs),
    /// Restore drills: prove the latest backup restores, with its restore time and data window
    #[command(subcommand)]
    Drill(crate::backup_restore::DrillCommand),
    /// Backups queued or running, with their live progress
    Progress {
        #[arg(long, short)]
        instance: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct Target {
    /// Instance name or id (default: the only instance you see)
    #[arg(long, short)]
    instance: Option<String>,
    /// Repository id (`lasect backup repo list`)
    #[arg(long)]
    repo: i64,
    /// Seconds to wait for the run, 0..=120 (it goes on after: `lasect run show`)
    #[arg(long, default_value_t = 120)]
    wait: u64,
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Register a posix repository for a stanza of the instance (admin)
    Add {
        #[arg(long, short)]
        instance: Option<String>,
        #[arg(long)]
        stanza: String,
        /// repo1-path: an absolute directory on the database host
        #[arg(long)]
        path: String,
        /// A pgBackRest config the agent writes and keeps, for the server's archive_command
        #[arg(long)]
        config_path: Option<String>,
        #[arg(long)]
        retention_full: Option<i32>,
        #[arg(long)]
        retention_diff: Option<i32>,
        /// count (default): keep --retention-full full backups; time: keep them that many days
        #[arg(long, value_parser = ["count", "time"])]
        retention_full_type: Option<String>,
        /// Encrypt the repository (aes-256-cbc) with a passphrase read from stdin's first line
        #[arg(long)]
        cipher_pass_stdin: bool,
    },
    /// The instance's repositories (secrets are never shown)
    List {
        #[arg(long, short)]
        instance: Option<String>,
    },
    /// Forget a repository (its backups stay where they are) (admin)
    Remove {
        #[arg(long, short)]
        instance: Option<String>,
        id: i64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StanzaVerb {
    Create,
    Upgrade,
    Check,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackupType {
    Full,
    Diff,
    Incr,
}

impl BackupType {
    pub const fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Diff => "diff",
            BackupType::Incr => "incr",
        }
    }
}

const REPO_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("stanza", "stanza"),
    ("type", "repo_type"),
    ("path", "path"),
    ("config", "config_path"),
    ("cipher", "cipher_type"),
    ("full kept", "retention_full"),
    ("diff kept", "retention_diff"),
    ("created", "created_at"),
];

pub async fn run(
    client: &ApiClient,
    command: BackupCommand,
    output: OutputFormat,
) -> anyhow::Result<String> {
    match command {
        BackupCommand::Repo(c) => repo(client, c, output).await,
        BackupCommand::Stanza { action, target } => {
            let action = match action {
                StanzaVerb::Create => "create",
                StanzaVerb::Upgrade => "upgrade",
                StanzaVerb::Check => "check",
            };
            let (body, run) =
                post_run(client, &target, "stanza", json!({ "action": action })).await?;
            render_body(output, &body, |_| Ok(run_line(&run)))
        }
        BackupCommand::Run {
            backup_type,
            target,
        } => {
            let kind = backup_type.as_str();
            let (body, run) = post_run(client, &target, "backups", json!({ "type": kind })).await?;
            render_body(output, &body, |_| Ok(run_line(&run)))
        }
        BackupCommand::List {
            instance,
            repo,
            refresh,
        } => {
            if let (true, Some(repo)) = (refresh, repo) {
                let target = Target {
                    instance: instance.clone(),
                    repo,
                    wait: 120,
                };
                let (_, run) = post_run(client, &target, "info", json!({})).await?;
                if !run.succeeded() {
                    anyhow::bail!("the refresh did not succeed: {}", run_line(&run).trim_end());
                }
                // The API stores the run's catalogue within a second of its end.
                let want = Some(run.id);
                for _ in 0..50 {
                    let catalogue =
                        crate::backup_catalogue::fetch(client, instance.as_deref(), Some(repo))
                            .await?;
                    if catalogue.repositories.first().and_then(|r| r.run_id) >= want {
                        return crate::backup_catalogue::list(output, &catalogue);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            let body = crate::backup_catalogue::fetch(client, instance.as_deref(), repo).await?;
            crate::backup_catalogue::list(output, &body)
        }
        BackupCommand::Show { label, instance } => {
            let body = crate::backup_catalogue::fetch(client, instance.as_deref(), None).await?;
            crate::backup_catalogue::show(output, &body, &label)
        }
        BackupCommand::Schedule(c) => crate::backup_schedule::run(client, c, output).await,
        BackupCommand::Restore(a) => crate::backup_restore::restore(client, a, output).await,
        BackupCommand::Drill(c) => crate::backup_restore::drill(client, c, output).await,
        BackupCommand::Progress { instance } => {
            crate::backup_restore::progress(client, instance, output).await
        }
    }
}

async fn repo(
    client: &ApiClient,
    command: RepoCommand,
    output: OutputFormat,
) -> anyhow::Result<String> {
    match command {
        RepoCommand::Add {
            instance,
            stanza,
            path,
            config_path,
            retention_full,
            retention_diff,
            retention_full_type,
            cipher_pass_stdin,
        } => {
            let id = instance_or_only(client, instance.as_deref()).await?;
            let mut body = Map::new();
            body.insert("stanza".into(), stanza.into());
            body.insert("path".into(), path.into());
            let optional = [
                ("config_path", config_path.map(Value::from)),
                ("retention_full", retention_full.map(Value::from)),
                ("retention_diff", retention_diff.map(Value::from)),
                ("retention_full_type", retention_full_type.map(Value::from)),
            ];
            for (k, v) in optional {
                if let Some(v) = v {
                    body.insert(k.into(), v);
                }
            }
            if cipher_pass_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                let pass = line.trim_end_matches(['\n', '\r']);
                if pass.is_empty() {
                    anyhow::bail!("--cipher-pass-stdin: stdin's first line is empty");
                }
                body.insert("cipher_type".into(), "aes-256-cbc".into());
                body.insert("cipher_pass".into(), pass.into());
            }
            let path = format!("api/v1/instances/{id}/backup/repositories");
            let created = client.post_json(&path, &Value::Object(body)).await?;
            render_body(output, &created, |b| Ok(render_one(b, REPO_COLUMNS)))
        }
        RepoCommand::List { instance } => {
            let id = instance_or_only(client, instance.as_deref()).await?;
            let body = client
                .get_json(&format!("api/v1/instances/{id}/backup/repositories"))
                .await?;
            render_body(output, &body, |b| {
                let rows = b["repositories"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                Ok(render(rows, REPO_COLUMNS))
            })
        }
        RepoCommand::Remove { instance, id: repo } => {
            let id = instance_or_only(client, instance.as_deref()).await?;
            client
                .delete_json(&format!("api/v1/instances/{id}/backup/repositories/{repo}"))
                .await?;
            Ok(match output {
                OutputFormat::Json => json!({ "removed": repo }).to_string(),
                OutputFormat::Table => format!("repository {repo} removed\n"),
            })
        }
    }
}

async fn post_run(
    client: &ApiClient,
    target: &Target,
    what: &str,
    body: Value,
) -> anyhow::Result<(Value, RunView)> {
    if target.wait > 120 {
        anyhow::bail!("--wait must be 0..=120, not {}", target.wait);
    }
    let id = instance_or_only(client, target.instance.as_deref()).await?;
    let path = format!(
        "api/v1/instances/{id}/backup/repositories/{}/{what}?wait={}",
        target.repo, target.wait
    );
    let answer = client.post_json(&path, &body).await?;
    let run = typed(answer.clone(), &path)?;
    Ok((answer, run))
}

/// `run 12 succeeded` with the error, or where to follow a run still going on.
fn run_line(run: &RunView) -> String {
    let mut line = format!("run {} {}", run.id, crate::printable::escape(&run.status));
    match run.run_status() {
        Ok(s) if !s.is_terminal() => {
            let _ = write!(line, " (follow it: lasect run show {})", run.id);
        }
        _ => {
            if let Some(e) = &run.error {
                let _ = write!(line, ": {}", crate::printable::escape(e));
            } else if let Some(b) = run.summary_field("backup")["label"].as_str() {
                let _ = write!(line, ": backup {}", crate::printable::escape(b));
            }
        }
    }
    line.push('\n');
    line
}
