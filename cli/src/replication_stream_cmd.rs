//! `lasect replication stream create|list|status|remove`: logical replication streams
//! created, validated and rolled back by the API (docs/REPLICATION.md, "Streams").

use std::fmt::Write as _;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::api_client::ApiClient;
use crate::args::OutputFormat;
use crate::human_units::bytes;
use crate::printable::{escape, str_or};
use crate::render as render_body;

#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Validate (both ends, every problem at once) and create a stream: publication and slot
    /// on the publisher, subscription on the subscriber; rolled back on any failure
    Create {
        /// The publisher (instance name or id)
        #[arg(long, value_name = "INSTANCE")]
        from: String,
        /// The subscriber (instance name or id)
        #[arg(long, value_name = "INSTANCE")]
        to: String,
        /// Tables to replicate, comma-separated (`schema.table` or `table`)
        #[arg(
            long,
            value_delimiter = ',',
            conflicts_with = "schema",
            required_unless_present = "schema"
        )]
        tables: Vec<String>,
        /// Every table of this schema
        #[arg(long)]
        schema: Option<String>,
        /// Create the tables missing on the subscriber from the publisher's definitions
        #[arg(long)]
        copy_schema: bool,
        /// Validate only
        #[arg(long)]
        dry_run: bool,
        /// How the subscriber reaches the publisher (libpq conninfo without a password);
        /// default: the publisher's socket on the same host, else its address and port
        #[arg(long)]
        conninfo: Option<String>,
        /// The role the subscription connects as
        #[arg(long)]
        user: Option<String>,
        /// Read that role's password from stdin (stored encrypted, never shown)
        #[arg(long)]
        password_stdin: bool,
        /// The publisher's database (default: its agent's)
        #[arg(long)]
        publisher_database: Option<String>,
        /// The subscriber's database (default: its agent's)
        #[arg(long)]
        subscriber_database: Option<String>,
    },
    /// The streams, newest first
    List,
    /// One stream: its steps and its backfill (per table progress and ETA)
    Status { id: i64 },
    /// Drop the subscription, the slot and the publication (subscriber first)
    Remove { id: i64 },
}

pub async fn run(
    client: &ApiClient,
    command: StreamCommand,
    output: OutputFormat,
) -> anyhow::Result<String> {
    match command {
        StreamCommand::Create {
            from,
            to,
            tables,
            schema,
            copy_schema,
            dry_run,
            conninfo,
            user,
            password_stdin,
            publisher_database,
            subscriber_database,
        } => {
            let password = if password_stdin {
                Some(crate::password::read("Password: ", true)?)
            } else {
                None
            };
            let from = crate::instance_ref::resolve(client, &from).await?;
            let to = crate::instance_ref::resolve(client, &to).await?;
            let mut request = json!({
                "from": from,
                "to": to,
                "copy_schema": copy_schema,
                "dry_run": dry_run,
            });
            let fields = [
                ("schema", schema),
                ("conninfo", conninfo),
                ("user", user),
                ("publisher_database", publisher_database),
                ("subscriber_database", subscriber_database),
            ];
            if let Value::Object(map) = &mut request {
                if !tables.is_empty() {
                    map.insert("tables".into(), json!(tables));
                }
                for (key, value) in fields {
                    if let Some(v) = value {
                        map.insert(key.into(), json!(v));
                    }
                }
                if let Some(p) = &password {
                    map.insert("password".into(), json!(p.expose_secret()));
                }
            }
            let (status, body) = client
                .request_with_status(
                    reqwest::Method::POST,
                    "api/v1/replication/streams",
                    Some(&request),
                )
                .await?;
            finish(output, status, &body)
        }
        StreamCommand::List => {
            let body = client.get_json("api/v1/replication/streams").await?;
            render_body(output, &body, |b| Ok(list(b)))
        }
        StreamCommand::Status { id } => {
            let body = client
                .get_json(&format!("api/v1/replication/streams/{id}"))
                .await?;
            render_body(output, &body, |b| Ok(status_text(b)))
        }
        StreamCommand::Remove { id } => {
            let (status, body) = client
                .request_with_status(
                    reqwest::Method::DELETE,
                    &format!("api/v1/replication/streams/{id}"),
                    None,
                )
                .await?;
            finish(output, status, &body)
        }
    }
}

/// The stream as answered; a stream that is invalid or failed is an error (its report is
/// the message), so scripts see a non-zero exit.
fn finish(output: OutputFormat, status: u16, body: &Value) -> anyhow::Result<String> {
    if status >= 400 {
        let text = render_body(output, body, |b| {
            Ok(format!(
                "{}\n{}",
                str_or(&b["error"]["message"], "failed"),
                status_text(&b["stream"])
            ))
        })?;
        anyhow::bail!("{}", text.trim_end());
    }
    render_body(output, body, |b| Ok(status_text(b)))
}

fn list(body: &Value) -> String {
    let streams = body["streams"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if streams.is_empty() {
        return "no replication streams\n".to_owned();
    }
    let mut out = String::new();
    for s in streams {
        let _ = writeln!(
            out,
            "{:>5}  {} -> {}  {}  {}",
            s["id"],
            str_or(&s["publisher_instance"], "?"),
            str_or(&s["subscriber_instance"], "?"),
            str_or(&s["status"], "?"),
            s["tables"]
                .as_array()
                .map(|t| t
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|n| escape(n).into_owned())
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default(),
        );
    }
    out
}

fn duration(secs: f64) -> String {
    let s = secs.round() as i64;
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// One stream: what it is, its status (problems, the failed step), its steps and backfill.
pub fn status_text(s: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "stream {}: {} -> {}  status {}",
        s["id"],
        str_or(&s["publisher_instance"], "?"),
        str_or(&s["subscriber_instance"], "?"),
        str_or(&s["status"], "?"),
    );
    let _ = writeln!(
        out,
        "  publication {}, slot {}, subscription {}",
        str_or(&s["publication"], "?"),
        str_or(&s["slot_name"], "?"),
        str_or(&s["subscription"], "?"),
    );
    if let Some(problems) = s["problems"].as_array().filter(|p| !p.is_empty()) {
        let _ = writeln!(out, "  problems ({}), nothing was created:", problems.len());
        for p in problems {
            let _ = writeln!(
                out,
                "  - [{} {}] {}",
                str_or(&p["side"], "?"),
                str_or(&p["check"], "?"),
                str_or(&p["message"], ""),
            );
        }
    }
    if let Some(step) = s["failed_step"].as_str() {
        let _ = writeln!(
            out,
            "  failed at {}: {}",
            escape(step),
            str_or(&s["error"], "")
        );
    }
    for st in s["steps"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let run = st["run_id"]
            .as_i64()
            .map(|r| format!(" (run {r})"))
            .unwrap_or_default();
        let _ = write!(
            out,
            "  {:>2}. {:<22} {}{run}",
            st["n"],
            str_or(&st["step"], "?"),
            str_or(&st["status"], "?"),
        );
        if let Some(e) = st["error"].as_str() {
            let _ = write!(out, ": {}", escape(e));
        }
        out.push('\n');
    }
    if let Some(b) = s.get("backfill").filter(|b| b.is_object()) {
        let _ = write!(
            out,
            "  backfill: {}, {} of {} tables ready",
            str_or(&b["state"], "?"),
            b["tables_ready"],
            b["tables_total"]
        );
        if let Some(p) = b["percent"].as_f64() {
            let _ = write!(out, ", {p:.1} %");
        }
        if let Some(r) = b["rows_per_second"].as_f64() {
            let _ = write!(out, ", {r:.0} rows/s");
        }
        if let Some(e) = b["eta_seconds"].as_f64() {
            let _ = write!(out, ", ETA {}", duration(e));
        }
        out.push('\n');
        for t in b["tables"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let _ = write!(
                out,
                "    {}.{} {}",
                str_or(&t["schema"], "?"),
                str_or(&t["table"], "?"),
                str_or(&t["state"], "?"),
            );
            if let Some(p) = t["percent"].as_f64() {
                let _ = write!(out, " {p:.1} %");
            }
            if let (Some(done), Some(total)) =
                (t["rows_copied"].as_i64(), t["publisher_rows"].as_i64())
            {
                let _ = write!(out, " ({done} of ~{total} rows)");
            }
            if let (Some(done), Some(total)) =
                (t["bytes_copied"].as_i64(), t["publisher_bytes"].as_i64())
            {
                let _ = write!(out, " ({} copied, table {})", bytes(done), bytes(total));
            }
            if let Some(e) = t["eta_seconds"]
                .as_f64()
                .filter(|_| t["state"] == "data_copy")
            {
                let _ = write!(out, " ETA {}", duration(e));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_in_copy_shows_progress_and_eta() {
        let s = json!({
            "id": 4, "publisher_instance": "main", "subscriber_instance": "reporting",
            "status": "syncing", "publication": "lasect_stream_4", "slot_name": "lasect_stream_4",
            "subscription": "lasect_stream_4", "problems": [], "steps": [
                {"n": 1, "step": "validate_publisher", "status": "succeeded", "run_id": 10}
            ],
            "backfill": {"state": "initial_sync", "tables_ready": 0, "tables_total": 1,
                "percent": 42.0, "rows_per_second": 1500.0, "eta_seconds": 125.0,
                "tables": [{"schema": "public", "table": "orders", "state": "data_copy",
                    "percent": 42.0, "rows_copied": 420, "publisher_rows": 1000,
                    "eta_seconds": 125.0}]}
        });
        let text = status_text(&s);
        assert!(text.contains("status syncing"), "{text}");
        assert!(text.contains("1. validate_publisher"), "{text}");
        assert!(text.contains("42.0 %, 1500 rows/s, ETA 2m05s"), "{text}");
        assert!(
            text.contains("public.orders data_copy 42.0 % (420 of ~1000 rows) ETA 2m05s"),
            "{text}"
        );
    }

    #[test]
    fn an_invalid_stream_lists_every_problem() {
        let s = json!({"id": 5, "status": "invalid", "problems": [
            {"side": "publisher", "check": "wal_level", "message": "wal_level is replica"},
            {"side": "subscriber", "check": "target_table_missing", "message": "no public.t"}
        ], "steps": []});
        let text = status_text(&s);
        assert!(text.contains("problems (2)"), "{text}");
        assert!(
            text.contains("[publisher wal_level] wal_level is replica"),
            "{text}"
        );
        assert!(text.contains("[subscriber target_table_missing]"), "{text}");
    }
}
