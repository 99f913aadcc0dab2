//! `lasect replication topology [--label key=value]`: the replication graph as a tree (every
//! sender above what it feeds, cascades nested), or the API's JSON with `--output json`;
//! `lasect replication stream ...` is `replication_stream_cmd`.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;

use clap::Subcommand;
use lasect_api_contract::replication::{Edge, Node, Topology};

use crate::api_client::{ApiClient, typed};
use crate::args::OutputFormat;
use crate::human_units::bytes;
use crate::printable::escape;
use crate::{encode_segment, render as render_body};

#[derive(Debug, Subcommand)]
pub enum ReplicationCommand {
    /// How the instances replicate: primaries, standbys (cascades), publications and
    /// subscriptions, with lags, slots and servers Lasect does not watch
    Topology {
        /// Only instances with this label (key=value) and the streams touching them
        #[arg(long, value_name = "KEY=VALUE")]
        label: Option<String>,
    },
    /// Logical replication streams: create (validated, rolled back on failure), list,
    /// status with backfill progress and ETA, remove
    #[command(subcommand)]
    Stream(crate::replication_stream_cmd::StreamCommand),
}

pub async fn run(
    client: &ApiClient,
    command: ReplicationCommand,
    output: OutputFormat,
) -> anyhow::Result<String> {
    match command {
        ReplicationCommand::Topology { label } => {
            let mut path = "api/v1/replication/topology".to_owned();
            if let Some(label) = label {
                if label.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
                    anyhow::bail!("--label must be key=value, not {label:?}");
                }
                path.push_str("?label=");
                path.push_str(&encode_segment(&label));
            }
            let body = client.get_json(&path).await?;
            let topology: Topology = typed(body.clone(), &path)?;
            render_body(output, &body, |_| Ok(tree(&topology)))
        }
        ReplicationCommand::Stream(c) => {
            crate::replication_stream_cmd::run(client, c, output).await
        }
    }
}

fn node_label(node: Option<&Node>, id: &str) -> String {
    let Some(n) = node else {
        return escape(id).into_owned();
    };
    let mut out = format!("{} ({})", escape(&n.name), escape(&n.role));
    if n.kind == "external" {
        out.push_str(" [not watched]");
    }
    if let Some(t) = n.timeline_id {
        let _ = write!(out, " tli {t}");
    }
    out
}

fn seconds(v: Option<f64>) -> Option<String> {
    v.map(|s| format!("{s:.1} s"))
}

/// One line about a stream: its kind, state, lags and slot.
fn edge_summary(e: &Edge) -> String {
    let mut parts = vec![format!("{} {}", escape(&e.kind), escape(&e.state))];
    if let Some(sub) = &e.subscription {
        let publications = e.publications.as_deref().unwrap_or_default().join(",");
        parts.push(format!("subscription {} ({publications})", escape(sub)));
    }
    let lag: Vec<String> = [
        ("write", e.write_lag_bytes, e.write_lag_seconds),
        ("flush", e.flush_lag_bytes, e.flush_lag_seconds),
        ("replay", e.replay_lag_bytes, e.replay_lag_seconds),
    ]
    .into_iter()
    .filter_map(|(name, b, s)| {
        let b = b?;
        Some(match seconds(s) {
            Some(s) => format!("{name} {} / {s}", bytes(b)),
            None => format!("{name} {}", bytes(b)),
        })
    })
    .collect();
    if !lag.is_empty() {
        parts.push(format!("lag {}", lag.join(", ")));
    }
    if let Some(b) = e.apply_lag_bytes {
        parts.push(format!("received, not applied {}", bytes(b)));
    }
    if let Some(b) = e.publisher_lag_bytes {
        parts.push(format!("behind publisher {}", bytes(b)));
    }
    if let Some(s) = seconds(e.replay_delay_seconds) {
        parts.push(format!("replay delay {s}"));
    }
    if let Some(s) = seconds(e.last_message_age_seconds) {
        parts.push(format!("last message {s} ago"));
    } else if let Some(t) = &e.last_message_at {
        parts.push(format!("last message {}", escape(t)));
    }
    if let Some(slot) = &e.slot_name {
        let mut s = format!("slot {}", escape(slot));
        if let Some(r) = e.slot_retained_bytes {
            let _ = write!(s, " retains {}", bytes(r));
        }
        parts.push(s);
    }
    let tables = e.tables.as_deref().unwrap_or_default();
    if !tables.is_empty() {
        let ready = tables.iter().filter(|t| t.state == "ready").count();
        parts.push(format!("tables {ready}/{} ready", tables.len()));
    }
    parts.join(", ")
}

/// The graph as an indented tree: roots are the nodes nothing replicates to.
pub fn tree(topology: &Topology) -> String {
    let Topology { nodes, edges } = topology;
    let find = |id: &str| nodes.iter().find(|n| n.id == id);
    let targets: HashSet<&str> = edges.iter().map(|e| e.to.as_str()).collect();
    let mut out = String::new();
    if nodes.is_empty() {
        out.push_str("no instances\n");
        return out;
    }
    let mut shown: BTreeSet<String> = BTreeSet::new();
    let roots: Vec<&str> = nodes
        .iter()
        .map(|n| n.id.as_str())
        .filter(|id| !targets.contains(id))
        .collect();
    for root in &roots {
        walk(root, edges, &find, 0, &mut shown, &mut out);
    }
    // Cycles (e.g. two clusters subscribing to each other) have no root: start anywhere.
    for n in nodes {
        if !shown.contains(&n.id) {
            walk(&n.id, edges, &find, 0, &mut shown, &mut out);
        }
    }
    out
}

fn walk<'a>(
    id: &str,
    edges: &'a [Edge],
    find: &dyn Fn(&str) -> Option<&'a Node>,
    depth: usize,
    shown: &mut BTreeSet<String>,
    out: &mut String,
) {
    if depth == 0 {
        let _ = writeln!(out, "{}", node_label(find(id), id));
    }
    if !shown.insert(id.to_owned()) {
        return;
    }
    for e in edges.iter().filter(|e| e.from == id) {
        let to = e.to.as_str();
        let indent = "    ".repeat(depth);
        let _ = writeln!(
            out,
            "{indent}└─ {}  [{}]",
            node_label(find(to), to),
            edge_summary(e)
        );
        walk(to, edges, find, depth + 1, shown, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cascades_nest_and_externals_are_marked() {
        let body = json!({
            "nodes": [
                {"id": "instance:1", "kind": "instance", "name": "main", "role": "primary", "timeline_id": 1},
                {"id": "instance:2", "kind": "instance", "name": "replica", "role": "standby"},
                {"id": "instance:3", "kind": "instance", "name": "cascade", "role": "standby"},
                {"id": "external:10.0.0.9/sub", "kind": "external", "name": "sub at 10.0.0.9", "role": "unknown"}
            ],
            "edges": [
                {"kind": "physical", "from": "instance:1", "to": "instance:2", "state": "streaming",
                 "replay_lag_bytes": 2048, "replay_lag_seconds": 0.5, "slot_name": "s1", "slot_retained_bytes": 4096},
                {"kind": "physical", "from": "instance:2", "to": "instance:3", "state": "streaming"},
                {"kind": "logical", "from": "instance:1", "to": "external:10.0.0.9/sub", "state": "streaming"}
            ]
        });
        let text = tree(&serde_json::from_value(body).expect("topology"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "main (primary) tli 1");
        assert!(
            lines[1].starts_with("└─ replica (standby)  [physical streaming"),
            "{text}"
        );
        assert!(
            lines[1].contains("replay 2.0 KiB / 0.5 s") || lines[1].contains("replay 2"),
            "{text}"
        );
        assert!(lines[1].contains("slot s1 retains"), "{text}");
        assert!(lines[2].starts_with("    └─ cascade (standby)"), "{text}");
        assert!(lines[3].contains("[not watched]"), "{text}");
        assert_eq!(lines.len(), 4, "{text}");
    }

    #[test]
    fn an_empty_fleet_says_so() {
        let empty = serde_json::from_value(json!({"nodes": [], "edges": []})).expect("topology");
        assert_eq!(tree(&empty), "no instances\n");
    }
}
