//! `lasect backup schedule add|list|remove|firings`: cron schedules of backups and of restore
//! drills, per repository or per label (docs/BACKUPS.md, "Schedules").

use clap::Subcommand;
use lasect_api_contract::backup_schedules::{
    FiringList, NewSchedule, Schedule, ScheduleKind, ScheduleList, ScheduledType,
};
use serde_json::{Value, json};

use crate::api_client::ApiClient;
use crate::args::OutputFormat;
use crate::backup_cmd::BackupType;
use crate::json_table::render;
use crate::render as render_body;
use crate::runs_cmd::instance_or_only;

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Schedule backups (or with --drill restore drills) of a repository (`--repo`) or of the
    /// repositories of labelled instances (`--label key=value [--stanza NAME]`) (admin)
    Add {
        /// Five cron fields (minute hour day month weekday), or six with seconds first
        #[arg(long)]
        cron: String,
        /// IANA time zone the cron fields are read in
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        /// The backup's type (default full)
        #[arg(long = "type", value_enum, conflicts_with = "drill")]
        backup_type: Option<BackupType>,
        /// Fire restore drills of the latest backup instead of backups (the agent must allow
        /// the `restore` class)
        #[arg(long)]
        drill: bool,
        /// With --drill: a read-only query run on the restored copy
        #[arg(long, requires = "drill")]
        check_sql: Option<String>,
        /// With --drill: skip amcheck's bt_index_check of the B-tree indexes
        #[arg(long, requires = "drill")]
        no_amcheck: bool,
        /// With --drill: where the scratch copy is made (default: the agent's temporary
        /// directory)
        #[arg(long, requires = "drill")]
        scratch_dir: Option<String>,
        /// Repository id (`lasect backup repo list`)
        #[arg(long, conflicts_with_all = ["label", "stanza"], required_unless_present = "label")]
        repo: Option<i64>,
        /// Every instance with this label (key=value)
        #[arg(long)]
        label: Option<String>,
        /// With --label: only the repositories of this stanza (default: every repository of
        /// the labelled instances, whatever their stanzas)
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
    ("kind", "kind"),
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
    ("kind", "kind"),
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
            drill,
            check_sql,
            no_amcheck,
            scratch_dir,
            repo,
            label: selector,
            stanza,
        } => {
            let mut body = NewSchedule {
                repository_id: None,
                label_key: None,
                label_value: None,
                stanza: None,
                cron,
                time_zone: Some(time_zone),
                kind: None,
                backup_type: None,
                check_sql: None,
                amcheck: None,
                scratch_dir: None,
            };
            if drill {
                body.kind = Some(ScheduleKind::Drill);
                body.amcheck = Some(!no_amcheck);
                body.check_sql = check_sql;
                body.scratch_dir = scratch_dir;
            } else {
                body.backup_type = Some(match backup_type.unwrap_or(BackupType::Full) {
                    BackupType::Full => ScheduledType::Full,
                    BackupType::Diff => ScheduledType::Diff,
                    BackupType::Incr => ScheduledType::Incr,
                });
            }
            match (repo, selector.as_deref(), stanza) {
                (Some(repo), None, None) => body.repository_id = Some(repo),
                (None, Some(selector), stanza) => {
                    let (k, v) = label(selector)?;
                    body.label_key = Some(k.to_owned());
                    body.label_value = Some(v.to_owned());
                    body.stanza = stanza;
                }
                _ => {
                    return Err(crate::exit::Usage(
                        "give --repo, or --label key=value (optionally with --stanza)".to_owned(),
                    )
                    .into());
                }
            }
            let created: Schedule = client.post("api/v1/backup/schedules", &body).await?;
            render_body(output, &serde_json::to_value(&created)?, |_| {
                Ok(format!(
                    "{} schedule {} added; next firing {}\n",
                    created.kind,
                    created.id,
                    crate::printable::escape(created.next_fire_at.as_deref().unwrap_or("never"))
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
            let list: ScheduleList = client.get(&path).await?;
            render_body(output, &serde_json::to_value(&list)?, |_| {
                let mut rows: Vec<Value> = Vec::new();
                for s in &list.schedules {
                    let mut row = serde_json::to_value(s)?;
                    if let (Some(k), Some(v)) = (&s.label_key, &s.label_value) {
                        row["label"] = format!("{k}={v}").into();
                    }
                    rows.push(row);
                }
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
            let list: FiringList = client.get(&path).await?;
            render_body(output, &serde_json::to_value(&list)?, |_| {
                let rows = list
                    .firings
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(render(&rows, FIRING_COLUMNS))
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

    fn add(args: &[&str]) -> Result<ScheduleCommand, clap::Error> {
        use clap::Parser as _;
        let all = [
            &["lasect", "backup", "schedule", "add", "--cron", "0 1 * * *"],
            args,
        ]
        .concat();
        match crate::args::Cli::try_parse_from(all)?.command {
            crate::args::Command::Backup(crate::backup_cmd::BackupCommand::Schedule(c)) => Ok(c),
            other => panic!("not a schedule command: {other:?}"),
        }
    }

    #[test]
    fn a_label_schedule_may_name_a_stanza_or_not() {
        let Ok(ScheduleCommand::Add { label, stanza, .. }) = add(&["--label", "env=prod"]) else {
            panic!("--label alone parses");
        };
        assert_eq!((label.as_deref(), stanza), (Some("env=prod"), None));
        let Ok(ScheduleCommand::Add { stanza, .. }) =
            add(&["--label", "env=prod", "--stanza", "main"])
        else {
            panic!("--label with --stanza parses");
        };
        assert_eq!(stanza.as_deref(), Some("main"));
        // A repository has its own stanza; a stanza alone says whose it is not.
        assert!(add(&["--repo", "3", "--stanza", "main"]).is_err());
        assert!(add(&["--stanza", "main"]).is_err());
    }
}
