//! `lasect schema show|changes`, `lasect data export|import|dump` and `lasect extension
//! list|enable|disable|update`: the schema explorer, data transfer and extensions, each a run
//! on the instance's agent.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use lasect_api_contract::runs::RunView;
use serde_json::{Value, json};

use crate::api_client::{ApiClient, typed};
use crate::args::OutputFormat;
use crate::printable::{TerminalWriter, escape, str_or};
use crate::runs_cmd::{failure, instance_or_only, wait_run};
use crate::{encode_segment, render};

/// A string of the answer, escaped for the terminal ("" when absent).
fn s(v: &Value) -> std::borrow::Cow<'_, str> {
    str_or(v, "")
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
                &json!({ "database": database }),
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
    let body = client.get_json(&path).await?;
    let only: Option<(String, String)> = table.as_deref().map(split_table);
    render(output, &body, |b| {
        let mut out = format!(
            "database {} (snapshot {} taken {})\n",
            s(&b["database"]),
            b["snapshot_id"],
            s(&b["taken_at"])
        );
        for schema in b["snapshot"]["schemas"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let sname_raw = schema["name"].as_str().unwrap_or("");
            let sname = escape(sname_raw);
            for table in schema["tables"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                let tname_raw = table["name"].as_str().unwrap_or("");
                let tname = escape(tname_raw);
                if let Some((os, ot)) = &only
                    && (os != sname_raw || ot != tname_raw)
                {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "table {sname}.{tname} (~{} rows, {} bytes)",
                    table["row_estimate"], table["size_bytes"]
                );
                if only.is_none() {
                    continue;
                }
                for c in table["columns"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                {
                    let _ = writeln!(
                        out,
                        "  {} {}{}{}",
                        s(&c["name"]),
                        s(&c["type"]),
                        if c["nullable"] == false {
                            " NOT NULL"
                        } else {
                            ""
                        },
                        c["default"]
                            .as_str()
                            .map(|d| format!(" DEFAULT {}", escape(d)))
                            .unwrap_or_default()
                    );
                }
                for k in table["constraints"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                {
                    let _ = writeln!(
                        out,
                        "  constraint {} {}",
                        s(&k["name"]),
                        s(&k["definition"])
                    );
                }
                for i in table["indexes"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                {
                    let _ = writeln!(out, "  index {}", s(&i["definition"]));
                }
                for t in table["triggers"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                {
                    let _ = writeln!(out, "  trigger {}", s(&t["name"]));
                }
            }
            if only.is_none() {
                for v in schema["views"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    let _ = writeln!(out, "view {sname}.{}", s(&v["name"]));
                }
                for f in schema["functions"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                {
                    let _ = writeln!(
                        out,
                        "function {sname}.{} returns {}",
                        s(&f["signature"]),
                        s(&f["returns"])
                    );
                }
                for t in schema["types"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    let _ = writeln!(out, "type {sname}.{} ({})", s(&t["name"]), s(&t["kind"]));
                }
            }
        }
        Ok(out)
    })
}

pub async fn schema_changes(
    client: &ApiClient,
    instance: Option<String>,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let id = instance_or_only(client, instance.as_deref()).await?;
    let body = client
        .get_json(&format!("api/v1/instances/{id}/schema/changes"))
        .await?;
    render(output, &body, |b| {
        let changes = b["changes"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if changes.is_empty() {
            return Ok("no recorded changes\n".to_owned());
        }
        let mut table = crate::instance_table::new_table();
        table.set_header(["detected", "database", "kind", "object", "change", "class"]);
        for c in changes {
            let class = if c["classification"] == "breaking" {
                "BREAKING"
            } else {
                "non-breaking"
            };
            table.add_row([
                s(&c["detected_at"]),
                s(&c["database"]),
                s(&c["object_kind"]),
                s(&c["object_name"]),
                s(&c["change"]),
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

async fn run_and_download(
    client: &ApiClient,
    path: &str,
    body: Value,
    out: Option<PathBuf>,
) -> anyhow::Result<String> {
    let run = client.post(path, &body).await?;
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
    let mut body = json!({ "database": database });
    match (table, query) {
        (Some(t), None) => {
            let (schema, table) = split_table(&t);
            body["schema"] = json!(schema);
            body["table"] = json!(table);
        }
        (None, Some(q)) => body["sql"] = json!(q),
        _ => {
            return Err(
                crate::exit::Usage("give --table schema.table or --query SQL".to_owned()).into(),
            );
        }
    }
    run_and_download(
        client,
        &format!("api/v1/instances/{id}/export?wait=50"),
        body,
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
    let body = json!({ "schema": schema, "table": table, "schema_only": !with_data, "database": database });
    run_and_download(
        client,
        &format!("api/v1/instances/{id}/dump?wait=50"),
        body,
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
    render(output, &serde_json::to_value(&run)?, |r| {
        Ok(format!(
            "imported {} row(s) into {schema}.{table}\n",
            r["summary"]["rows_imported"]
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
    render(output, &body, |b| {
        Ok(crate::json_table::render(
            b["extensions"].as_array().map(Vec::as_slice).unwrap_or(&[]),
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
    let body = json!({ "action": action, "name": name, "version": version, "cascade": cascade });
    let run = client
        .post(&format!("api/v1/instances/{id}/extensions?wait=50"), &body)
        .await?;
    let run = wait_run(client, run).await?;
    if !run.succeeded() {
        return Err(failure(&run).into());
    }
    render(output, &serde_json::to_value(&run)?, |r| {
        Ok(format!(
            "{action} {}: installed version {}\n",
            s(&r["summary"]["name"]),
            str_or(&r["summary"]["installed_version"], "none")
        ))
    })
}
