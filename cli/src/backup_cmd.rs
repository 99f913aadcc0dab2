//! `lasect backup`: pgBackRest through the agents (docs/BACKUPS.md). Repositories
//! (`repo add|list|remove`: posix, S3, Azure or GCS, of an instance or with `--label` of every
//! instance carrying it; `repo labels|remove-label`), the stanza (`stanza
//! create|upgrade|check`), backups (`run --type`) and the catalogue (`list`), on `--instance`
//! or the only instance the caller sees.

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
        /// Then a line per status change or progress report as it happens (live stream),
        /// until none is queued or running: exit 0, or 5 with the errors of those that failed
        #[arg(long, short)]
        follow: bool,
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
    /// Seconds to wait for the run, 0..=120 (it goes on after: `lasect run watch`)
    #[arg(long, default_value_t = 120)]
    wait: u64,
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Register a repository for a stanza of the instance, or with --label for every instance
    /// carrying that label (admin)
    Add(Box<RepoAdd>),
    /// The repositories registered for labels, with the instances each serves (secrets are
    /// never shown)
    Labels,
    /// Forget a label's repository: the instances it served lose it (their backups stay)
    /// (admin)
    RemoveLabel { id: i64 },
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

/// `lasect backup repo add`'s options.
#[derive(Debug, clap::Args)]
pub struct RepoAdd {
    #[arg(long, short, conflicts_with = "label")]
    instance: Option<String>,
    /// KEY=VALUE: serve every instance with this label (a stanza per instance, named after
    /// it unless --stanza is given)
    #[arg(long)]
    label: Option<String>,
    /// The stanza (required without --label)
    #[arg(long, required_unless_present = "label")]
    stanza: Option<String>,
    /// posix (default), s3, azure or gcs
    #[arg(long = "type", value_enum, default_value_t = RepoType::Posix)]
    repo_type: RepoType,
    /// repo1-path: an absolute directory on the database host (posix), or the prefix in the
    /// bucket
    #[arg(long)]
    path: String,
    /// A pgBackRest config the agent writes and keeps, for the server's archive_command
    /// (it then holds the repository's secrets, 0600)
    #[arg(long)]
    config_path: Option<String>,
    /// The bucket (s3, gcs) or container (azure)
    #[arg(long)]
    bucket: Option<String>,
    /// The store's endpoint (required for s3, e.g. s3.eu-west-1.amazonaws.com)
    #[arg(long)]
    endpoint: Option<String>,
    /// The S3 region
    #[arg(long)]
    region: Option<String>,
    /// The S3 access key id, or the Azure storage account
    #[arg(long)]
    key_id: Option<String>,
    /// s3: shared|auto|web-id; azure: shared|sas; gcs: service|token|auto
    #[arg(long)]
    key_type: Option<String>,
    /// host or path (s3, azure)
    #[arg(long, value_parser = ["host", "path"])]
    uri_style: Option<String>,
    /// The store's port (default 443)
    #[arg(long)]
    storage_port: Option<u16>,
    /// A CA file on the database host to verify the store's certificate with (not
    /// --ca-file, which is the CLI's own for the API)
    #[arg(long)]
    store_ca_file: Option<String>,
    /// Do not verify the store's TLS certificate (tests only)
    #[arg(long)]
    no_verify_tls: bool,
    /// Read the secret key (S3 secret access key, Azure key, GCS service key JSON or token)
    /// from this file
    #[arg(long, conflicts_with = "secret_key_stdin")]
    secret_key_file: Option<std::path::PathBuf>,
    /// Read the secret key from stdin's first line
    #[arg(long, conflicts_with = "cipher_pass_stdin")]
    secret_key_stdin: bool,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RepoType {
    Posix,
    S3,
    Azure,
    Gcs,
}

impl RepoType {
    const fn as_str(self) -> &'static str {
        match self {
            RepoType::Posix => "posix",
            RepoType::S3 => "s3",
            RepoType::Azure => "azure",
            RepoType::Gcs => "gcs",
        }
    }
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

const LABEL_REPO_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("label", "label"),
    ("stanza", "stanza"),
    ("type", "repo_type"),
    ("bucket", "bucket"),
    ("path", "path"),
    ("serves", "serves"),
    ("created", "created_at"),
];

const REPO_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("stanza", "stanza"),
    ("type", "repo_type"),
    ("bucket", "bucket"),
    ("path", "path"),
    ("label repo", "label_repository_id"),
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
        BackupCommand::Progress {
            instance,
            follow: false,
        } => crate::backup_restore::progress(client, instance, output).await,
        BackupCommand::Progress {
            instance,
            follow: true,
        } => crate::backup_restore::progress_follow(client, instance, output).await,
    }
}

async fn repo(
    client: &ApiClient,
    command: RepoCommand,
    output: OutputFormat,
) -> anyhow::Result<String> {
    match command {
        RepoCommand::Add(add) => {
            let RepoAdd {
                instance,
                label,
                stanza,
                repo_type,
                path,
                config_path,
                bucket,
                endpoint,
                region,
                key_id,
                key_type,
                uri_style,
                storage_port,
                store_ca_file,
                no_verify_tls,
                secret_key_file,
                secret_key_stdin,
                retention_full,
                retention_diff,
                retention_full_type,
                cipher_pass_stdin,
            } = *add;
            let mut body = Map::new();
            if repo_type != RepoType::Posix {
                body.insert("repo_type".into(), repo_type.as_str().into());
            }
            body.insert("path".into(), path.into());
            let optional = [
                ("stanza", stanza.map(Value::from)),
                ("config_path", config_path.map(Value::from)),
                ("bucket", bucket.map(Value::from)),
                ("endpoint", endpoint.map(Value::from)),
                ("region", region.map(Value::from)),
                ("key_id", key_id.map(Value::from)),
                ("key_type", key_type.map(Value::from)),
                ("uri_style", uri_style.map(Value::from)),
                ("storage_port", storage_port.map(Value::from)),
                ("ca_file", store_ca_file.map(Value::from)),
                ("verify_tls", no_verify_tls.then_some(Value::Bool(false))),
                ("retention_full", retention_full.map(Value::from)),
                ("retention_diff", retention_diff.map(Value::from)),
                ("retention_full_type", retention_full_type.map(Value::from)),
            ];
            for (k, v) in optional {
                if let Some(v) = v {
                    body.insert(k.into(), v);
                }
            }
            if let Some(file) = secret_key_file {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("--secret-key-file {}: {e}", file.display()))?;
                // A GCS service key is a JSON document: kept whole; a key is its one line.
                let key = if repo_type == RepoType::Gcs && text.trim_start().starts_with('{') {
                    text
                } else {
                    text.trim_end_matches(['\n', '\r']).to_owned()
                };
                if key.trim().is_empty() {
                    anyhow::bail!("--secret-key-file {}: the file is empty", file.display());
                }
                body.insert("secret_key".into(), key.into());
            }
            if secret_key_stdin {
                body.insert(
                    "secret_key".into(),
                    stdin_line("--secret-key-stdin")?.into(),
                );
            }
            if cipher_pass_stdin {
                body.insert("cipher_type".into(), "aes-256-cbc".into());
                body.insert(
                    "cipher_pass".into(),
                    stdin_line("--cipher-pass-stdin")?.into(),
                );
            }
            if let Some(label) = label {
                let (key, value) = label
                    .split_once('=')
                    .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                    .ok_or_else(|| anyhow::anyhow!("--label must be KEY=VALUE, not {label:?}"))?;
                body.insert("label_key".into(), key.into());
                body.insert("label_value".into(), value.into());
                let created = client
                    .post_json("api/v1/backup/label-repositories", &Value::Object(body))
                    .await?;
                return render_body(output, &created, |b| {
                    Ok(render_one(&label_row(b), LABEL_REPO_COLUMNS))
                });
            }
            let id = instance_or_only(client, instance.as_deref()).await?;
            let path = format!("api/v1/instances/{id}/backup/repositories");
            let created = client.post_json(&path, &Value::Object(body)).await?;
            render_body(output, &created, |b| Ok(render_one(b, REPO_COLUMNS)))
        }
        RepoCommand::Labels => {
            let body = client.get_json("api/v1/backup/label-repositories").await?;
            render_body(output, &body, |b| {
                let rows: Vec<Value> = b["label_repositories"]
                    .as_array()
                    .map(|all| all.iter().map(label_row).collect())
                    .unwrap_or_default();
                Ok(render(&rows, LABEL_REPO_COLUMNS))
            })
        }
        RepoCommand::RemoveLabel { id } => {
            client
                .delete_json(&format!("api/v1/backup/label-repositories/{id}"))
                .await?;
            Ok(match output {
                OutputFormat::Json => json!({ "removed": id }).to_string(),
                OutputFormat::Table => format!("label repository {id} removed\n"),
            })
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

/// Stdin's first line, without its end; refused when empty.
fn stdin_line(flag: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let line = line.trim_end_matches(['\n', '\r']);
    if line.is_empty() {
        anyhow::bail!("{flag}: stdin's first line is empty");
    }
    Ok(line.to_owned())
}

/// A label repository as a table row: `env=prod`, and the instances it serves as
/// `name (stanza)`.
fn label_row(r: &Value) -> Value {
    let mut row = r.clone();
    let label = format!(
        "{}={}",
        r["label_key"].as_str().unwrap_or_default(),
        r["label_value"].as_str().unwrap_or_default()
    );
    let serves: Vec<String> = r["instances"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|i| {
            format!(
                "{} ({})",
                i["instance_name"].as_str().unwrap_or_default(),
                i["stanza"].as_str().unwrap_or_default()
            )
        })
        .collect();
    if let Some(o) = row.as_object_mut() {
        o.insert("label".into(), label.into());
        o.insert("serves".into(), serves.join(", ").into());
        if o.get("stanza").is_none_or(Value::is_null) {
            o.insert("stanza".into(), "(instance name)".into());
        }
    }
    row
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
            let _ = write!(line, " (follow it: lasect run watch {})", run.id);
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn repo_add(args: &[&str]) -> Result<RepoAdd, clap::Error> {
        let mut all = vec!["lasect", "backup", "repo", "add"];
        all.extend(args);
        match Cli::try_parse_from(all)?.command {
            Command::Backup(BackupCommand::Repo(RepoCommand::Add(add))) => Ok(*add),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn repo_add_takes_an_object_store_or_a_label() {
        let add = repo_add(&[
            "--label",
            "env=prod",
            "--type",
            "s3",
            "--path",
            "/pg",
            "--bucket",
            "b",
            "--store-ca-file",
            "/etc/ssl/store.pem",
            "--ca-file",
            "/etc/lasect/api-ca.pem",
        ])
        .expect("a label's S3 repository");
        assert_eq!(add.repo_type, RepoType::S3);
        assert_eq!(add.label.as_deref(), Some("env=prod"));
        assert_eq!(add.store_ca_file.as_deref(), Some("/etc/ssl/store.pem"));
        assert!(add.stanza.is_none());
        // Without a label the stanza is required; one secret source at a time.
        assert!(repo_add(&["--path", "/pg"]).is_err());
        assert!(
            repo_add(&[
                "--stanza",
                "m",
                "--path",
                "/pg",
                "--secret-key-stdin",
                "--secret-key-file",
                "/k"
            ])
            .is_err()
        );
        assert!(repo_add(&["--label", "env=prod", "-i", "db", "--path", "/pg"]).is_err());
    }

    #[test]
    fn a_label_repository_row_names_its_label_and_the_instances_it_serves() {
        let row = label_row(&json!({
            "id": 3, "label_key": "env", "label_value": "prod", "stanza": null,
            "instances": [
                {"instance_name": "orders", "stanza": "orders"},
                {"instance_name": "billing", "stanza": "billing"},
            ],
        }));
        assert_eq!(row["label"], "env=prod");
        assert_eq!(row["serves"], "orders (orders), billing (billing)");
        assert_eq!(row["stanza"], "(instance name)");
    }
}
