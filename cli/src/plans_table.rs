//! `lasect queries plans` for people: per plan a heading (time, duration, database, user,
//! format, whether the agent cut it), the query text, then the plan whole (a JSON plan
//! indented), every string escaped line by line (plans and queries come from the server log).

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

use crate::instance_table::InstanceView;
use crate::printable::{escape, escape_lines};

#[derive(Debug, Deserialize)]
struct PlansView {
    instance: InstanceView,
    queryid: i64,
    since: String,
    plans: Vec<Plan>,
}

#[derive(Debug, Deserialize)]
struct Plan {
    time: String,
    duration_ms: Option<f64>,
    database: Option<String>,
    user_name: Option<String>,
    query_text: Option<String>,
    format: String,
    plan: String,
    truncated: Option<bool>,
}

/// What to say when no plan was found: how auto_explain is turned on.
const NO_PLANS: &str = "no auto_explain plan of this statement since then. auto_explain writes \
plans to the server log when it is loaded (shared_preload_libraries or \
session_preload_libraries = 'auto_explain') and a statement takes longer than \
auto_explain.log_min_duration (ms); auto_explain.log_format = json gives the plan tree, \
compute_query_id = on (or pg_stat_statements loaded) gives the query id plans are found by \
(stderr logs need %Q in log_line_prefix; csvlog and jsonlog carry it), \
and from PostgreSQL 16 auto_explain.log_verbose = on prints each plan's own query id (nested \
statements).\n";

pub fn render(body: &Value) -> anyhow::Result<String> {
    let view: PlansView =
        serde_json::from_value(body.clone()).context("unexpected shape of the plans")?;
    let i = &view.instance;
    let mut out = format!(
        "{}/{} (id {}): auto_explain plans of statement {} since {}\n",
        escape(&i.agent_id),
        escape(&i.name),
        i.id,
        view.queryid,
        escape(&view.since)
    );
    if view.plans.is_empty() {
        out.push_str(NO_PLANS);
        return Ok(out);
    }
    for p in &view.plans {
        let duration = p
            .duration_ms
            .map_or_else(|| "duration unknown".to_owned(), |d| format!("{d} ms"));
        out.push_str(&format!(
            "\n── {} · {} · database {} · user {} · {}{}\n",
            escape(&p.time),
            duration,
            escape(p.database.as_deref().unwrap_or("?")),
            escape(p.user_name.as_deref().unwrap_or("?")),
            escape(&p.format),
            if p.truncated == Some(true) {
                " · truncated by the agent"
            } else {
                ""
            }
        ));
        if let Some(q) = p.query_text.as_deref().filter(|q| !q.is_empty()) {
            out.push_str(&format!("Query: {}\n", escape_lines(q)));
        }
        let plan = match p.format.as_str() {
            "json" => serde_json::from_str::<Value>(&p.plan)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| p.plan.clone()),
            _ => p.plan.clone(),
        };
        out.push_str(&escape_lines(&plan));
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(plans: Value) -> Value {
        json!({
            "instance": {"id": 1, "name": "main", "agent_id": "db-01", "version": null,
                         "in_recovery": null, "labels": {}, "last_seen": null},
            "queryid": -42, "since": "2026-01-01T00:00:00Z", "plans": plans
        })
    }

    #[test]
    fn each_plan_whole_under_its_heading() {
        let text = render(&body(json!([
            {"time": "2026-01-01T10:00:00Z", "duration_ms": 12.5, "database": "shop",
             "user_name": "alice", "pid": 1, "query_text": "SELECT ?", "format": "text",
             "plan": "Seq Scan on t  (cost=0.00..1.01 rows=1 width=4)\n  Filter: (a = ?)",
             "truncated": true},
            {"time": "2026-01-01T09:00:00Z", "duration_ms": null, "database": null,
             "user_name": null, "pid": null, "query_text": null, "format": "json",
             "plan": "{\"Plan\": {\"Node Type\": \"Result\"}}", "truncated": null}
        ])))
        .expect("render");
        assert!(text.contains("plans of statement -42"), "{text}");
        assert!(
            text.contains("── 2026-01-01T10:00:00Z · 12.5 ms · database shop · user alice · text · truncated by the agent"),
            "{text}"
        );
        assert!(text.contains("\n  Filter: (a = ?)\n"), "{text}");
        assert!(
            text.contains("\"Node Type\": \"Result\""),
            "pretty JSON: {text}"
        );
        assert!(text.contains("duration unknown"), "{text}");
    }

    #[test]
    fn none_found_says_how_to_turn_auto_explain_on() {
        let text = render(&body(json!([]))).expect("render");
        assert!(text.contains("auto_explain.log_min_duration"), "{text}");
        assert!(text.contains("compute_query_id"), "{text}");
    }

    #[test]
    fn log_text_cannot_drive_the_terminal() {
        let text = render(&body(json!([
            {"time": "t", "duration_ms": 1.0, "database": "d\u{1b}[2J", "user_name": "u",
             "query_text": "SELECT 1", "format": "text", "plan": "Result\u{1b}]0;owned\u{7}",
             "truncated": false}
        ])))
        .expect("render");
        assert!(!text.contains('\u{1b}'), "{text}");
    }
}
