//! `lasect replication stream create|list|status|remove`: logical replication streams
//! created, validated and rolled back by the API (docs/REPLICATION.md, "Streams").

use std::fmt::Write as _;

use clap::Subcommand;
use serde_json::{Value, json};

use lasect_api_contract::replication::{Stream, StreamList};
use serde::Deserialize;

use crate::api_client::{ApiClient, typed};
use crate::args::OutputFormat;
use crate::human_units::bytes;
use crate::printable::escape;
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
            let path = "api/v1/replication/streams";
            let body = client.get_json(path).await?;
            let streams: StreamList = typed(body.clone(), path)?;
            render_body(output, &body, |_| Ok(list(&streams)))
        }
        StreamCommand::Status { id } => {
            let path = format!("api/v1/replication/streams/{id}");
            let body = client.get_json(&path).await?;
            let stream: Stream = typed(body.clone(), &path)?;
            render_body(output, &body, |_| Ok(status_text(&stream)))
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
    const PATH: &str = "api/v1/replication/streams";
    if status >= 400 {
        // Whatever the error body holds, the message is shown (a refusal has no stream).
        let failed = Failed::deserialize(body).unwrap_or_default();
        let text = render_body(output, body, |_| {
            Ok(format!(
                "{}\n{}",
                escape(failed.error.message.as_deref().unwrap_or("failed")),
                failed.stream.as_ref().map(status_text).unwrap_or_default()
            ))
        })?;
        anyhow::bail!("{}", text.trim_end());
    }
    let stream: Stream = typed(body.clone(), PATH)?;
    render_body(output, body, |_| Ok(status_text(&stream)))
}

/// A stream request that could not be carried out: the error, and the stream when the
/// operation ran (an error without one, such as a refusal, has no stream).
#[derive(Default, Deserialize)]
struct Failed {
    #[serde(default)]
    error: FailedError,
    #[serde(default)]
    stream: Option<Stream>,
}

#[derive(Default, Deserialize)]
struct FailedError {
    #[serde(default)]
    message: Option<String>,
}

fn list(body: &StreamList) -> String {
    let streams = &body.streams;
    if streams.is_empty() {
        return "no replication streams\n".to_owned();
    }
    let mut out = String::new();
    for s in streams {
        let _ = writeln!(
            out,
            "{:>5}  {} -> {}  {}  {}",
            s.id,
            escape(&s.publisher_instance),
            escape(&s.subscriber_instance),
            escape(&s.status),
            s.tables
                .iter()
                .map(|n| escape(n).into_owned())
                .collect::<Vec<_>>()
                .join(","),
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
pub fn status_text(s: &Stream) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "stream {}: {} -> {}  status {}",
        s.id,
        escape(&s.publisher_instance),
        escape(&s.subscriber_instance),
        escape(&s.status),
    );
    let _ = writeln!(
        out,
        "  publication {}, slot {}, subscription {}",
        escape(&s.publication),
        escape(&s.slot_name),
        escape(&s.subscription),
    );
    if !s.problems.is_empty() {
        let _ = writeln!(
            out,
            "  problems ({}), nothing was created:",
            s.problems.len()
        );
        for p in &s.problems {
            let _ = writeln!(
                out,
                "  - [{} {}] {}",
                escape(&p.side),
                escape(&p.check),
                escape(&p.message),
            );
        }
    }
    if let Some(step) = &s.failed_step {
        let _ = writeln!(
            out,
            "  failed at {}: {}",
            escape(step),
            escape(s.error.as_deref().unwrap_or(""))
        );
    }
    for st in &s.steps {
        let run = st.run_id.map(|r| format!(" (run {r})")).unwrap_or_default();
        let _ = write!(
            out,
            "  {:>2}. {:<22} {}{run}",
            st.n,
            escape(&st.step),
            escape(&st.status),
        );
        if let Some(e) = &st.error {
            let _ = write!(out, ": {}", escape(e));
        }
        out.push('\n');
    }
    if let Some(b) = &s.backfill {
        let _ = write!(
            out,
            "  backfill: {}, {} of {} tables ready",
            escape(&b.state),
            b.tables_ready,
            b.tables_total
        );
        if let Some(p) = b.percent {
            let _ = write!(out, ", {p:.1} %");
        }
        if let Some(r) = b.rows_per_second {
            let _ = write!(out, ", {r:.0} rows/s");
        }
        if let Some(e) = b.eta_seconds {
            let _ = write!(out, ", ETA {}", duration(e));
        }
        let state_only = b.copy_progress == "state_only";
        if state_only {
            out.push_str(
                ", copy progress unknown (the subscriber has no pg_stat_progress_copy before \
                 PostgreSQL 14: state only)",
            );
        }
        out.push('\n');
        for t in &b.tables {
            let _ = write!(
                out,
                "    {}.{} {}",
                escape(&t.schema),
                escape(&t.table),
                escape(&t.state),
            );
            if let Some(p) = t.percent {
                let _ = write!(out, " {p:.1} %");
            }
            if let (Some(done), Some(total)) = (t.rows_copied, t.publisher_rows) {
                let _ = write!(out, " ({done} of ~{total} rows)");
            }
            if let (Some(done), Some(total)) = (t.bytes_copied, t.publisher_bytes) {
                let _ = write!(out, " ({} copied, table {})", bytes(done), bytes(total));
            }
            if let Some(e) = t.eta_seconds.filter(|_| t.state == "data_copy") {
                let _ = write!(out, " ETA {}", duration(e));
            }
            if state_only && t.state == "data_copy" {
                out.push_str(" (copying, progress unknown)");
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream as the API answers it, with `fields` over a minimal one.
    fn stream(fields: Value) -> Stream {
        let mut s = json!({
            "id": 1, "publisher_instance_id": 1, "publisher_instance": "main",
            "subscriber_instance_id": 2, "subscriber_instance": "reporting",
            "publisher_database": null, "subscriber_database": null,
            "publication": "lasect_stream_1", "slot_name": "lasect_stream_1",
            "subscription": "lasect_stream_1", "tables": ["public.orders"], "schema": null,
            "copy_schema": false, "created_tables": [], "conninfo": "host=main",
            "password_set": false, "status": "syncing", "dry_run": false, "problems": [],
            "failed_step": null, "error": null, "requested_by": "user:admin",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "steps": [], "backfill": null
        });
        for (k, v) in fields.as_object().expect("fields").clone() {
            s[k] = v;
        }
        serde_json::from_value(s).expect("stream")
    }

    #[test]
    fn a_stream_in_copy_shows_progress_and_eta() {
        let s = stream(json!({
            "id": 4, "publisher_instance": "main", "subscriber_instance": "reporting",
            "status": "syncing", "publication": "lasect_stream_4", "slot_name": "lasect_stream_4",
            "subscription": "lasect_stream_4", "problems": [], "steps": [
                {"n": 1, "step": "validate_publisher", "instance_id": 1, "status": "succeeded",
                 "run_id": 10, "started_at": "2026-01-01T00:00:00Z"}
            ],
            "backfill": {"state": "initial_sync", "tables_ready": 0, "tables_total": 1,
                "copy_progress": "counted", "percent": 42.0, "rows_per_second": 1500.0, "eta_seconds": 125.0,
                "tables": [{"schema": "public", "table": "orders", "state": "data_copy",
                    "percent": 42.0, "rows_copied": 420, "publisher_rows": 1000,
                    "eta_seconds": 125.0}]}
        }));
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
    fn a_copy_without_progress_says_so() {
        let s = stream(json!({
            "backfill": {"state": "initial_sync", "tables_ready": 1, "tables_total": 2,
                "copy_progress": "state_only", "percent": null,
                "tables": [
                    {"schema": "public", "table": "orders", "state": "data_copy"},
                    {"schema": "public", "table": "items", "state": "ready", "percent": 100.0}
                ]}
        }));
        let text = status_text(&s);
        assert!(
            text.contains("1 of 2 tables ready, copy progress unknown"),
            "{text}"
        );
        assert!(
            text.contains("public.orders data_copy (copying, progress unknown)"),
            "{text}"
        );
        assert!(text.contains("public.items ready 100.0 %"), "{text}");
    }

    #[test]
    fn an_invalid_stream_lists_every_problem() {
        let s = stream(json!({"id": 5, "status": "invalid", "problems": [
            {"side": "publisher", "check": "wal_level", "message": "wal_level is replica"},
            {"side": "subscriber", "check": "target_table_missing", "message": "no public.t"}
        ], "steps": []}));
        let text = status_text(&s);
        assert!(text.contains("problems (2)"), "{text}");
        assert!(
            text.contains("[publisher wal_level] wal_level is replica"),
            "{text}"
        );
        assert!(text.contains("[subscriber target_table_missing]"), "{text}");
    }
}
