//! `lasect alert …`: alerts, rules (as YAML files), silences and history.
//!
//! Rule files are YAML, read with `serde_norway` (the maintained fork of the deprecated
//! `serde_yaml`, same API): a file is `rules: [ … ]`, exactly what `lasect alert rule export`
//! writes and `POST /api/v1/alerts/rules/apply` takes, so `export > f; apply -f f` changes
//! nothing. The API validates the rules; this only reads the file (at most [`MAX_FILE_BYTES`]).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use lasect_api_contract::alert_rules::{RuleList, RuleSet};
use lasect_api_contract::alerts::{
    Alert, AlertHistory, AlertList, ApplyResult, NewSilence, RuleTestResult, Silence, SilenceList,
};
use serde_json::{Value, json};

use crate::api_client::{ApiClient, typed};
use crate::args::OutputFormat;
use crate::exit::Usage;
use crate::json_table::{parse_duration_secs, render};
use crate::printable::escape;
use crate::{encode_segment, render as render_body};

/// Largest rules file read (a thousand rules fit in far less).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Alerts now (pending and firing unless --state)
    List {
        /// Only firing alerts
        #[arg(long, conflicts_with = "state")]
        firing: bool,
        /// inactive, pending, firing, resolved, active (pending and firing) or all
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        rule: Option<String>,
        #[arg(long, value_name = "ID")]
        instance: Option<i64>,
    },
    /// Acknowledge an alert until it resolves (global role user)
    Ack { id: i64 },
    /// Alerting rules
    #[command(subcommand)]
    Rule(RuleCommand),
    /// Silences: alerts matching labels are recorded but not notified
    #[command(subcommand)]
    Silence(SilenceCommand),
    /// Notification channels (webhook, Slack, Alertmanager), their routes and deliveries
    #[command(subcommand)]
    Channel(crate::alert_channel_cmd::ChannelCommand),
    /// State changes, newest first
    History {
        #[arg(long)]
        rule: Option<String>,
        #[arg(long, value_name = "ID")]
        instance: Option<i64>,
        /// Since this long ago (15m, 1h, 7d) or an RFC 3339 time
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Every rule with its state of evaluation
    List,
    /// Make the rules those of a YAML file (rules not in it are deleted, except the default
    /// pack's: list one with `enabled: false` to turn it off) (admin)
    Apply {
        #[arg(long, short = 'f', value_name = "FILE")]
        file: PathBuf,
        /// Show what would change; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Every rule as a YAML file for `apply` (JSON with -o json)
    Export,
    /// Evaluate a stored rule now and show what it would fire (global role user)
    Test { name: String },
}

#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Silence alerts whose labels match, from now (global role user)
    Add {
        /// Label matchers, e.g. "alertname=deadlocks, env=staging"
        #[arg(long, short)]
        matchers: String,
        /// How long, e.g. 2h, 30m, 7d
        #[arg(long, short)]
        duration: String,
        #[arg(long, short)]
        comment: String,
        /// Start this long from now (a maintenance window), e.g. 1h
        #[arg(long)]
        starts_in: Option<String>,
    },
    /// Silences, active and recent
    List,
    /// End a silence now (global role user)
    Remove { id: i64 },
}

const ALERT_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("rule", "rule"),
    ("severity", "severity"),
    ("state", "state"),
    ("since", "since"),
    ("instance", "instance"),
    ("agent", "agent_id"),
    ("keys", "key_labels_text"),
    ("value", "value"),
    ("summary", "summary"),
    ("silenced", "silenced"),
    ("ack", "acknowledged_by"),
];

const RULE_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("name", "name"),
    ("severity", "severity"),
    ("enabled", "enabled"),
    ("kind", "kind"),
    ("family", "family"),
    ("source", "source"),
    ("last error", "last_error"),
];

const SILENCE_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("matchers", "matchers"),
    ("starts", "starts_at"),
    ("ends", "ends_at"),
    ("active", "active"),
    ("by", "created_by"),
    ("comment", "comment"),
];

const HISTORY_COLUMNS: &[(&str, &str)] = &[
    ("at", "at"),
    ("rule", "rule"),
    ("from", "from_state"),
    ("to", "to_state"),
    ("value", "value"),
    ("instance", "instance_id"),
    ("agent", "agent_id"),
    ("silenced", "silenced"),
];

const TEST_COLUMNS: &[(&str, &str)] = &[
    ("instance", "instance"),
    ("agent", "agent_id"),
    ("keys", "key_labels_text"),
    ("value", "value"),
    ("holds", "holds"),
    ("would be", "would_be"),
];

fn rows<'a>(body: &'a Value, key: &str) -> &'a [Value] {
    body[key].as_array().map_or(&[], Vec::as_slice)
}

/// `{"datname": "app"}` as `datname=app` for a table cell.
fn key_text(v: &Value) -> Value {
    let text = v
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Value::String(text)
}

fn table(
    output: OutputFormat,
    body: &Value,
    key: &str,
    columns: &[(&str, &str)],
) -> anyhow::Result<String> {
    render_body(output, body, |b| {
        let rows: Vec<Value> = rows(b, key)
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r["key_labels_text"] = key_text(&r["key_labels"]);
                r["summary"] = r["annotations"]["summary"].clone();
                r
            })
            .collect();
        Ok(render(&rows, columns))
    })
}

/// Reads a rules file: YAML (JSON is YAML too) of `{rules: [...]}`.
pub fn read_rules(path: &std::path::Path) -> anyhow::Result<Value> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("read {}", path.display()))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(Usage(format!(
            "{} is {size} bytes; a rules file is at most {MAX_FILE_BYTES}",
            path.display()
        ))
        .into());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    parse_rules(&text).map_err(|e| Usage(format!("{}: {e}", path.display())).into())
}

/// The rules of a YAML text; the error says where (serde_norway gives line and column).
pub fn parse_rules(text: &str) -> Result<Value, String> {
    let value: Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    match value.get("rules") {
        Some(Value::Array(_)) => Ok(value),
        _ => Err("expected a mapping with `rules:`, a list of rules (as `lasect alert rule export` writes)".to_owned()),
    }
}

pub async fn run(
    client: &ApiClient,
    command: AlertCommand,
    output: OutputFormat,
) -> anyhow::Result<String> {
    match command {
        AlertCommand::List {
            firing,
            state,
            rule,
            instance,
        } => {
            let mut query = Vec::new();
            if firing {
                query.push("state=firing".to_owned());
            } else if let Some(s) = state {
                query.push(format!("state={}", encode_segment(&s)));
            }
            if let Some(r) = rule {
                query.push(format!("rule={}", encode_segment(&r)));
            }
            if let Some(i) = instance {
                query.push(format!("instance_id={i}"));
            }
            let alerts: AlertList = client
                .get(&format!("api/v1/alerts?{}", query.join("&")))
                .await?;
            table(
                output,
                &serde_json::to_value(&alerts)?,
                "alerts",
                ALERT_COLUMNS,
            )
        }
        AlertCommand::Ack { id } => {
            let alert: Alert = client
                .post(&format!("api/v1/alerts/{id}/ack"), &json!({}))
                .await?;
            render_body(output, &serde_json::to_value(&alert)?, |_| {
                Ok(format!(
                    "acknowledged alert {id} ({})\n",
                    escape(&alert.rule)
                ))
            })
        }
        AlertCommand::History {
            rule,
            instance,
            since,
            limit,
        } => {
            let mut query = vec![format!("limit={limit}")];
            if let Some(r) = rule {
                query.push(format!("rule={}", encode_segment(&r)));
            }
            if let Some(i) = instance {
                query.push(format!("instance_id={i}"));
            }
            if let Some(s) = since {
                query.push(format!("since={}", encode_segment(&s)));
            }
            let history: AlertHistory = client
                .get(&format!("api/v1/alerts/history?{}", query.join("&")))
                .await?;
            table(
                output,
                &serde_json::to_value(&history)?,
                "events",
                HISTORY_COLUMNS,
            )
        }
        AlertCommand::Rule(RuleCommand::List) => {
            let list: RuleList = client.get("api/v1/alerts/rules").await?;
            let rows: Vec<Value> = list
                .rules
                .iter()
                .map(|r| {
                    let (def, condition) = (&r.rule, &r.rule.condition);
                    Ok(json!({
                        "id": r.id, "name": def.name, "severity": def.severity.as_str(),
                        "enabled": def.enabled, "kind": serde_json::to_value(condition.kind)?,
                        "family": condition.family, "source": r.source,
                        "last_error": r.last_error,
                    }))
                })
                .collect::<serde_json::Result<_>>()?;
            render_body(output, &serde_json::to_value(&list)?, |_| {
                Ok(render(&rows, RULE_COLUMNS))
            })
        }
        AlertCommand::Rule(RuleCommand::Export) => {
            let set: RuleSet = client.get("api/v1/alerts/rules/export").await?;
            let body = serde_json::to_value(&set)?;
            match output {
                OutputFormat::Json => render_body(output, &body, |_| Ok(String::new())),
                OutputFormat::Table => serde_norway::to_string(&body).context("write YAML"),
            }
        }
        AlertCommand::Rule(RuleCommand::Apply { file, dry_run }) => {
            let mut set = read_rules(&file)?;
            set["dry_run"] = Value::Bool(dry_run);
            let path = "api/v1/alerts/rules/apply";
            let result: ApplyResult = typed(client.post_json(path, &set).await?, path)?;
            render_body(output, &serde_json::to_value(&result)?, |_| {
                Ok(diff_text(&result))
            })
        }
        AlertCommand::Rule(RuleCommand::Test { name }) => {
            let result: RuleTestResult = client
                .post("api/v1/alerts/rules/test", &json!({"name": name}))
                .await?;
            table(
                output,
                &serde_json::to_value(&result)?,
                "values",
                TEST_COLUMNS,
            )
        }
        AlertCommand::Silence(SilenceCommand::Add {
            matchers,
            duration,
            comment,
            starts_in,
        }) => {
            let secs = parse_duration_secs(&duration).ok_or_else(|| {
                Usage(format!(
                    "--duration must be like 30m, 2h or 7d, not {duration:?}"
                ))
            })?;
            let starts_in = match starts_in {
                None => 0,
                Some(text) => parse_duration_secs(&text).ok_or_else(|| {
                    Usage(format!(
                        "--starts-in must be like 30m, 2h or 7d, not {text:?}"
                    ))
                })?,
            };
            // Beyond u32 is far beyond the API's range: it is the API that says what it is.
            let request = NewSilence {
                matchers,
                duration_secs: u32::try_from(secs).unwrap_or(u32::MAX),
                starts_in_secs: Some(u32::try_from(starts_in).unwrap_or(u32::MAX)),
                comment,
            };
            let silence: Silence = client.post("api/v1/alerts/silences", &request).await?;
            render_body(output, &serde_json::to_value(&silence)?, |_| {
                Ok(format!(
                    "silence {} from {} until {}\n",
                    silence.id,
                    escape(&silence.starts_at),
                    escape(&silence.ends_at)
                ))
            })
        }
        AlertCommand::Silence(SilenceCommand::List) => {
            let silences: SilenceList = client.get("api/v1/alerts/silences").await?;
            table(
                output,
                &serde_json::to_value(&silences)?,
                "silences",
                SILENCE_COLUMNS,
            )
        }
        AlertCommand::Channel(c) => crate::alert_channel_cmd::run(client, c, output).await,
        AlertCommand::Silence(SilenceCommand::Remove { id }) => {
            let path = format!("api/v1/alerts/silences/{id}");
            let removed: Silence = typed(client.delete_json(&path).await?, &path)?;
            render_body(output, &serde_json::to_value(&removed)?, |_| {
                Ok(format!("silence {id} removed\n"))
            })
        }
    }
}

/// `+ created`, `~ updated (fields)`, `- deleted`, then the count unchanged.
fn diff_text(result: &ApplyResult) -> String {
    let d = &result.diff;
    let mut out = String::new();
    for n in &d.created {
        out.push_str(&format!("+ {}\n", escape(n)));
    }
    for c in &d.updated {
        out.push_str(&format!(
            "~ {} ({})\n",
            escape(&c.name),
            c.fields.join(", ")
        ));
    }
    for n in &d.deleted {
        out.push_str(&format!("- {}\n", escape(n)));
    }
    let verb = if result.dry_run {
        "would stay"
    } else {
        "unchanged"
    };
    out.push_str(&format!("{} {verb}\n", d.unchanged));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_files_are_yaml_with_a_rules_list() {
        let v = parse_rules("rules:\n  - name: a\n    severity: info\n").expect("parses");
        assert_eq!(v["rules"][0]["name"], "a");
        let e = parse_rules("rules:\n  - name: a\n   severity: info\n").expect_err("bad indent");
        assert!(e.contains("line"), "{e}");
        assert!(
            parse_rules("- name: a\n")
                .expect_err("no rules")
                .contains("rules:")
        );
    }

    #[test]
    fn an_oversized_rules_file_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rules.yaml");
        let file = std::fs::File::create(&path).expect("create");
        file.set_len(MAX_FILE_BYTES + 1).expect("grow");
        let e = read_rules(&path).expect_err("too large");
        assert!(e.downcast_ref::<Usage>().is_some(), "{e:#}");
        assert!(e.to_string().contains("at most 4194304"), "{e:#}");
        std::fs::write(&path, "rules: []\n").expect("write");
        assert_eq!(read_rules(&path).expect("small")["rules"], json!([]));
    }

    #[test]
    fn the_diff_reads_like_one() {
        let result: ApplyResult = serde_json::from_value(json!({"dry_run": true, "diff": {
            "created": ["new"], "updated": [{"name": "x", "fields": ["condition", "for_secs"]}],
            "deleted": ["old"], "unchanged": 3}}))
        .expect("an apply's answer");
        let text = diff_text(&result);
        assert_eq!(
            text,
            "+ new\n~ x (condition, for_secs)\n- old\n3 would stay\n"
        );
    }
}
