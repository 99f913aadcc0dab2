//! `[[collect.custom]]`: user-defined SQL metrics (FR8), and their checks.
//!
//! ```toml
//! [[collect.custom]]
//! name = "queue_depth"                  # ^[a-z_][a-z0-9_]{0,62}$, unique
//! sql = "SELECT queue, count(*) AS depth, max(age) AS oldest FROM jobs GROUP BY queue"
//! labels = ["queue"]                    # columns that identify a row
//! values = ["depth", "oldest"]          # numeric columns, one stored value each
//! interval_secs = 60                    # 1..=3600 (default 60)
//! timeout_secs = 5                      # 1..=10 (default 5), statement_timeout
//! databases = ["app"]                   # optional; default: the DSN's database
//! ```
//!
//! Every query runs in a READ ONLY transaction with its statement_timeout,
//! as a subquery (so it must be one SELECT, VALUES, TABLE or WITH query).

use serde::Deserialize;

/// Longest SQL text accepted.
pub const MAX_SQL_BYTES: usize = 64 << 10;
const MAX_INTERVAL_SECS: u64 = 3600;
/// Kept well under the agent's 20 s bound of an instance's round.
const MAX_TIMEOUT_SECS: u64 = 10;
/// Label plus value columns of one metric, at most (ingest's label bound).
const MAX_COLUMNS: usize = 32;

#[derive(Debug, Clone, Deserialize)]
pub struct CustomMetricConfig {
    pub name: String,
    pub sql: String,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Databases to run in; empty means the DSN's database.
    #[serde(default)]
    pub databases: Vec<String>,
}

fn default_interval_secs() -> u64 {
    60
}
fn default_timeout_secs() -> u64 {
    5
}

fn is_metric_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// A result column or database name: what PostgreSQL can name (1..=63
/// bytes, no NUL).
fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && !s.contains('\0')
}

/// Every problem of `metrics`, as (field path, message).
pub fn check(prefix: &str, metrics: &[CustomMetricConfig]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, m) in metrics.iter().enumerate() {
        let at = |field: &str| format!("{prefix}[{i}].{field}");
        if !is_metric_name(&m.name) {
            problems.push((
                at("name"),
                format!("{:?} must match ^[a-z_][a-z0-9_]{{0,62}}$", m.name),
            ));
        } else if !names.insert(m.name.as_str()) {
            problems.push((at("name"), format!("duplicate name {:?}", m.name)));
        }
        let sql = m.sql.trim();
        if sql.is_empty() {
            problems.push((at("sql"), "must not be empty".into()));
        } else if sql.len() > MAX_SQL_BYTES {
            problems.push((at("sql"), format!("must be at most {MAX_SQL_BYTES} bytes")));
        } else if sql.contains('\0') {
            problems.push((at("sql"), "must not contain NUL".into()));
        }
        if !(1..=MAX_INTERVAL_SECS).contains(&m.interval_secs) {
            problems.push((
                at("interval_secs"),
                format!(
                    "{} is out of range 1..={MAX_INTERVAL_SECS}",
                    m.interval_secs
                ),
            ));
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&m.timeout_secs) {
            problems.push((
                at("timeout_secs"),
                format!("{} is out of range 1..={MAX_TIMEOUT_SECS}", m.timeout_secs),
            ));
        }
        if m.values.is_empty() {
            problems.push((at("values"), "name at least one value column".into()));
        }
        if m.labels.len() + m.values.len() > MAX_COLUMNS {
            problems.push((
                at("labels"),
                format!("at most {MAX_COLUMNS} label and value columns"),
            ));
        }
        let mut columns = std::collections::HashSet::new();
        for (list, cols) in [("labels", &m.labels), ("values", &m.values)] {
            for (j, c) in cols.iter().enumerate() {
                if !is_identifier(c) {
                    problems.push((
                        at(&format!("{list}[{j}]")),
                        "must be 1..=63 bytes without NUL".into(),
                    ));
                } else if !columns.insert(c.as_str()) {
                    problems.push((
                        at(&format!("{list}[{j}]")),
                        format!("column {c:?} is named twice (labels and values must not overlap)"),
                    ));
                }
            }
        }
        for (j, d) in m.databases.iter().enumerate() {
            if !is_identifier(d) {
                problems.push((
                    at(&format!("databases[{j}]")),
                    "must be 1..=63 bytes without NUL".into(),
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(name: &str) -> CustomMetricConfig {
        CustomMetricConfig {
            name: name.into(),
            sql: "SELECT 1 AS v".into(),
            labels: vec![],
            values: vec!["v".into()],
            interval_secs: 60,
            timeout_secs: 5,
            databases: vec![],
        }
    }

    fn fields(problems: Vec<(String, String)>) -> Vec<String> {
        problems.into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn a_good_metric_passes() {
        assert!(check("collect.custom", &[metric("queue_depth")]).is_empty());
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut bad = metric("Queue-Depth");
        bad.sql = "  ".into();
        bad.interval_secs = 0;
        bad.timeout_secs = 11;
        bad.labels = vec!["v".into(), String::new()];
        bad.databases = vec![String::new()];
        assert_eq!(
            fields(check("collect.custom", &[bad])),
            [
                "collect.custom[0].name",
                "collect.custom[0].sql",
                "collect.custom[0].interval_secs",
                "collect.custom[0].timeout_secs",
                "collect.custom[0].labels[1]",
                "collect.custom[0].values[0]",
                "collect.custom[0].databases[0]",
            ]
        );
        let mut no_values = metric("b");
        no_values.values.clear();
        assert_eq!(
            fields(check("c", &[metric("a"), metric("a"), no_values])),
            ["c[1].name", "c[2].values"]
        );
    }
}
