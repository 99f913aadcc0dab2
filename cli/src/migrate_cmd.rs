//! `lasect migrate run|status|cancel`: fleet schema migrations (one script, many instances in
//! turn, halting at the first failure; docs/CONTROL.md).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::api_client::ApiClient;
use crate::args::OutputFormat;
use crate::printable::{escape, str_or};
use crate::render;
use crate::runs_cmd::{RunFailed, parse_timeout_ms};

/// `id:1,2` | `label:env=prod[,team=x]` | `role:primary|standby|subscriber[:publication]`.
pub fn parse_targets(spec: &str) -> Result<Value, String> {
    let (kind, rest) = spec
        .split_once(':')
        .ok_or_else(|| format!("--targets {spec:?}: expected id:…, label:… or role:…"))?;
    match kind {
        "id" => {
            let ids: Result<Vec<i64>, _> =
                rest.split(',').map(|s| s.trim().parse::<i64>()).collect();
            let ids =
                ids.map_err(|_| format!("--targets {spec:?}: ids must be numbers, e.g. id:1,2"))?;
            Ok(json!({ "instances": ids }))
        }
        "label" => {
            let mut map = serde_json::Map::new();
            for pair in rest.split(',') {
                let (k, v) = pair
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| format!("--targets {spec:?}: labels are key=value"))?;
                map.insert(k.to_owned(), Value::from(v));
            }
            Ok(json!({ "labels": map }))
        }
        "role" => {
            let (role, publication) = match rest.split_once(':') {
                Some((r, p)) => (r, Some(p)),
                None => (rest, None),
            };
            if !matches!(role, "primary" | "standby" | "subscriber") {
                return Err(format!(
                    "--targets {spec:?}: role is primary, standby or subscriber"
                ));
            }
            if publication.is_some() && role != "subscriber" {
                return Err(format!(
                    "--targets {spec:?}: a publication goes with role:subscriber"
                ));
            }
            Ok(json!({ "role": role, "publication": publication }))
        }
        _ => Err(format!(
            "--targets {spec:?}: expected id:…, label:… or role:…"
        )),
    }
}

pub struct RunArgs {
    pub targets: String,
    pub file: std::path::PathBuf,
    pub dry_run: bool,
    pub wait: bool,
    pub name: Option<String>,
    pub lock_timeout: Option<String>,
    pub statement_timeout: Option<String>,
    pub database: Option<String>,
}

pub async fn run(client: &ApiClient, a: RunArgs, output: OutputFormat) -> anyhow::Result<String> {
    let usage = |m: String| anyhow::Error::from(crate::exit::Usage(m));
    let targets = parse_targets(&a.targets).map_err(usage)?;
    let sql =
        std::fs::read_to_string(&a.file).with_context(|| format!("read {}", a.file.display()))?;
    let mut body = json!({ "sql": sql, "targets": targets, "dry_run": a.dry_run });
    if let Some(n) = a.name {
        body["name"] = json!(n);
    }
    if let Some(d) = a.database {
        body["database"] = json!(d);
    }
    if let Some(t) = a.lock_timeout {
        body["lock_timeout_ms"] = json!(parse_timeout_ms(&t).map_err(usage)?);
    }
    if let Some(t) = a.statement_timeout {
        body["statement_timeout_ms"] = json!(parse_timeout_ms(&t).map_err(usage)?);
    }
    let mut m = client.post_json("api/v1/migrations", &body).await?;
    if a.wait {
        let id = m["id"].as_i64().context("a migration without an id")?;
        while m["status"] == "running" {
            tokio::time::sleep(Duration::from_millis(500)).await;
            m = client.get_json(&format!("api/v1/migrations/{id}")).await?;
        }
        let out = render(output, &m, report)?;
        if m["status"] != "succeeded" {
            eprint!("{out}");
            return Err(RunFailed(format!(
                "migration {id} {}: {}",
                str_or(&m["status"], "?"),
                str_or(&m["error"], "")
            ))
            .into());
        }
        return Ok(out);
    }
    render(output, &m, |m| {
        Ok(format!(
            "migration {} started on {} instance(s){}; follow it with `lasect migrate status {}`\n",
            m["id"],
            m["targets"].as_array().map_or(0, Vec::len),
            if m["dry_run"] == true {
                " (dry run)"
            } else {
                ""
            },
            m["id"]
        ))
    })
}

/// The per-instance report.
pub fn report(m: &Value) -> anyhow::Result<String> {
    let mut out = format!(
        "migration {} \"{}\": {}{}\n",
        m["id"],
        str_or(&m["name"], ""),
        str_or(&m["status"], "?"),
        if m["dry_run"] == true {
            " (dry run)"
        } else {
            ""
        }
    );
    if let Some(e) = m["error"].as_str() {
        let _ = writeln!(out, "error: {}", escape(e));
    }
    let mut table = crate::instance_table::new_table();
    table.set_header(["#", "instance", "status", "run", "error"]);
    for t in m["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let cell = |v: &Value| match v {
            Value::Null => "-".to_owned(),
            Value::String(s) => escape(s).into_owned(),
            o => escape(&o.to_string()).into_owned(),
        };
        table.add_row([
            cell(&t["position"]),
            cell(&t["instance_name"]),
            cell(&t["status"]),
            cell(&t["run_id"]),
            cell(&t["error"]),
        ]);
    }
    let _ = writeln!(out, "{table}");
    Ok(out)
}

pub async fn status(
    client: &ApiClient,
    id: Option<i64>,
    output: OutputFormat,
) -> anyhow::Result<String> {
    match id {
        Some(id) => {
            let m = client.get_json(&format!("api/v1/migrations/{id}")).await?;
            render(output, &m, report)
        }
        None => {
            let list = client.get_json("api/v1/migrations").await?;
            render(output, &list, |l| {
                Ok(crate::json_table::render(
                    l["migrations"].as_array().map(Vec::as_slice).unwrap_or(&[]),
                    &[
                        ("id", "id"),
                        ("name", "name"),
                        ("status", "status"),
                        ("dry run", "dry_run"),
                        ("by", "requested_by"),
                        ("created", "created_at"),
                        ("error", "error"),
                    ],
                ))
            })
        }
    }
}

pub async fn cancel(client: &ApiClient, id: i64, output: OutputFormat) -> anyhow::Result<String> {
    let m = client
        .post_json(&format!("api/v1/migrations/{id}/cancel"), &json!({}))
        .await?;
    render(output, &m, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_specs_parse() {
        assert_eq!(parse_targets("id:1,2"), Ok(json!({"instances": [1, 2]})));
        assert_eq!(
            parse_targets("label:env=prod"),
            Ok(json!({"labels": {"env": "prod"}}))
        );
        assert_eq!(
            parse_targets("role:subscriber:orders"),
            Ok(json!({"role": "subscriber", "publication": "orders"}))
        );
        for bad in [
            "id:x",
            "label:env",
            "role:leader",
            "role:primary:p",
            "nope",
            "zzz:1",
        ] {
            assert!(parse_targets(bad).is_err(), "{bad}");
        }
    }
}
