//! `lasect backup list|show`: the backup catalogue the API stores (refreshed after every
//! backup and periodically), without asking the agent; `--refresh` asks it first.

use std::fmt::Write as _;

use lasect_api_contract::backups::{Catalogue, CatalogueBackup};
use serde_json::Value;

use crate::api_client::{ApiClient, typed};
use crate::args::OutputFormat;
use crate::human_units::bytes;
use crate::json_table::{render, render_one};
use crate::printable::escape;
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
) -> anyhow::Result<Catalogue> {
    let id = instance_or_only(client, instance).await?;
    let path = format!("api/v1/backups?instance_id={id}");
    let mut catalogue: Catalogue = typed(client.get_json(&path).await?, &path)?;
    if let Some(repo) = repo {
        catalogue.repositories.retain(|r| r.repository_id == repo);
    }
    Ok(catalogue)
}

/// The catalogue as a table of backups, each repository's window and problems after it.
pub fn list(output: OutputFormat, catalogue: &Catalogue) -> anyhow::Result<String> {
    render_body(output, &serde_json::to_value(catalogue)?, |_| {
        let mut rows = Vec::new();
        let mut notes = String::new();
        for r in &catalogue.repositories {
            for backup in &r.backups {
                // The table's row: the backup as JSON, with its repository and sizes for people.
                let Value::Object(mut row) = serde_json::to_value(backup)? else {
                    continue;
                };
                row.insert("repository_id".to_owned(), r.repository_id.into());
                row.insert(
                    "database_size_h".to_owned(),
                    backup.database_size.map(bytes).into(),
                );
                row.insert("repo_size_h".to_owned(), backup.repo_size.map(bytes).into());
                rows.push(Value::Object(row));
            }
            let stanza = escape(&r.stanza);
            let id = r.repository_id;
            match &r.refreshed_at {
                None => {
                    let _ = writeln!(notes, "repository {id} ({stanza}): no catalogue yet");
                }
                Some(at) => {
                    let or_dash =
                        |v: &Option<String>| escape(v.as_deref().unwrap_or("-")).into_owned();
                    let _ = writeln!(
                        notes,
                        "repository {id} ({stanza}): recoverable from {} to {}; WAL {} .. {}; as of {}",
                        or_dash(&r.earliest_restorable),
                        or_dash(&r.latest_restorable),
                        or_dash(&r.archive_min),
                        or_dash(&r.archive_max),
                        escape(at)
                    );
                }
            }
            if let Some(p) = &r.problem {
                let _ = writeln!(notes, "  problem: {}", escape(p));
            }
        }
        Ok(format!("{}{notes}", render(&rows, BACKUP_COLUMNS)))
    })
}

/// One backup by label.
pub fn show(output: OutputFormat, catalogue: &Catalogue, label: &str) -> anyhow::Result<String> {
    let found: &CatalogueBackup = catalogue
        .repositories
        .iter()
        .flat_map(|r| &r.backups)
        .find(|b| b.label == label)
        .ok_or_else(|| {
            crate::exit::Usage(format!(
                "no backup {:?} in the catalogue (see `lasect backup list`)",
                escape(label)
            ))
        })?;
    render_body(output, &serde_json::to_value(found)?, |b| {
        Ok(render_one(b, SHOW_COLUMNS))
    })
}
