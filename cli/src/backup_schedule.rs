//! `lasect backup schedule add|list|remove|firings`: cron schedules of backups, per
//! repository or per label (docs/BACKUPS.md, "Schedules").

use clap::Subcommand;
use serde_json::{Map, Value, json};

use crate::api_client::ApiClient;
use crate::args::OutputFormat;
use crate::backup_cmd::BackupType;
use crate::json_table::render;
use crate::render as render_body;
use crate::runs_cmd::instance_or_only;

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Schedule backups of a repository (`--repo`) or of a stanza on labelled instances
    /// (`--label key=value --stanza NAME`) (admin)
    Add {
        /// Five cron fields (minute hour day month weekday), or six with seconds first
        #[arg(long)]
        cron: String,
        /// IANA time zone the cron fields are read in
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        #[arg(long = "type", value_enum, default_value_t = BackupType::Full)]
        backup_type: BackupType,
        /// Repository id (`lasect backup repo list`)
        #[arg(long, conflicts_with_all = ["label", "stanza"], required_unless_present = "label")]
        repo: Option<i64>,
        /// Every instance with this label (key=value)
        #[arg(long, requires = "stanza")]
        label: Option<String>,
        /// With --label: the stanza whose repositories are backed up
        #[arg(long, requires = "label")]
        stanza: Option<String>,
    },
    /// The schedules you may see, with their next firing
    List {
        /// Only those concerning this instance (name or id)
        #[arg(long, short)]
        instance: Option<String>,
    },
    /// Remove a schedule and its firing history (admin)
    Remove { id: i64 },
    /// Firings: started runs, and those missed or skipped with the reason
    Firings {
        #[arg(long, short)]
        instance: Option<String>,
        #[arg(long)]
        schedule: Option<i64>,
        /// Only missed firings
        #[arg(long)]
        missed: bool,
    },
}

const SCHEDULE_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("repo", "repository_id"),
    ("instance", "instance_id"),
    ("label", "label"),
    ("stanza", "stanza"),
    ("type", "type"),
    ("cron", "cron"),
    ("time zone", "time_zone"),
    ("next", "next_fire_at"),
];

const FIRING_COLUMNS: &[(&str, &str)] = &[
    ("time", "fire_time"),
    ("schedule", "schedule_id"),
    ("repo", "repository_id"),
    ("instance", "instance_id"),
    ("outcome", "outcome"),
    ("run", "run_id"),
    ("reason", "reason"),
];

/// `key=value` of `--label`.
fn label(text: &str) -> anyhow::Result<(&str, &str)> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k, v)),
        _ => Err(crate::exit::Usage(format!("--label must be key=value, not {text:?}")).into()),
    }
}

pub async fn run(
    client: &ApiClient,
    command: ScheduleCommand,
    output: OutputFormat,
) -> anyhow::Result<String> {
    match command {
        ScheduleCommand::Add {
            cron,
            time_zone,
            backup_type,
            repo,
            label: selector,
            stanza,
        } => {
            let mut body = Map::new();
            body.insert("cron".into(), cron.into());
            body.insert("time_zone".into(), time_zone.into());
            body.insert("type".into(), backup_type.as_str().into());
            match (repo, selector.as_deref(), stanza) {
                (Some(repo), None, None) => {
                    body.insert("repository_id".into(), repo.into());
                }
                (None, Some(selector), Some(stanza)) => {
                    let (k, v) = label(selector)?;
                    body.insert("label_key".into(), k.into());
                    body.insert("label_value".into(), v.into());
                    body.insert("stanza".into(), stanza.into());
                }
                _ => {
                    return Err(crate::exit::Usage(
                        "give --repo, or --label key=value with --stanza".to_owned(),
                    )
                    .into());
                }
            }
            let created = client
                .post_json("api/v1/backup/schedules", &Value::Object(body))
                .await?;
            render_body(output, &created, |s| {
                Ok(format!(
                    "schedule {} added; next firing {}\n",
                    s["id"],
                    crate::printable::str_or(&s["next_fire_at"], "never")
                ))
            })
        }
        ScheduleCommand::List { instance } => {
            let path = match instance {
                Some(i) => {
                    let id = instance_or_only(client, Some(&i)).await?;
                    format!("api/v1/backup/schedules?instance_id={id}")
                }
                None => "api/v1/backup/schedules".to_owned(),
            };
            let body = client.get_json(&path).await?;
            render_body(output, &body, |b| {
                let rows: Vec<Value> = b["schedules"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|s| {
                        let mut s = s.clone();
                        if let (Some(k), Some(v)) =
                            (s["label_key"].as_str(), s["label_value"].as_str())
                        {
                            s["label"] = format!("{k}={v}").into();
                        }
                        s
                    })
                    .collect();
                Ok(render(&rows, SCHEDULE_COLUMNS))
            })
        }
        ScheduleCommand::Remove { id } => {
            client
                .delete_json(&format!("api/v1/backup/schedules/{id}"))
                .await?;
            Ok(match output {
                OutputFormat::Json => json!({ "removed": id }).to_string(),
                OutputFormat::Table => format!("schedule {id} removed\n"),
            })
        }
        ScheduleCommand::Firings {
            instance,
            schedule,
            missed,
        } => {
            let mut query = vec![];
            if let Some(i) = instance {
                let id = instance_or_only(client, Some(&i)).await?;
                query.push(format!("instance_id={id}"));
            }
            if let Some(s) = schedule {
                query.push(format!("schedule_id={s}"));
            }
            if missed {
                query.push("outcome=missed".to_owned());
            }
            let mut path = "api/v1/backup/firings".to_owned();
            if !query.is_empty() {
                path = format!("{path}?{}", query.join("&"));
            }
            let body = client.get_json(&path).await?;
            render_body(output, &body, |b| {
                let rows = b["firings"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                Ok(render(rows, FIRING_COLUMNS))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_is_key_equals_value() {
        assert_eq!(label("env=prod").ok(), Some(("env", "prod")));
        assert_eq!(label("a=b=c").ok(), Some(("a", "b=c")));
        for bad in ["env", "=prod", "env=", ""] {
            assert!(label(bad).is_err(), "{bad:?}");
        }
    }
}
