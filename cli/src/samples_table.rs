//! `lasect metrics show` as tables: the `database` family gets a curated table per sample time
//! (time shown once above it); other families a generic table of all their columns. Headers
//! are the API's column names (like psql), so a value in a table is easy to find in `-o json`.

use anyhow::Context;
use comfy_table::CellAlignment;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::human_units;
use crate::instance_table::{InstanceView, new_table};
use crate::printable::escape;

#[derive(Debug, Deserialize)]
struct SamplesView {
    instance: InstanceView,
    family: String,
    columns: Vec<String>,
    rows: Vec<Map<String, Value>>,
}

/// `(header, render)` of each column of the database table.
type DbColumn = (&'static str, fn(&Map<String, Value>) -> String);

const DATABASE_COLUMNS: &[DbColumn] = &[
    ("datname", |r| text(r, "datname")),
    ("numbackends", |r| text(r, "numbackends")),
    ("xact_commit", |r| text(r, "xact_commit")),
    ("xact_rollback", |r| text(r, "xact_rollback")),
    ("blks_hit_ratio", |r| {
        human_units::hit_ratio(int(r, "blks_hit"), int(r, "blks_read"))
    }),
    ("tup_returned", |r| text(r, "tup_returned")),
    ("tup_fetched", |r| text(r, "tup_fetched")),
    ("tup_inserted", |r| text(r, "tup_inserted")),
    ("tup_updated", |r| text(r, "tup_updated")),
    ("tup_deleted", |r| text(r, "tup_deleted")),
    ("deadlocks", |r| text(r, "deadlocks")),
    ("temp_bytes", |r| {
        int(r, "temp_bytes").map_or("-".to_owned(), human_units::bytes)
    }),
    ("size_bytes", |r| {
        int(r, "size_bytes").map_or("-".to_owned(), human_units::bytes)
    }),
];

pub fn render(body: &Value) -> anyhow::Result<String> {
    let view: SamplesView =
        serde_json::from_value(body.clone()).context("unexpected shape of the samples")?;
    let i = &view.instance;
    let family = escape(&view.family);
    let mut out = format!(
        "{}/{} (id {}): {family}\n",
        escape(&i.agent_id),
        escape(&i.name),
        i.id
    );
    if view.rows.is_empty() {
        out.push_str(&format!("no {family} samples yet\n"));
        return Ok(out);
    }
    if view.family == "database" {
        for (time, rows) in group_by_time(&view.rows) {
            out.push_str(&format!("\ntime: {time}\n"));
            out.push_str(&database_table(&rows));
        }
    } else {
        out.push('\n');
        out.push_str(&generic_table(&view.columns, &view.rows));
    }
    Ok(out)
}

/// Rows grouped by their `time`, keeping the API's order (newest first).
fn group_by_time(rows: &[Map<String, Value>]) -> Vec<(String, Vec<&Map<String, Value>>)> {
    let mut groups: Vec<(String, Vec<&Map<String, Value>>)> = Vec::new();
    for row in rows {
        let time = text(row, "time");
        match groups.last_mut() {
            Some((t, members)) if *t == time => members.push(row),
            _ => groups.push((time, vec![row])),
        }
    }
    groups
}

fn database_table(rows: &[&Map<String, Value>]) -> String {
    let mut table = new_table();
    table.set_header(DATABASE_COLUMNS.iter().map(|(h, _)| *h));
    for row in rows {
        table.add_row(DATABASE_COLUMNS.iter().map(|(_, f)| f(row)));
    }
    for column in table.column_iter_mut().skip(1) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    format!("{}\n", table.trim_fmt())
}

fn generic_table(columns: &[String], rows: &[Map<String, Value>]) -> String {
    let mut table = new_table();
    table.set_header(columns.iter().map(|c| escape(c)));
    for row in rows {
        table.add_row(columns.iter().map(|c| cell(c, row.get(c))));
    }
    for column in table.column_iter_mut().skip(1) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    format!("{}\n", table.trim_fmt())
}

fn cell(column: &str, value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::Number(n)) if column.ends_with("_bytes") && n.is_i64() => {
            n.as_i64().map_or_else(|| n.to_string(), human_units::bytes)
        }
        Some(Value::Number(n)) if n.is_f64() => n
            .as_f64()
            .map_or_else(|| n.to_string(), |f| format!("{f:.2}")),
        Some(Value::String(s)) => escape(s).into_owned(),
        Some(other) => escape(&other.to_string()).into_owned(),
    }
}

fn text(row: &Map<String, Value>, key: &str) -> String {
    match row.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => escape(s).into_owned(),
        Some(other) => escape(&other.to_string()).into_owned(),
    }
}

fn int(row: &Map<String, Value>, key: &str) -> Option<i64> {
    row.get(key).and_then(Value::as_i64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(family: &str, columns: &[&str], rows: Value) -> Value {
        json!({
            "instance": {"id": 7, "name": "main", "agent_id": "db-01", "labels": {}},
            "family": family, "columns": columns, "rows": rows,
        })
    }

    #[test]
    fn database_rows_are_grouped_by_time() {
        let row = |t: &str, db: &str| {
            json!({"time": t, "datname": db, "numbackends": 2, "xact_commit": 10,
                   "blks_hit": 99, "blks_read": 1, "temp_bytes": 0, "size_bytes": 8_192_000})
        };
        let out = render(&body(
            "database",
            &["time", "datname"],
            json!([row("T2", "app"), row("T2", "postgres"), row("T1", "app")]),
        ))
        .expect("render");
        assert!(out.starts_with("db-01/main (id 7): database\n"), "{out}");
        assert_eq!(out.matches("time: T2").count(), 1, "{out}");
        assert_eq!(out.matches("time: T1").count(), 1, "{out}");
        assert!(
            out.contains("99.0%") && out.contains("7.8 MiB") && out.contains("0 B"),
            "{out}"
        );
        assert!(!out.contains("null"), "{out}");
    }

    #[test]
    fn other_families_get_all_columns() {
        let out = render(&body(
            "host_memory",
            &["time", "total_bytes", "note"],
            json!([{"time": "T1", "total_bytes": 2048, "note": null}]),
        ))
        .expect("render");
        assert!(
            out.contains("total_bytes") && out.contains("2.0 KiB") && out.contains('-'),
            "{out}"
        );
    }

    #[test]
    fn no_rows_and_bad_shapes() {
        let out = render(&body("database", &["time"], json!([]))).expect("render");
        assert!(out.contains("no database samples yet"), "{out}");
        assert!(render(&json!({"rows": 1})).is_err());
    }
}
