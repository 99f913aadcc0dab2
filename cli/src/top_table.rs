//! `lasect queries top` as a table: rank, totals and the normalized text (first line, cut).

use anyhow::Context;
use comfy_table::CellAlignment;
use serde::Deserialize;
use serde_json::Value;

use crate::instance_table::{InstanceView, new_table};
use crate::printable::escape;
use crate::series_table::cell;

#[derive(Debug, Deserialize)]
struct TopView {
    instance: InstanceView,
    by: String,
    from: String,
    to: String,
    statements: Vec<serde_json::Map<String, Value>>,
}

/// Longest query text shown in a table (JSON output has it whole).
const QUERY_WIDTH: usize = 60;

pub fn render(body: &Value) -> anyhow::Result<String> {
    let view: TopView =
        serde_json::from_value(body.clone()).context("unexpected shape of the top statements")?;
    let i = &view.instance;
    let mut out = format!(
        "{}/{} (id {}): top statements by {} from {} to {}\n",
        escape(&i.agent_id),
        escape(&i.name),
        i.id,
        escape(&view.by),
        escape(&view.from),
        escape(&view.to)
    );
    if view.statements.is_empty() {
        out.push_str("no statements in this range\n");
        return Ok(out);
    }
    let mut table = new_table();
    let columns = [
        ("calls", "calls"),
        ("total_ms", "total_exec_time_ms"),
        ("mean_ms", "mean_exec_time_ms"),
        ("rows", "rows"),
        ("io_blocks", "io_blocks"),
    ];
    let mut header = vec!["#", "queryid", "database"];
    header.extend(columns.iter().map(|(h, _)| *h));
    header.push("query");
    table.set_header(header);
    for (rank, s) in view.statements.iter().enumerate() {
        let mut line = vec![
            (rank + 1).to_string(),
            cell(s.get("queryid")),
            cell(s.get("datname")),
        ];
        line.extend(columns.iter().map(|(_, key)| cell(s.get(*key))));
        line.push(short_query(s.get("query")));
        table.add_row(line);
    }
    for index in 3..3 + columns.len() {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    out.push('\n');
    out.push_str(&table.to_string());
    out.push('\n');
    Ok(out)
}

fn short_query(query: Option<&Value>) -> String {
    let Some(text) = query.and_then(Value::as_str) else {
        return "(text not collected)".to_owned();
    };
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = escape(&flat);
    if flat.chars().count() <= QUERY_WIDTH {
        return flat.into_owned();
    }
    let cut: String = flat.chars().take(QUERY_WIDTH - 1).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ranked_lines_with_short_texts() {
        let long = format!("SELECT {}\n  FROM t", "x, ".repeat(40));
        let body = json!({
            "instance": {"id": 1, "name": "main", "agent_id": "db-01", "version": null,
                         "in_recovery": null, "labels": {}, "last_seen": null},
            "by": "calls", "from": "a", "to": "b",
            "statements": [
                {"queryid": 7, "datname": "app", "calls": 100, "total_exec_time_ms": 50.0,
                 "mean_exec_time_ms": 0.5, "rows": 10, "io_blocks": 5, "query": "SELECT $1"},
                {"queryid": 8, "datname": null, "calls": 1, "total_exec_time_ms": 1.25,
                 "mean_exec_time_ms": 1.25, "rows": 1, "io_blocks": 0, "query": long},
                {"queryid": 9, "calls": 0, "query": null}]
        });
        let text = render(&body).expect("render");
        assert!(text.contains("top statements by calls"), "{text}");
        let first = text.lines().find(|l| l.contains("SELECT $1")).expect("q7");
        assert!(first.trim_start().starts_with('1'), "{first}");
        assert!(text.contains('…'), "{text}");
        assert!(text.contains("(text not collected)"), "{text}");
    }
}
