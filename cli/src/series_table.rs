//! `lasect metrics show --since …` as a table: one line per bucket of each series, the key
//! columns first, then the bucket time and the values. Rate columns are headed `name/s`.

use anyhow::Context;
use comfy_table::CellAlignment;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::instance_table::{InstanceView, new_table};
use crate::printable::escape;

#[derive(Debug, Deserialize)]
struct SeriesView {
    instance: InstanceView,
    family: String,
    from: String,
    to: String,
    step_seconds: i64,
    keys: Vec<String>,
    columns: Vec<ColumnView>,
    series: Vec<OneSeries>,
}

#[derive(Debug, Deserialize)]
struct ColumnView {
    name: String,
    aggregate: String,
}

#[derive(Debug, Deserialize)]
struct OneSeries {
    key: Map<String, Value>,
    points: Vec<Map<String, Value>>,
}

pub fn render(body: &Value) -> anyhow::Result<String> {
    let view: SeriesView =
        serde_json::from_value(body.clone()).context("unexpected shape of the series")?;
    let i = &view.instance;
    let mut out = format!(
        "{}/{} (id {}): {} from {} to {}, step {}s\n",
        escape(&i.agent_id),
        escape(&i.name),
        i.id,
        escape(&view.family),
        escape(&view.from),
        escape(&view.to),
        view.step_seconds
    );
    if view.series.iter().all(|s| s.points.is_empty()) {
        out.push_str(&format!(
            "no {} samples in this range\n",
            escape(&view.family)
        ));
        return Ok(out);
    }
    let mut table = new_table();
    let mut header: Vec<String> = view.keys.iter().map(|k| escape(k).into_owned()).collect();
    header.push("time".to_owned());
    header.push("rows".to_owned());
    for c in &view.columns {
        header.push(match c.aggregate.as_str() {
            "rate" => format!("{}/s", escape(&c.name)),
            "avg" | "sum" => escape(&c.name).into_owned(),
            other => format!("{}({})", escape(other), escape(&c.name)),
        });
    }
    table.set_header(header);
    for series in &view.series {
        for point in &series.points {
            let mut line: Vec<String> = view.keys.iter().map(|k| cell(series.key.get(k))).collect();
            line.push(cell(point.get("time")));
            line.push(cell(point.get("row_count")));
            line.extend(view.columns.iter().map(|c| cell(point.get(&c.name))));
            table.add_row(line);
        }
    }
    for index in view.keys.len() + 1..view.keys.len() + 2 + view.columns.len() {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    out.push('\n');
    out.push_str(&table.to_string());
    out.push('\n');
    Ok(out)
}

/// Numbers with at most 3 decimals, `-` for null.
pub(crate) fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => escape(s).into_owned(),
        Some(Value::Number(n)) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            let text = format!("{f:.3}");
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
        Some(other) => escape(&other.to_string()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn series_lines_per_bucket() {
        let body = json!({
            "instance": {"id": 1, "name": "main", "agent_id": "db-01", "version": null,
                         "in_recovery": null, "labels": {}, "last_seen": null},
            "family": "database", "from": "2025-01-01T00:00:00Z", "to": "2025-01-01T00:02:00Z",
            "step_seconds": 60, "bucketing": "date_bin", "keys": ["datname"],
            "columns": [{"name": "numbackends", "aggregate": "avg"},
                        {"name": "xact_commit", "aggregate": "rate"}],
            "series": [{"key": {"datname": "app"}, "points": [
                {"time": "2025-01-01T00:00:00Z", "row_count": 3, "numbackends": 2.0, "xact_commit": 1.1666666},
                {"time": "2025-01-01T00:01:00Z", "row_count": 3, "numbackends": 5.5, "xact_commit": null}]}]
        });
        let text = render(&body).expect("render");
        assert!(text.contains("db-01/main (id 1): database"), "{text}");
        assert!(text.contains("xact_commit/s"), "{text}");
        assert!(text.contains("1.167"), "{text}");
        assert!(text.contains("5.5"), "{text}");
        let line = text
            .lines()
            .find(|l| l.contains("00:01:00"))
            .expect("second bucket");
        assert!(
            line.contains("app") && line.trim_end().ends_with('-'),
            "{line}"
        );
        assert!(render(&json!({"family": 1})).is_err());
    }
}
