//! `lasect schema show|changes`, `lasect data export|import|dump` and `lasect extension
//! list|enable|disable|update`: the schema explorer, data transfer and extensions, each a run
//! on the instance's agent.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use lasect_api_contract::data::{DumpRequest, ExportRequest};
use lasect_api_contract::runs::{ExtensionActionResult, ImportCsvResult, RunView, SchemaDocument};
use lasect_api_contract::schema::{
    ExtensionAction, ExtensionList, SchemaChanges, SchemaSnapshot, SnapshotRequest,
};

use serde_json::Value;

use crate::api_client::{ApiClient, typed};
use crate::args::OutputFormat;
use crate::printable::{TerminalWriter, escape};
use crate::runs_cmd::{failure, instance_or_only, wait_run};
use crate::{encode_segment, render};

/// The structured result of a succeeded run (`lasect_runs`'s type of its kind); a run without
/// one reads as the type's defaults, as an older agent's would.
fn summary<T: serde::de::DeserializeOwned + Default>(run: &RunView) -> anyhow::Result<T> {
    match &run.summary {
        None => Ok(T::default()),
        Some(s) => serde_json::from_value(s.clone())
            .with_context(|| format!("unexpected shape of the result of run {}", run.id)),
    }
}

pub async fn schema_show(
    client: &ApiClient,
    instance: Option<String>,
    database: Option<String>,
    table: Option<String>,
    refresh: bool,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let id = instance_or_only(client, instance.as_deref()).await?;
    if refresh {
        let run = client
            .post(
                &format!("api/v1/instances/{id}/schema/snapshots?wait=50"),
                &SnapshotRequest {
                    database: database.clone(),
                },
            )
            .await?;
        let run = wait_run(client, run).await?;
        if !run.succeeded() {
            return Err(failure(&run).into());
        }
    }
    let mut path = format!("api/v1/instances/{id}/schema");
    if let Some(d) = &database {
        let _ = write!(path, "?database={}", encode_segment(d));
    }
    let snapshot: SchemaSnapshot = client.get(&path).await?;
    let doc = snapshot.document().with_context(|| {
        format!(
            "unexpected shape of the schema snapshot {}",
            snapshot.snapshot_id
        )
    })?;
    let only: Option<(String, String)> = table.as_deref().map(split_table);
    let text = schema_text(&snapshot, &doc, only.as_ref());
    render(output, &serde_json::to_value(&snapshot)?, |_| {
        Ok(text.clone())
    })
}

/// The snapshot as text: every table, view, function and type, or one table (`only`) with its
/// columns, constraints, indexes and triggers.
fn schema_text(
    snapshot: &SchemaSnapshot,
    doc: &SchemaDocument,
    only: Option<&(String, String)>,
) -> String {
    let mut out = format!(
        "database {} (snapshot {} taken {})\n",
        escape(&snapshot.database),
        snapshot.snapshot_id,
        escape(&snapshot.taken_at)
    );
    for schema in &doc.schemas {
        let sname = escape(&schema.name);
        for table in &schema.tables {
            let tname = escape(&table.name);
            if let Some((os, ot)) = only
                && (*os != schema.name || *ot != table.name)
            {
                continue;
            }
            let _ = writeln!(
                out,
                "table {sname}.{tname} (~{} rows, {} bytes)",
                table.row_estimate, table.size_bytes
            );
            if only.is_none() {
                continue;
            }
            for c in &table.columns {
                let _ = writeln!(
                    out,
                    "  {} {}{}{}",
                    escape(&c.name),
                    escape(&c.type_name),
                    if c.nullable { "" } else { " NOT NULL" },
                    c.default
                        .as_deref()
                        .map(|d| format!(" DEFAULT {}", escape(d)))
                        .unwrap_or_default()
                );
            }
            for k in &table.constraints {
                let _ = writeln!(
                    out,
                    "  constraint {} {}",
                    escape(&k.name),
                    escape(&k.definition)
                );
            }
            for i in &table.indexes {
                let _ = writeln!(out, "  index {}", escape(&i.definition));
            }
            for t in &table.triggers {
                let _ = writeln!(out, "  trigger {}", escape(&t.name));
            }
        }
        if only.is_none() {
            for v in &schema.views {
                let _ = writeln!(out, "view {sname}.{}", escape(&v.name));
            }
            for f in &schema.functions {
                let _ = writeln!(
                    out,
                    "function {sname}.{} returns {}",
                    escape(&f.signature),
                    escape(f.returns.as_deref().unwrap_or_default())
                );
            }
            for t in &schema.types {
                let _ = writeln!(
                    out,
                    "type {sname}.{} ({})",
                    escape(&t.name),
                    escape(&t.kind)
                );
            }
        }
    }
    out
}

pub async fn schema_changes(
    client: &ApiClient,
    instance: Option<String>,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let id = instance_or_only(client, instance.as_deref()).await?;
    let changes: SchemaChanges = client
        .get(&format!("api/v1/instances/{id}/schema/changes"))
        .await?;
    render(output, &serde_json::to_value(&changes)?, |_| {
        if changes.changes.is_empty() {
            return Ok("no recorded changes\n".to_owned());
        }
        let mut table = crate::instance_table::new_table();
        table.set_header(["detected", "database", "kind", "object", "change", "class"]);
        for c in &changes.changes {
            let class = if c.classification == "breaking" {
                "BREAKING"
            } else {
                "non-breaking"
            };
            table.add_row([
                escape(&c.detected_at),
                escape(&c.database),
                escape(&c.object_kind),
                escape(&c.object_name),
                escape(&c.change),
                class.into(),
            ]);
        }
        Ok(format!("{table}\n"))
    })
}

/// Streams a run's result to `out` (a file) or stdout; returns the bytes written.
async fn download(client: &ApiClient, run: &RunView, out: Option<&PathBuf>) -> anyhow::Result<u64> {
    let id = run.id;
    let mut response = client
        .get_stream(&format!("api/v1/runs/{id}/download"))
        .await?;
    let mut written = 0u64;
    if out.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        // Rows on a terminal are shown, not obeyed; a pipe or a file gets the bytes as they are.
        let mut sink = TerminalWriter::new(std::io::stdout().lock());
        while let Some(chunk) = response.chunk().await.context("read the download")? {
            sink.write_chunk(&chunk).context("write the download")?;
            written += chunk.len() as u64;
        }
        sink.finish().context("write the download")?;
        return Ok(written);
    }
    let mut sink: Box<dyn std::io::Write> = match out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    while let Some(chunk) = response.chunk().await.context("read the download")? {
        sink.write_all(&chunk).context("write the download")?;
        written += chunk.len() as u64;
    }
    sink.flush().context("write the download")?;
    Ok(written)
}

async fn run_and_download<B: serde::Serialize>(
    client: &ApiClient,
    path: &str,
    body: &B,
    out: Option<PathBuf>,
) -> anyhow::Result<String> {
    let run = client.post(path, body).await?;
    let run = wait_run(client, run).await?;
    if !run.succeeded() {
        return Err(failure(&run).into());
    }
    let bytes = download(client, &run, out.as_ref()).await?;
    let truncated = if run.truncated {
        " (truncated at max_bytes)"
    } else {
        ""
    };
    Ok(match out {
        Some(p) => format!("wrote {bytes} bytes to {}{truncated}\n", p.display()),
        None => {
            if !truncated.is_empty() {
                eprintln!("warning: the result was truncated at max_bytes");
            }
            String::new()
        }
    })
}

fn split_table(t: &str) -> (String, String) {
    match t.split_once('.') {
        Some((a, b)) => (a.to_owned(), b.to_owned()),
        None => ("public".to_owned(), t.to_owned()),
    }
}

pub async fn export(
    client: &ApiClient,
    instance: Option<String>,
    table: Option<String>,
    query: Option<String>,
    database: Option<String>,
    out: Option<PathBuf>,
) -> anyhow::Result<String> {
    let id = instance_or_only(client, instance.as_deref()).await?;
    let mut body = ExportRequest {
        database,
        ..ExportRequest::default()
    };
    match (table, query) {
        (Some(t), None) => {
            let (schema, table) = split_table(&t);
            body.schema = Some(schema);
            body.table = Some(table);
        }
        (None, Some(q)) => body.sql = Some(q),
        _ => {
            return Err(
                crate::exit::Usage("give --table schema.table or --query SQL".to_owned()).into(),
            );
        }
    }
    run_and_download(
        client,
        &format!("api/v1/instances/{id}/export?wait=50"),
        &body,
        out,
    )
    .await
}

pub async fn dump(
    client: &ApiClient,
    instance: Option<String>,
    schema: Option<String>,
    table: Option<String>,
    with_data: bool,
    database: Option<String>,
    out: Option<PathBuf>,
) -> anyhow::Result<String> {
    let id = instance_or_only(client, instance.as_deref()).await?;
    let body = DumpRequest {
        schema,
        table,
        schema_only: Some(!with_data),
        database,
        ..DumpRequest::default()
    };
    run_and_download(
        client,
        &format!("api/v1/instances/{id}/dump?wait=50"),
        &body,
        out,
    )
    .await
}

pub async fn import(
    client: &ApiClient,
    instance: Option<String>,
    table: String,
    file: PathBuf,
    no_header: bool,
    database: Option<String>,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let id = instance_or_only(client, instance.as_deref()).await?;
    let data = std::fs::read(&file).with_context(|| format!("read {}", file.display()))?;
    let (schema, table) = split_table(&table);
    let mut path = format!(
        "api/v1/instances/{id}/import?schema={}&table={}&header={}&wait=50",
        encode_segment(&schema),
        encode_segment(&table),
        !no_header
    );
    if let Some(d) = database {
        let _ = write!(path, "&database={}", encode_segment(&d));
    }
    let run = typed(client.post_bytes(&path, data, "text/csv").await?, &path)?;
    let run = wait_run(client, run).await?;
    if !run.succeeded() {
        return Err(failure(&run).into());
    }
    let result: ImportCsvResult = summary(&run)?;
    render(output, &serde_json::to_value(&run)?, |_| {
        Ok(format!(
            "imported {} row(s) into {schema}.{table}\n",
            result.rows_imported
        ))
    })
}

pub async fn extension_list(
    client: &ApiClient,
    instance: Option<String>,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let id = instance_or_only(client, instance.as_deref()).await?;
    let body = client
        .get_json(&format!("api/v1/instances/{id}/extensions?wait=50"))
        .await?;
    crate::runs_cmd::result_or_pending(&body)?;
    let path = format!("api/v1/instances/{id}/extensions");
    let list: ExtensionList = typed(body, &path)?;
    let rows: Vec<Value> = list
        .extensions
        .iter()
        .map(serde_json::to_value)
        .collect::<serde_json::Result<_>>()?;
    render(output, &serde_json::to_value(&list)?, |_| {
        Ok(crate::json_table::render(
            &rows,
            &[
                ("name", "name"),
                ("installed", "installed_version"),
                ("default", "default_version"),
                ("schema", "schema"),
                ("comment", "comment"),
            ],
        ))
    })
}

pub async fn extension_action(
    client: &ApiClient,
    instance: Option<String>,
    action: &str,
    name: String,
    version: Option<String>,
    cascade: bool,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let id = instance_or_only(client, instance.as_deref()).await?;
    let body = ExtensionAction {
        action: action.to_owned(),
        name,
        version,
        schema: None,
        cascade,
        database: None,
    };
    let run = client
        .post(&format!("api/v1/instances/{id}/extensions?wait=50"), &body)
        .await?;
    let run = wait_run(client, run).await?;
    if !run.succeeded() {
        return Err(failure(&run).into());
    }
    let result: ExtensionActionResult = summary(&run)?;
    render(output, &serde_json::to_value(&run)?, |_| {
        Ok(format!(
            "{action} {}: installed version {}\n",
            escape(&result.name),
            escape(result.installed_version.as_deref().unwrap_or("none"))
        ))
    })
}
