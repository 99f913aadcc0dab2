//! `lasect instance list` as a table.

use anyhow::Context;
use comfy_table::{CellAlignment, Table};
use serde::Deserialize;
use serde_json::Value;

use crate::printable::escape;

#[derive(Debug, Deserialize)]
struct InstanceList {
    instances: Vec<InstanceView>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct InstanceView {
    pub id: i64,
    pub name: String,
    pub agent_id: String,
    pub version: Option<String>,
    pub in_recovery: Option<bool>,
    #[serde(default)]
    pub labels: serde_json::Map<String, Value>,
    pub last_seen: Option<String>,
}

/// A table without borders, like `kubectl get`: easy to read and to grep.
pub(crate) fn new_table() -> Table {
    let mut table = Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table
}

pub fn render(body: &Value) -> anyhow::Result<String> {
    let list: InstanceList =
        serde_json::from_value(body.clone()).context("unexpected shape of the instance list")?;
    if list.instances.is_empty() {
        return Ok("no instances yet\n".to_owned());
    }
    let mut table = new_table();
    table.set_header([
        "id",
        "agent_id",
        "name",
        "version",
        "role",
        "last_seen",
        "labels",
    ]);
    for i in &list.instances {
        let role = match i.in_recovery {
            Some(true) => "standby",
            Some(false) => "primary",
            None => "-",
        };
        let labels: Vec<String> = i
            .labels
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{}={}", escape(k), escape(s)),
                other => format!("{}={}", escape(k), escape(&other.to_string())),
            })
            .collect();
        table.add_row([
            i.id.to_string(),
            escape(&i.agent_id).into_owned(),
            escape(&i.name).into_owned(),
            i.version.as_deref().map_or("-".into(), escape).into_owned(),
            role.to_owned(),
            i.last_seen
                .as_deref()
                .map_or("-".into(), escape)
                .into_owned(),
            if labels.is_empty() {
                "-".to_owned()
            } else {
                labels.join(",")
            },
        ]);
    }
    if let Some(id) = table.column_mut(0) {
        id.set_cell_alignment(CellAlignment::Right);
    }
    Ok(format!("{}\n", table.trim_fmt()))
}
