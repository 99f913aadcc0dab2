//! `lasect sql run|explain`, `lasect run list|show|cancel|watch` and `lasect instance
//! add|remove|test|show`: work the agents do (docs/CONTROL.md), asked through the API.
//!
//! A command that starts a run waits for it (long polls of up to 50 s, so no single request
//! outlives the client's timeout), then fetches its result pages. A run that did not succeed
//! exits 5 with its status, error and PostgreSQL detail on stderr. `run watch` follows a run
//! on the live WebSocket (`crate::live_client`) instead.

use std::fmt::Write as _;

use anyhow::Context as _;
use lasect_api_contract::instances::{
    AddInstance, AddedInstance, CheckResult, InstanceDetail, InstanceList,
};
use lasect_api_contract::runs::{
    ExplainRequest, FeatureCheck, ImportLineError, InstanceCheckResult, InstanceMetadataResult,
    ResultColumn, ResultPage, RunLimits, RunList, RunStatus, RunView, SqlRequest,
};
use serde::Deserialize as _;
use serde_json::{Value, json};

use crate::api_client::{ApiClient, typed};
use crate::args::{NewInstance, OutputFormat};
use crate::instance_table::new_table;
use crate::printable::{escape, str_or};
use crate::{encode_segment, instance_ref, render};

/// Seconds of one long poll (below the client's 60 s request timeout).
const POLL_SECS: u64 = 50;

/// A run that ended without succeeding (exit code 5).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RunFailed(pub String);

/// A route that answers with its result once the agent ran it (`instance test`, `instance show
/// --refresh`, `extension list`) answers 202 with the run instead when the wait ended first (an
/// agent that is slow or offline): that run goes on. An error naming it (exit code 5), so no
/// empty result is shown as if it were one.
pub fn result_or_pending(body: &Value) -> Result<(), RunFailed> {
    // Only a run has a kind; a result of any shape that is not one passes.
    #[derive(serde::Deserialize)]
    struct MaybeRun {
        kind: Option<Value>,
        status: Option<String>,
        #[serde(default)]
        id: Value,
    }
    let Ok(MaybeRun {
        kind: Some(_),
        status: Some(status),
        id,
    }) = serde_json::from_value(body.clone())
    else {
        return Ok(());
    };
    if status
        .parse::<RunStatus>()
        .map_or(true, |s| s.is_terminal())
    {
        return Ok(());
    }
    Err(RunFailed(format!(
        "the agent has not answered yet: run {id} is {} (is the agent connected?); it goes on: \
         lasect run show {id}",
        escape(&status),
    )))
}

/// What `--timeout`, `--lock-timeout` and `--statement-timeout` accept: 1 ms ..= 1 h.
const TIMEOUT: lasect_duration::Spec = lasect_duration::Spec {
    millis: true,
    min: std::time::Duration::from_millis(1),
    max: std::time::Duration::from_secs(3600),
};

/// `5s`, `500ms`, `2m`, `1h` (or plain seconds) as milliseconds, 1 ms ..= 1 h.
pub fn parse_timeout_ms(text: &str) -> Result<i64, String> {
    let timeout = lasect_duration::parse(text, &TIMEOUT).map_err(|e| e.to_string())?;
    // At most an hour of milliseconds: always fits.
    Ok(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX))
}

/// `--instance`, or the only instance the caller sees.
pub async fn instance_or_only(client: &ApiClient, instance: Option<&str>) -> anyhow::Result<i64> {
    if let Some(i) = instance {
        return instance_ref::resolve(client, i).await;
    }
    let list: InstanceList = client.get("api/v1/instances").await?;
    match list.instances.as_slice() {
        [one] => Ok(one.id),
        [] => Err(crate::exit::Usage(
            "there is no instance yet (see `lasect instance add`)".to_owned(),
        )
        .into()),
        several => {
            let names: Vec<String> = several
                .iter()
                .map(|i| format!("{} ({})", escape(&i.name), i.id))
                .collect();
            Err(crate::exit::Usage(format!(
                "several instances: say which with --instance, one of {}",
                names.join(", ")
            ))
            .into())
        }
    }
}

/// Waits for a run (as returned by the API) to end; returns it.
pub async fn wait_run(client: &ApiClient, mut run: RunView) -> anyhow::Result<RunView> {
    while !run.is_terminal() {
        run = client
            .get(&format!("api/v1/runs/{}?wait={POLL_SECS}", run.id))
            .await?;
    }
    Ok(run)
}

/// The error of a run that did not succeed, with what PostgreSQL said.
pub fn failure(run: &RunView) -> RunFailed {
    let mut text = format!(
        "run {} {}: {}",
        run.id,
        escape(&run.status),
        escape(run.error.as_deref().unwrap_or("no error message"))
    );
    let detail = run.error_detail.as_ref().unwrap_or(&Value::Null);
    for key in ["sqlstate", "detail", "hint", "position", "where"] {
        match &detail[key] {
            Value::Null => {}
            Value::String(s) => {
                let _ = write!(text, "\n  {key}: {}", escape(s));
            }
            other => {
                let _ = write!(text, "\n  {key}: {}", escape(&other.to_string()));
            }
        }
    }
    let errors = detail
        .get("errors")
        .and_then(|e| Vec::<ImportLineError>::deserialize(e).ok());
    for e in errors.unwrap_or_default() {
        let _ = write!(text, "\n  line {}: {}", e.line, escape(&e.error));
    }
    RunFailed(text)
}

/// Every result page of a row run.
pub async fn all_rows(client: &ApiClient, run: &RunView) -> anyhow::Result<(Value, Vec<Value>)> {
    let mut rows = Vec::new();
    let mut columns = run.summary_field("columns").clone();
    for page in 0..run.pages.max(1) {
        let body: ResultPage = client
            .get(&format!("api/v1/runs/{}/result?page={page}", run.id))
            .await?;
        columns = body.columns;
        rows.extend(body.rows);
    }
    Ok((columns, rows))
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "NULL".to_owned(),
        Value::String(s) => escape(s).into_owned(),
        other => escape(&other.to_string()).into_owned(),
    }
}

/// Rows under a header of `name (type)`, then a count line.
pub fn rows_table(columns: &Value, rows: &[Value], run: &RunView) -> String {
    let mut table = new_table();
    let header: Vec<String> = Vec::<ResultColumn>::deserialize(columns)
        .unwrap_or_default()
        .iter()
        .map(|c| format!("{} ({})", escape(&c.name), escape(&c.type_name)))
        .collect();
    let mut out = String::new();
    if !header.is_empty() {
        table.set_header(header);
        for row in rows {
            table.add_row(
                row.as_array()
                    .map(|r| r.iter().map(cell).collect::<Vec<_>>())
                    .unwrap_or_default(),
            );
        }
        let _ = writeln!(out, "{table}");
    }
    let n = rows.len();
    let _ = write!(out, "{n} row{}", if n == 1 { "" } else { "s" });
    if run.truncated {
        let by = str_or(run.summary_field("truncated_by"), "a limit");
        let _ = write!(out, " (truncated: {by})");
    }
    if let Some(cmd) = run.summary_field("command").as_str() {
        let _ = write!(out, " [{}]", escape(cmd));
    }
    out.push('\n');
    out
}

pub struct SqlArgs {
    pub instance: Option<String>,
    pub sql: String,
    pub params: Vec<String>,
    pub nulls: Vec<usize>,
    pub write: bool,
    pub timeout: Option<String>,
    pub max_rows: Option<i64>,
    pub database: Option<String>,
}

fn sql_body(a: &SqlArgs) -> anyhow::Result<SqlRequest> {
    let mut params: Vec<Option<String>> = a.params.iter().cloned().map(Some).collect();
    for &n in &a.nulls {
        if n == 0 || n > params.len() + 1 {
            return Err(crate::exit::Usage(format!(
                "--param-null {n}: parameters are numbered from 1 and must follow the --param values"
            ))
            .into());
        }
        if n == params.len() + 1 {
            params.push(None);
        } else {
            params[n - 1] = None;
        }
    }
    let timeout_ms = match &a.timeout {
        Some(t) => Some(parse_timeout_ms(t).map_err(crate::exit::Usage)?),
        None => None,
    };
    Ok(SqlRequest {
        sql: a.sql.clone(),
        params,
        write: a.write,
        database: a.database.clone(),
        limits: RunLimits {
            timeout_ms,
            max_rows: a.max_rows,
            ..RunLimits::default()
        },
    })
}

pub async fn sql_run(
    client: &ApiClient,
    a: SqlArgs,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let id = instance_or_only(client, a.instance.as_deref()).await?;
    let body = sql_body(&a)?;
    let run = client
        .post(
            &format!("api/v1/instances/{id}/sql?wait={POLL_SECS}"),
            &body,
        )
        .await?;
    let run = wait_run(client, run).await?;
    if !run.succeeded() {
        return Err(failure(&run).into());
    }
    let (columns, rows) = all_rows(client, &run).await?;
    match output {
        OutputFormat::Json => Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&json!({ "run": run, "columns": columns, "rows": rows }))?
        )),
        OutputFormat::Table => Ok(rows_table(&columns, &rows, &run)),
    }
}

pub async fn sql_explain(
    client: &ApiClient,
    a: SqlArgs,
    analyze: bool,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let id = instance_or_only(client, a.instance.as_deref()).await?;
    let SqlRequest {
        sql,
        params,
        write,
        database,
        limits,
    } = sql_body(&a)?;
    let body = ExplainRequest {
        sql,
        params,
        analyze,
        write,
        database,
        limits,
    };
    let run = client
        .post(
            &format!("api/v1/instances/{id}/explain?wait={POLL_SECS}"),
            &body,
        )
        .await?;
    let run = wait_run(client, run).await?;
    if !run.succeeded() {
        return Err(failure(&run).into());
    }
    let plan = run.summary_field("plan");
    match output {
        OutputFormat::Json => Ok(format!("{}\n", serde_json::to_string_pretty(plan)?)),
        OutputFormat::Table => {
            let mut out = String::new();
            plan_tree(&plan["Plan"], 0, &mut out);
            for key in ["Planning Time", "Execution Time"] {
                if let Some(t) = plan[key].as_f64() {
                    let _ = writeln!(out, "{key}: {t:.3} ms");
                }
            }
            Ok(out)
        }
    }
}

/// One plan node per line, children indented: `-> Seq Scan on t (cost=0..1 rows=10) ...`.
pub fn plan_tree(node: &Value, depth: usize, out: &mut String) {
    if !node.is_object() {
        return;
    }
    let indent = "  ".repeat(depth);
    let arrow = if depth == 0 { "" } else { "-> " };
    let mut line = format!("{indent}{arrow}{}", str_or(&node["Node Type"], "?"));
    if let Some(rel) = node["Relation Name"].as_str() {
        let _ = write!(line, " on {}", escape(rel));
    }
    if let Some(index) = node["Index Name"].as_str() {
        let _ = write!(line, " using {}", escape(index));
    }
    let _ = write!(
        line,
        "  (cost={}..{} rows={})",
        node["Startup Cost"], node["Total Cost"], node["Plan Rows"]
    );
    if let Some(t) = node["Actual Total Time"].as_f64() {
        let _ = write!(
            line,
            " (actual time={t:.3} rows={} loops={})",
            node["Actual Rows"], node["Actual Loops"]
        );
    }
    if let (Some(hit), Some(read)) = (
        node["Shared Hit Blocks"].as_i64(),
        node["Shared Read Blocks"].as_i64(),
    ) && hit + read > 0
    {
        let _ = write!(line, " buffers: hit={hit} read={read}");
    }
    out.push_str(&line);
    out.push('\n');
    if let Some(children) = node["Plans"].as_array() {
        for child in children {
            plan_tree(child, depth + 1, out);
        }
    }
}

const RUN_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("kind", "kind"),
    ("instance", "instance_name"),
    ("status", "status"),
    ("by", "requested_by"),
    ("created", "created_at"),
    ("ms", "duration_ms"),
    ("rows", "rows"),
    ("error", "error"),
];

pub async fn run_list(
    client: &ApiClient,
    instance: Option<String>,
    status: Option<String>,
    limit: u32,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let mut path = format!("api/v1/runs?limit={limit}");
    if let Some(i) = instance {
        let id = instance_ref::resolve(client, &i).await?;
        let _ = write!(path, "&instance={id}");
    }
    if let Some(s) = status {
        let _ = write!(path, "&status={}", encode_segment(&s));
    }
    let list: RunList = client.get(&path).await?;
    let body = serde_json::to_value(&list)?;
    render(output, &body, |b| {
        Ok(crate::json_table::render(
            b["runs"].as_array().map(Vec::as_slice).unwrap_or(&[]),
            RUN_COLUMNS,
        ))
    })
}

pub async fn run_show(client: &ApiClient, id: i64, output: OutputFormat) -> anyhow::Result<String> {
    let run: RunView = client.get(&format!("api/v1/runs/{id}")).await?;
    let body = serde_json::to_value(&run)?;
    render(output, &body, |b| {
        let mut cols = RUN_COLUMNS.to_vec();
        cols.extend_from_slice(&[
            ("agent", "agent_id"),
            ("started", "started_at"),
            ("finished", "finished_at"),
            ("bytes", "bytes"),
            ("truncated", "truncated"),
            ("pages", "pages"),
        ]);
        let mut out = crate::json_table::render_one(b, &cols);
        if let Some(detail) = &run.error_detail {
            let _ = writeln!(out, "error detail: {}", escape(&detail.to_string()));
        }
        Ok(out)
    })
}

/// `lasect run watch ID`: the run's state now, then each status change and progress report
/// as the live stream pushes them, until it ends. Succeeded: exit 0; else its error (exit 5).
/// A run the caller may not see is refused as `run show` refuses it (not found).
pub async fn run_watch(
    client: &ApiClient,
    id: i64,
    output: OutputFormat,
) -> anyhow::Result<String> {
    use crate::live_client::{self, Lines, is_terminal, rank};
    if id < 1 {
        return Err(crate::exit::Usage(format!("run id {id} is not positive")).into());
    }
    let mut live = live_client::connect(client).await?;
    live.subscribe_runs(json!({ "runs": [id] })).await?;
    // Read after subscribing: nothing committed after this read is missed.
    let path = format!("api/v1/runs/{id}");
    let run: RunView = client.get(&path).await?;
    let lines = Lines::new(output);
    lines.write(&view_line(&run), &serde_json::to_value(&run)?)?;
    let mut shown = rank(&run.status);
    if run.is_terminal() {
        return watched(run);
    }
    loop {
        let event = match live.next_run().await {
            Ok(event) => event,
            Err(broken) => {
                // One poll tells how the run stands; a run still going is an error to report.
                let run: RunView = client
                    .get(&path)
                    .await
                    .with_context(|| format!("{broken}; then reading its state over HTTP"))?;
                if !run.is_terminal() {
                    return Err(crate::api_client::Unreachable(format!(
                        "{broken}; run {id} is {} (follow it again: lasect run watch {id})",
                        escape(&run.status)
                    ))
                    .into());
                }
                lines.write(&view_line(&run), &serde_json::to_value(&run)?)?;
                return watched(run);
            }
        };
        if event.id != id {
            continue;
        }
        let status_rank = rank(&event.status);
        // A change committed before the first read arrives after it: already shown.
        if (event.change == "status" && status_rank <= shown) || shown > rank("running") {
            continue;
        }
        shown = shown.max(status_rank);
        lines.event(&event)?;
        if event.change == "status" && is_terminal(&event.status) {
            break;
        }
    }
    // The run as the caller may read it: its error and PostgreSQL's detail.
    watched(client.get(&path).await?)
}

/// `run 12 backup on main: queued`, from the API's run.
pub fn view_line(run: &RunView) -> String {
    let mut line = format!(
        "run {} {} on {}: {}",
        run.id,
        escape(&run.kind),
        escape(&run.instance_name),
        escape(&run.status)
    );
    if run.cancel_requested && !run.is_terminal() {
        line.push_str(" (cancel asked)");
    }
    if let Some(e) = &run.error {
        let _ = write!(line, ": {}", escape(e));
    }
    line
}

/// How a watched run ended: nothing more to print when it succeeded, its failure otherwise.
fn watched(run: RunView) -> anyhow::Result<String> {
    if run.succeeded() {
        Ok(String::new())
    } else {
        Err(failure(&run).into())
    }
}

pub async fn run_cancel(
    client: &ApiClient,
    id: i64,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let run: RunView = client
        .post(&format!("api/v1/runs/{id}/cancel"), &json!({}))
        .await?;
    let body = serde_json::to_value(&run)?;
    render(output, &body, |_| {
        Ok(format!(
            "run {} cancel asked; status {}\n",
            run.id,
            escape(&run.status)
        ))
    })
}

pub async fn instance_add(
    client: &ApiClient,
    add: NewInstance,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let NewInstance {
        dsn,
        name,
        agent,
        labels,
        run_dsn,
        allow_privileged_runs,
    } = add;
    let mut map = serde_json::Map::new();
    for l in labels {
        let Some((k, v)) = l.split_once('=') else {
            return Err(crate::exit::Usage(format!("--label {l:?} must be key=value")).into());
        };
        map.insert(k.to_owned(), Value::from(v));
    }
    let body = AddInstance {
        dsn,
        name,
        agent,
        labels: map,
        run_dsn,
        allow_privileged_runs,
    };
    let added: AddAnswer = client.post("api/v1/instances", &body).await?;
    render(output, &serde_json::to_value(&added)?, |_| match &added {
        // 202: saved as validating, its agent has not answered yet; the answer is the check run.
        AddAnswer::Pending(run) => Ok(format!(
            "saved as validating: the agent has not checked it yet (run {}, {}); it becomes \
             active when the check passes and is removed if it fails (lasect run show {})\n",
            run.id,
            escape(&run.status),
            run.id
        )),
        AddAnswer::Added(AddedInstance { instance, check }) => {
            let check = InstanceCheckResult::deserialize(check)?;
            let mut out = format!(
                "added instance {} ({}) on agent {}: {}\n",
                escape(&instance.name),
                instance.id,
                escape(&instance.agent_id),
                escape(&check.version)
            );
            out.push_str(&features(&check.features));
            Ok(out)
        }
    })
}

/// What `POST /api/v1/instances` answers: the instance its agent checked (201), or the check
/// run that goes on (202).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum AddAnswer {
    Added(AddedInstance),
    Pending(RunView),
}

fn features(features: &[FeatureCheck]) -> String {
    let mut out = String::new();
    for f in features.iter().filter(|f| !f.ok) {
        let _ = writeln!(
            out,
            "  will not work: {}: {}",
            escape(&f.feature),
            escape(f.reason.as_deref().unwrap_or(""))
        );
    }
    out
}

pub async fn instance_remove(client: &ApiClient, instance: &str) -> anyhow::Result<String> {
    let id = instance_ref::resolve(client, instance).await?;
    client
        .delete_json(&format!("api/v1/instances/{id}"))
        .await?;
    Ok(format!("removed instance {id}\n"))
}

pub async fn instance_test(
    client: &ApiClient,
    instance: &str,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let id = instance_ref::resolve(client, instance).await?;
    let path = format!("api/v1/instances/{id}/test");
    let body = client.post_json(&path, &json!({})).await?;
    result_or_pending(&body)?;
    let result: CheckResult = typed(body, &path)?;
    render(output, &serde_json::to_value(&result)?, |_| {
        let c = InstanceCheckResult::deserialize(&result.check)?;
        let mut out = format!(
            "ok: {} as {}{}\n",
            escape(&c.version),
            escape(&c.user),
            if c.in_recovery { " (standby)" } else { "" }
        );
        out.push_str(&features(&c.features));
        Ok(out)
    })
}

pub async fn instance_show(
    client: &ApiClient,
    instance: &str,
    refresh: bool,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let id = instance_ref::resolve(client, instance).await?;
    let (path, body) = if refresh {
        let path = format!("api/v1/instances/{id}/refresh");
        let body = client.post_json(&path, &json!({})).await?;
        (path, body)
    } else {
        let path = format!("api/v1/instances/{id}");
        let body = client.get_json(&path).await?;
        (path, body)
    };
    result_or_pending(&body)?;
    let detail: InstanceDetail = typed(body, &path)?;
    render(output, &serde_json::to_value(&detail)?, |_| {
        let mut out = crate::json_table::render_one(
            &serde_json::to_value(&detail.instance)?,
            &[
                ("id", "id"),
                ("name", "name"),
                ("agent", "agent_id"),
                ("source", "source"),
                ("state", "state"),
                ("dsn", "dsn"),
                ("version", "version"),
                ("in recovery", "in_recovery"),
                ("labels", "labels"),
                ("last seen", "last_seen"),
                ("health", "health"),
            ],
        );
        if let Some(m) = detail.metadata.as_ref().filter(|m| m.is_object()) {
            let m = InstanceMetadataResult::deserialize(m)?;
            let _ = writeln!(
                out,
                "uptime: {} s, started {}",
                or_null(m.uptime_s),
                escape(m.started_at.as_deref().unwrap_or("?"))
            );
            for d in &m.databases {
                let _ = writeln!(
                    out,
                    "database {}: {} bytes",
                    escape(&d.name),
                    or_null(d.size_bytes)
                );
            }
            for e in &m.extensions {
                let _ = writeln!(out, "extension {} {}", escape(&e.name), escape(&e.version));
            }
        } else {
            out.push_str("no metadata yet (lasect instance show --refresh)\n");
        }
        Ok(out)
    })
}

/// A number the agent may leave out, shown as JSON showed it.
fn or_null(n: Option<i64>) -> String {
    n.map_or_else(|| "null".to_owned(), |n| n.to_string())
}

#[cfg(test)]
mod pending_tests {
    use super::result_or_pending;
    use serde_json::json;

    #[test]
    fn a_run_still_going_is_an_error_naming_it_and_results_pass() {
        let pending = json!({"id": 42, "kind": "instance_check", "status": "queued"});
        let e = result_or_pending(&pending)
            .expect_err("pending")
            .to_string();
        assert!(
            e.contains("run 42 is queued") && e.contains("lasect run show 42"),
            "{e}"
        );
        assert!(result_or_pending(&json!({"run_id": 1, "check": {"ok": true}})).is_ok());
        assert!(result_or_pending(&json!({"extensions": []})).is_ok());
        // An ended run is not pending (the routes answer 422 for those anyway).
        assert!(result_or_pending(&json!({"id": 1, "kind": "sql", "status": "failed"})).is_ok());
        // Every status that is not terminal is pending, and only those; one this version does
        // not know is shown as it came.
        for (status, pending) in [
            ("dispatched", true),
            ("running", true),
            ("timed_out", false),
            ("expired", false),
            ("paused", false),
        ] {
            let run = json!({"id": 3, "kind": "sql", "status": status});
            assert_eq!(result_or_pending(&run).is_err(), pending, "{status}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run as the API answers it, with `fields` over a plain succeeded one.
    fn run_view(fields: Value) -> RunView {
        let mut run = json!({"id": 1, "kind": "sql", "instance_id": 1, "instance_name": "i",
            "agent_id": "a", "status": "succeeded", "requested_by": "user:u", "params": null,
            "created_at": "t", "expires_at": "t", "dispatched_at": null, "started_at": null,
            "finished_at": null, "duration_ms": null, "timeout_ms": 1, "max_rows": 1,
            "max_bytes": 1, "rows": null, "bytes": null, "truncated": false, "pages": 0,
            "error": null, "error_detail": null, "summary": null, "migration_id": null,
            "cancel_requested": false, "details_hidden": false});
        for (k, v) in fields.as_object().expect("an object") {
            run[k] = v.clone();
        }
        serde_json::from_value(run).expect("a run")
    }

    #[test]
    fn an_add_answer_is_the_checked_instance_or_the_pending_check_run() {
        let pending = serde_json::to_value(run_view(json!({"id": 9, "kind": "instance_check",
            "status": "queued"})))
        .expect("json");
        assert!(matches!(
            serde_json::from_value::<AddAnswer>(pending),
            Ok(AddAnswer::Pending(r)) if r.id == 9
        ));
        let instance = json!({"id": 3, "name": "main", "agent_id": "a", "server_version_num": null,
            "version": null, "in_recovery": null, "labels": {}, "created_at": "t",
            "last_seen": null, "source": "api", "state": "active", "dsn": null, "health": null,
            "health_at": null});
        let added = json!({"instance": instance, "check": {"version": "PostgreSQL 17"}});
        assert!(matches!(
            serde_json::from_value::<AddAnswer>(added),
            Ok(AddAnswer::Added(a)) if a.instance.id == 3
        ));
    }

    #[test]
    fn timeouts_parse_with_units() {
        assert_eq!(parse_timeout_ms("5s"), Ok(5000));
        assert_eq!(parse_timeout_ms("500ms"), Ok(500));
        assert_eq!(parse_timeout_ms("2m"), Ok(120_000));
        assert_eq!(parse_timeout_ms("7"), Ok(7000));
        assert!(parse_timeout_ms("2h").is_err());
        assert!(parse_timeout_ms("fast").is_err());
        assert!(parse_timeout_ms("0s").is_err());
    }

    #[test]
    fn plans_render_as_an_indented_tree() {
        let plan = json!({"Node Type": "Hash Join", "Startup Cost": 1.0, "Total Cost": 2.5, "Plan Rows": 10,
            "Plans": [{"Node Type": "Seq Scan", "Relation Name": "t", "Startup Cost": 0.0, "Total Cost": 1.0, "Plan Rows": 5}]});
        let mut out = String::new();
        plan_tree(&plan, 0, &mut out);
        assert!(
            out.starts_with("Hash Join  (cost=1.0..2.5 rows=10)\n"),
            "{out}"
        );
        assert!(out.contains("\n  -> Seq Scan on t"), "{out}");
    }

    #[test]
    fn failures_show_what_postgres_said() {
        let run = run_view(
            json!({"id": 7, "status": "failed", "error": "ERROR 42601: syntax error at or near \"SELEC\"",
            "error_detail": {"sqlstate": "42601", "position": 1}}),
        );
        let text = failure(&run).to_string();
        assert!(
            text.contains("run 7 failed")
                && text.contains("sqlstate: 42601")
                && text.contains("position: 1"),
            "{text}"
        );
    }

    #[test]
    fn result_values_cannot_drive_the_terminal() {
        let controls = |t: &str| t.chars().any(|c| c.is_control() && c != '\n');
        let columns = json!([{"name": "t\x1b[2J", "type": "text"}, {"name": "j", "type": "jsonb"}]);
        let rows = [json!(["\x1b]0;pwned\x07", {"k": "\u{202e}\u{9b}"}])];
        let run = run_view(json!({"summary": {"command": "SELECT\r1"}}));
        let out = rows_table(&columns, &rows, &run);
        assert!(!controls(&out) && !out.contains('\u{202e}'), "{out:?}");
        assert!(
            out.contains("t\\x1b[2J (text)") && out.contains("\\x1b]0;pwned\\x07"),
            "{out}"
        );
        let run = run_view(json!({"id": 1, "status": "failed", "error": "bad \x1b[2J",
            "error_detail": {"detail": "\x07", "errors": [{"line": 1, "error": "\x08"}]}}));
        let text = failure(&run).to_string();
        assert!(!controls(&text), "{text:?}");
        let mut plan = String::new();
        plan_tree(
            &json!({"Node Type": "Seq Scan", "Relation Name": "t\x1b]0;x\x07"}),
            0,
            &mut plan,
        );
        assert!(!controls(&plan), "{plan:?}");
    }

    #[test]
    fn null_params_go_where_asked() {
        let a = SqlArgs {
            instance: None,
            sql: "x".into(),
            params: vec!["a".into()],
            nulls: vec![2],
            write: false,
            timeout: Some("1s".into()),
            max_rows: None,
            database: None,
        };
        let body = serde_json::to_value(sql_body(&a).expect("body")).expect("json");
        assert_eq!(body["params"], json!(["a", null]));
        assert_eq!(body["timeout_ms"], json!(1000));
        // What is not asked for is not sent: the body the CLI always sent.
        assert_eq!(
            body,
            json!({"sql": "x", "params": ["a", null], "write": false, "timeout_ms": 1000})
        );
    }
}
