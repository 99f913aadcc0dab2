//! `lasect backup list|show`: the backup catalogue the API stores (refreshed after every
//! backup and periodically), without asking the agent; `--refresh` asks it first.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::api_client::ApiClient;
use crate::args::OutputFormat;
use crate::human_units::bytes;
use crate::json_table::{render, render_one};
use crate::printable::{escape, str_or};
use crate::render as render_body;
use crate::runs_cmd::instance_or_only;

const BACKUP_COLUMNS: &[(&str, &str)] = &[
    ("repo", "repository_id"),
    ("label", "label"),
    ("type", "type"),
    ("prior", "prior"),
    ("started", "started_at"),
    ("secs", "duration_secs"),
    ("database", "database_size_h"),
    ("repo size", "repo_size_h"),
    ("wal start", "wal_start"),
    ("wal stop", "wal_stop"),
];

const SHOW_COLUMNS: &[(&str, &str)] = &[
    ("label", "label"),
    ("type", "type"),
    ("prior", "prior"),
    ("started", "started_at"),
    ("stopped", "stopped_at"),
    ("duration (s)", "duration_secs"),
    ("database bytes", "database_size"),
    ("copied bytes", "delta_size"),
    ("repository bytes", "repo_size"),
    ("repository delta bytes", "repo_delta_size"),
    ("wal start", "wal_start"),
    ("wal stop", "wal_stop"),
    ("lsn start", "lsn_start"),
    ("lsn stop", "lsn_stop"),
    ("checksum error", "error"),
];

/// The stored catalogue of the instance, only `repo` when given.
pub async fn fetch(
    client: &ApiClient,
    instance: Option<&str>,
    repo: Option<i64>,
) -> anyhow::Result<Value> {
    let id = instance_or_only(client, instance).await?;
    let mut body = client
        .get_json(&format!("api/v1/backups?instance_id={id}"))
        .await?;
    if let (Some(repo), Some(all)) = (repo, body["repositories"].as_array_mut()) {
        all.retain(|r| r["repository_id"] == json!(repo));
    }
    Ok(body)
}

/// The catalogue as a table of backups, each repository's window and problems after it.
pub fn list(output: OutputFormat, body: &Value) -> anyhow::Result<String> {
    render_body(output, body, |b| {
        let repos = b["repositories"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut rows = Vec::new();
        let mut notes = String::new();
        for r in repos {
            for backup in r["backups"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let mut row = backup.clone();
                row["repository_id"] = r["repository_id"].clone();
                row["database_size_h"] = backup["database_size"].as_i64().map(bytes).into();
                row["repo_size_h"] = backup["repo_size"].as_i64().map(bytes).into();
                rows.push(row);
            }
            let stanza = str_or(&r["stanza"], "?");
            match r["refreshed_at"].as_str() {
                None => {
                    let _ = writeln!(
                        notes,
                        "repository {} ({stanza}): no catalogue yet",
                        r["repository_id"]
                    );
                }
                Some(at) => {
                    let _ = writeln!(
                        notes,
                        "repository {} ({stanza}): recoverable from {} to {}; WAL {} .. {}; as of {}",
                        r["repository_id"],
                        str_or(&r["earliest_restorable"], "-"),
                        str_or(&r["latest_restorable"], "-"),
                        str_or(&r["archive_min"], "-"),
                        str_or(&r["archive_max"], "-"),
                        escape(at)
                    );
                }
            }
            if let Some(p) = r["problem"].as_str() {
                let _ = writeln!(notes, "  problem: {}", escape(p));
            }
        }
        Ok(format!("{}{notes}", render(&rows, BACKUP_COLUMNS)))
    })
}

/// One backup by label.
pub fn show(output: OutputFormat, body: &Value, label: &str) -> anyhow::Result<String> {
    let found = body["repositories"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .flat_map(|r| {
            r["backups"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
        })
        .find(|b| b["label"] == label)
        .cloned()
        .ok_or_else(|| {
            crate::exit::Usage(format!(
                "no backup {:?} in the catalogue (see `lasect backup list`)",
                escape(label)
            ))
        })?;
    render_body(output, &found, |b| Ok(render_one(b, SHOW_COLUMNS)))
}
