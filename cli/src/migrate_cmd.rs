//! `lasect migrate run|status|cancel`: fleet schema migrations (one script, many instances in
//! turn, halting at the first failure; docs/CONTROL.md).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;
use lasect_api_contract::migrations::{Migration, MigrationList, StartMigration, TargetSelector};
use serde_json::{Value, json};

use crate::api_client::ApiClient;
use crate::args::OutputFormat;
use crate::printable::escape;
use crate::render;
use crate::runs_cmd::{RunFailed, parse_timeout_ms};

/// `id:1,2` | `label:env=prod[,team=x]` | `role:primary|standby|subscriber[:publication]` |
/// `role:publisher:publication` (its subscribers first, then the publisher).
pub fn parse_targets(spec: &str) -> Result<TargetSelector, String> {
    let none = TargetSelector {
        instances: None,
        labels: None,
        role: None,
        publication: None,
    };
    let (kind, rest) = spec
        .split_once(':')
        .ok_or_else(|| format!("--targets {spec:?}: expected id:…, label:… or role:…"))?;
    match kind {
        "id" => {
            let ids: Result<Vec<i64>, _> =
                rest.split(',').map(|s| s.trim().parse::<i64>()).collect();
            let ids =
                ids.map_err(|_| format!("--targets {spec:?}: ids must be numbers, e.g. id:1,2"))?;
            Ok(TargetSelector {
                instances: Some(ids),
                ..none
            })
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
            Ok(TargetSelector {
                labels: Some(map),
                ..none
            })
        }
        "role" => {
            let (role, publication) = match rest.split_once(':') {
                Some((r, p)) => (r, Some(p)),
                None => (rest, None),
            };
            if !matches!(role, "primary" | "standby" | "subscriber" | "publisher") {
                return Err(format!(
                    "--targets {spec:?}: role is primary, standby, subscriber or publisher"
                ));
            }
            if publication.is_some() && !matches!(role, "subscriber" | "publisher") {
                return Err(format!(
                    "--targets {spec:?}: a publication goes with role:subscriber or role:publisher"
                ));
            }
            if role == "publisher" && publication.is_none_or(str::is_empty) {
                return Err(format!(
                    "--targets {spec:?}: role:publisher needs its publication (role:publisher:NAME)"
                ));
            }
            Ok(TargetSelector {
                role: Some(role.to_owned()),
                publication: publication.map(str::to_owned),
                ..none
            })
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
    // At most an hour of milliseconds (parse_timeout_ms's bound): always an i32.
    let millis = |t: Option<String>| -> anyhow::Result<Option<i32>> {
        t.map(|t| {
            let ms = parse_timeout_ms(&t).map_err(usage)?;
            i32::try_from(ms).context("a timeout above an hour")
        })
        .transpose()
    };
    let body = StartMigration {
        name: a.name,
        sql,
        targets,
        dry_run: a.dry_run,
        lock_timeout_ms: millis(a.lock_timeout)?,
        statement_timeout_ms: millis(a.statement_timeout)?,
        timeout_ms: None,
        queue_timeout_s: None,
        database: a.database,
    };
    let mut m: Migration = client.post("api/v1/migrations", &body).await?;
    if a.wait {
        while m.status == "running" {
            tokio::time::sleep(Duration::from_millis(500)).await;
            m = client.get(&format!("api/v1/migrations/{}", m.id)).await?;
        }
        let out = render(output, &serde_json::to_value(&m)?, |_| report(&m))?;
        if m.status != "succeeded" {
            eprint!("{out}");
            return Err(RunFailed(format!(
                "migration {} {}: {}",
                m.id,
                escape(&m.status),
                escape(m.error.as_deref().unwrap_or(""))
            ))
            .into());
        }
        return Ok(out);
    }
    render(output, &serde_json::to_value(&m)?, |_| {
        Ok(format!(
            "migration {} started on {} instance(s){}; follow it with `lasect migrate status {}`\n",
            m.id,
            m.targets.len(),
            if m.dry_run { " (dry run)" } else { "" },
            m.id
        ))
    })
}

/// The per-instance report.
pub fn report(m: &Migration) -> anyhow::Result<String> {
    let mut out = format!(
        "migration {} \"{}\": {}{}\n",
        m.id,
        escape(&m.name),
        escape(&m.status),
        if m.dry_run { " (dry run)" } else { "" }
    );
    if let Some(e) = &m.error {
        let _ = writeln!(out, "error: {}", escape(e));
    }
    let mut table = crate::instance_table::new_table();
    table.set_header(["#", "instance", "status", "run", "error"]);
    let text = |s: Option<&str>| s.map_or_else(|| "-".to_owned(), |s| escape(s).into_owned());
    for t in &m.targets {
        table.add_row([
            t.position.to_string(),
            escape(&t.instance_name).into_owned(),
            escape(&t.status).into_owned(),
            t.run_id.map_or_else(|| "-".to_owned(), |id| id.to_string()),
            text(t.error.as_deref()),
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
            let m: Migration = client.get(&format!("api/v1/migrations/{id}")).await?;
            render(output, &serde_json::to_value(&m)?, |_| report(&m))
        }
        None => {
            let list: MigrationList = client.get("api/v1/migrations").await?;
            render(output, &serde_json::to_value(&list)?, |l| {
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
    let m: Migration = client
        .post(&format!("api/v1/migrations/{id}/cancel"), &json!({}))
        .await?;
    render(output, &serde_json::to_value(&m)?, |_| report(&m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_specs_parse() {
        let json = |spec: &str| parse_targets(spec).map(|t| serde_json::to_value(t).expect("json"));
        let nulls = json!({"instances": null, "labels": null, "role": null, "publication": null});
        let with = |fields: Value| {
            let mut v = nulls.clone();
            for (k, x) in fields.as_object().expect("object") {
                v[k] = x.clone();
            }
            Ok(v)
        };
        assert_eq!(json("id:1,2"), with(json!({"instances": [1, 2]})));
        assert_eq!(
            json("label:env=prod"),
            with(json!({"labels": {"env": "prod"}}))
        );
        assert_eq!(
            json("role:subscriber:orders"),
            with(json!({"role": "subscriber", "publication": "orders"}))
        );
        assert_eq!(
            json("role:publisher:orders"),
            with(json!({"role": "publisher", "publication": "orders"}))
        );
        for bad in [
            "id:x",
            "label:env",
            "role:leader",
            "role:primary:p",
            "role:publisher",
            "nope",
            "zzz:1",
        ] {
            assert!(parse_targets(bad).is_err(), "{bad}");
        }
    }
}
