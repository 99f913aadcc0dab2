//! The Grafana dashboards (`dashboards/`) proven against a real store.
//!
//! - `dashboards_are_well_formed` (no stack): the committed JSON is what
//!   `dashboards/generate.py` makes; every dashboard parses, has unique panel
//!   ids and a grid without overlaps, refers only to the provisioned
//!   datasource uid, and uses only template variables it defines (defined
//!   before any variable whose query uses them) and macros this test expands;
//!   every metric column is read as `lasect-families` declares it (increases
//!   of counters, sums of deltas, averages and maxima of levels).
//! - `every_panel_query_runs_on_a_real_store`: a monitored cluster under load
//!   (pgbench, a blocked session, an error, a checkpoint, a setting change, a
//!   logical slot, a WAL receiver, a custom metric) is collected by the real agent through the
//!   real ingest; then every variable query and every panel's SQL, with
//!   Grafana's macros and variables expanded here, runs as a login of the
//!   read-only role `lasect_grafana` (migration V24), with all values and with
//!   single values of every multi-value variable. Each must succeed, and each
//!   panel must return rows but the few listed in [`MAY_BE_EMPTY`]; no time
//!   series shows a negative value, also after counter resets. The role reads
//!   every metric table and none of the tables holding secrets.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use lasect_e2e::{Stack, run_ok, wait_listening};
use lasect_testkit::{ChildGuard, LogFormat, PgCluster, PgOptions};
use serde_json::Value;

const AGENT_ID: &str = "e2e-dashboards";
const BOUND: Duration = Duration::from_secs(90);
const DATASOURCE_UID: &str = "lasect-store";
const GRAFANA_LOGIN: &str = "grafana_e2e";
/// `$__interval` of the expansions: a bucket of 10 s (and 1 s, one sample per bucket, to see
/// a reset's single sample alone).
const INTERVAL_MS: i64 = 10_000;

/// Panels that may legitimately be empty on a fresh standalone cluster:
/// (dashboard uid, panel title, why).
const MAY_BE_EMPTY: &[(&str, &str, &str)] = &[
    (
        "lasect-instance",
        "Running maintenance (progress)",
        "only while VACUUM, CREATE INDEX, a base backup or COPY runs",
    ),
    (
        "lasect-replication",
        "Standby replay delay",
        "the monitored cluster is a primary, not a standby",
    ),
    (
        "lasect-replication",
        "Subscriptions",
        "the monitored cluster subscribes to no publication",
    ),
    (
        "lasect-settings",
        "Settings that differ between the selected instances",
        "one instance is monitored",
    ),
    (
        "lasect-self",
        "Collector failures in the range",
        "a healthy agent reports no failure",
    ),
    (
        "lasect-logs",
        "Log lines the agent dropped, cut or could not parse",
        "the agent drops or cuts nothing and parses every line",
    ),
];

/// Time series whose values may be negative: (dashboard uid, panel title, why).
const MAY_BE_NEGATIVE: &[(&str, &str, &str)] = &[(
    "lasect-instance",
    "Custom metrics",
    "user-defined values have any sign (pgbench's branch balances here)",
)];

/// What the API's alert evaluator writes when a rule fires (no API runs here): a firing
/// alert of the monitored instance, its event, and a silence.
const ALERTS: &str = "
    INSERT INTO alert_instances (rule_id, key, instance_id, agent_id, state, since,
                                 last_value, last_evaluated, annotations)
    SELECT r.id, 'e2e', i.id, i.agent_id, 'firing', now(), 97, now(),
           '{\"summary\": \"monitored uses 97 % of max_connections\"}'
    FROM alert_rules r, instances i
    WHERE r.name = 'connections_near_max' AND i.name = 'monitored';
    INSERT INTO alert_events (at, alert_id, rule_id, rule_name, severity, key, instance_id,
                              agent_id, from_state, to_state, value, threshold)
    SELECT now(), a.id, a.rule_id, 'connections_near_max', 'warning', a.key, a.instance_id,
           a.agent_id, 'pending', 'firing', 97, 85
    FROM alert_instances a WHERE a.key = 'e2e';
    INSERT INTO alert_silences (matchers, starts_at, ends_at, comment, created_by)
    VALUES ('alertname=connections_near_max', now(), now() + interval '1 hour', 'e2e', 'admin');";

/// Macros of Grafana's PostgreSQL datasource this test expands.
const MACROS: &[&str] = &[
    "__time",
    "__timeEpoch",
    "__timeFilter",
    "__timeFrom",
    "__timeTo",
    "__timeGroup",
    "__timeGroupAlias",
    "__unixEpochFilter",
    "__unixEpochFrom",
    "__unixEpochTo",
    "__interval",
    "__interval_ms",
];

fn dashboards_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

struct Dashboard {
    file: String,
    json: Value,
}

impl Dashboard {
    fn uid(&self) -> &str {
        self.json["uid"].as_str().unwrap_or("")
    }

    fn variables(&self) -> Vec<&Value> {
        self.json["templating"]["list"]
            .as_array()
            .map(|l| l.iter().collect())
            .unwrap_or_default()
    }

    /// Every panel, rows' nested panels included.
    fn panels(&self) -> Vec<&Value> {
        let mut out = Vec::new();
        for p in self.json["panels"].as_array().into_iter().flatten() {
            out.push(p);
            out.extend(p["panels"].as_array().into_iter().flatten());
        }
        out
    }
}

fn load_dashboards() -> Vec<Dashboard> {
    let dir = dashboards_dir().join("json");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read dashboard");
            let json: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            Dashboard {
                file: path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                json,
            }
        })
        .collect()
}

/// A reference found in a query or title: `$name`, `${name}`, `${name:format}`, `[[name]]`.
#[derive(Debug, PartialEq)]
struct Reference {
    start: usize,
    end: usize,
    name: String,
    format: Option<String>,
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn references(text: &str) -> Vec<Reference> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && b.get(i + 1) == Some(&b'{') {
            if let Some(close) = text[i..].find('}') {
                let inner = &text[i + 2..i + close];
                let (name, format) = match inner.split_once(':') {
                    Some((n, f)) => (n, Some(f.to_owned())),
                    None => (inner, None),
                };
                out.push(Reference {
                    start: i,
                    end: i + close + 1,
                    name: name.to_owned(),
                    format,
                });
                i += close + 1;
                continue;
            }
        } else if b[i] == b'$' && b.get(i + 1).copied().is_some_and(is_word) {
            let mut j = i + 1;
            while j < b.len() && is_word(b[j]) {
                j += 1;
            }
            out.push(Reference {
                start: i,
                end: j,
                name: text[i + 1..j].to_owned(),
                format: None,
            });
            i = j;
            continue;
        } else if b[i] == b'['
            && b.get(i + 1) == Some(&b'[')
            && let Some(close) = text[i..].find("]]")
        {
            let inner = &text[i + 2..i + close];
            // As Grafana's pattern: a name of word characters, then an optional `:format`.
            let (name, format) = match inner.split_once(':') {
                Some((n, f)) => (n, Some(f)),
                None => (inner, None),
            };
            let word = |s: &str| !s.is_empty() && s.bytes().all(is_word);
            if word(name) && format.is_none_or(word) {
                out.push(Reference {
                    start: i,
                    end: i + close + 2,
                    name: name.to_owned(),
                    format: format.map(str::to_owned),
                });
                i += close + 2;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// The datasource uid and type provisioned in `provisioning/datasources/lasect.yaml`.
fn provisioned_datasource() -> (String, String) {
    let path = dashboards_dir().join("provisioning/datasources/lasect.yaml");
    let text = std::fs::read_to_string(&path).expect("read datasource provisioning");
    let field = |key: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(key))
            .map(|v| v.trim().to_owned())
            .collect()
    };
    let uids = field("uid:");
    let types = field("type:");
    assert_eq!(uids.len(), 1, "one datasource uid in {}", path.display());
    assert_eq!(types.len(), 1, "one datasource type in {}", path.display());
    // Secure by default: TLS with host name check, and no literal password.
    assert_eq!(field("sslmode:"), ["verify-full"], "sslmode");
    assert!(!field("sslRootCertFile:").is_empty(), "a CA path");
    let passwords = field("password:");
    assert_eq!(passwords.len(), 1);
    assert!(
        passwords[0].starts_with("${") && passwords[0].ends_with('}'),
        "the password comes from the environment, not {:?}",
        passwords[0]
    );
    (uids[0].clone(), types[0].clone())
}

/// Every `datasource` value anywhere in `v`, with its JSON path.
fn datasource_refs<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "datasource" {
                    out.push((format!("{path}.{k}"), child));
                }
                datasource_refs(child, format!("{path}.{k}"), out);
            }
        }
        Value::Array(items) => {
            for (n, child) in items.iter().enumerate() {
                datasource_refs(child, format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn dashboards_are_well_formed() {
    let generator = dashboards_dir().join("generate.py");
    let out = Command::new("python3")
        .arg(&generator)
        .arg("--check")
        .output()
        .expect("run python3 dashboards/generate.py --check");
    assert!(
        out.status.success(),
        "the committed dashboards differ from the generator: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (uid, kind) = provisioned_datasource();
    assert_eq!(uid, DATASOURCE_UID);
    let dashboards = load_dashboards();
    assert!(dashboards.len() >= 12, "{} dashboards", dashboards.len());
    let readme = std::fs::read_to_string(dashboards_dir().join("README.md")).expect("README");
    let mut uids = HashSet::new();
    for d in &dashboards {
        assert!(
            readme.contains(&format!("`{}`", d.uid())),
            "dashboards/README.md does not describe {}",
            d.uid()
        );
        let f = &d.file;
        assert!(
            uids.insert(d.uid().to_owned()),
            "{f}: uid {} twice",
            d.uid()
        );
        assert_eq!(d.json["schemaVersion"], 39, "{f}: schemaVersion");
        assert!(d.json["title"].as_str().is_some_and(|t| !t.is_empty()));

        let mut refs = Vec::new();
        datasource_refs(&d.json, String::new(), &mut refs);
        assert!(!refs.is_empty(), "{f}: no datasource at all");
        for (path, r) in refs {
            assert_eq!(r["uid"], uid.as_str(), "{f}{path}: {r}");
            assert_eq!(r["type"], kind.as_str(), "{f}{path}: {r}");
        }

        // Variables: defined once, each query using only variables defined before it.
        let mut defined: Vec<String> = Vec::new();
        for v in d.variables() {
            let name = v["name"].as_str().expect("variable name").to_owned();
            let query = v["query"].as_str().unwrap_or("");
            check_references(f, &format!("variable {name}"), query, &defined);
            assert!(!defined.contains(&name), "{f}: variable {name} twice");
            defined.push(name);
        }

        let panels = d.panels();
        assert!(!panels.is_empty(), "{f}: no panels");
        let mut ids = HashSet::new();
        let mut boxes: Vec<(String, i64, i64, i64, i64)> = Vec::new();
        for p in &panels {
            let title = p["title"].as_str().unwrap_or("").to_owned();
            let id = p["id"]
                .as_i64()
                .unwrap_or_else(|| panic!("{f}: {title}: no id"));
            assert!(ids.insert(id), "{f}: panel id {id} twice");
            let g = &p["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| {
                g[k].as_i64()
                    .unwrap_or_else(|| panic!("{f}: {title}: gridPos.{k}"))
            });
            assert!(
                x >= 0 && y >= 0 && w >= 1 && h >= 1 && w <= 24 && x + w <= 24,
                "{f}: {title}: gridPos {g}"
            );
            for (other, ox, oy, ow, oh) in &boxes {
                let apart = x + w <= *ox || *ox + *ow <= x || y + h <= *oy || *oy + *oh <= y;
                assert!(apart, "{f}: {title} overlaps {other}");
            }
            boxes.push((title.clone(), x, y, w, h));
            check_references(f, &title, &title, &defined);
            if p["type"] == "row" {
                continue;
            }
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{f}: {title}: no query");
            for t in targets {
                let sql = t["rawSql"].as_str().unwrap_or("");
                assert!(!sql.trim().is_empty(), "{f}: {title}: empty SQL");
                assert_eq!(t["rawQuery"], true, "{f}: {title}");
                assert!(
                    t["format"] == "time_series" || t["format"] == "table",
                    "{f}: {title}: format {}",
                    t["format"]
                );
                check_references(f, &title, sql, &defined);
                check_semantics(f, &title, sql);
            }
        }
    }
    for (uid, title, _) in MAY_BE_EMPTY.iter().chain(MAY_BE_NEGATIVE) {
        assert!(
            dashboards
                .iter()
                .any(|d| d.uid() == *uid && d.panels().iter().any(|p| p["title"] == *title)),
            "MAY_BE_EMPTY or MAY_BE_NEGATIVE names {uid} / {title}, which does not exist"
        );
    }
}

/// The column names after each occurrence of `prefix` in `sql`.
fn columns_after<'a>(sql: &'a str, prefix: &str) -> Vec<&'a str> {
    sql.match_indices(prefix)
        .map(|(at, _)| {
            let rest = &sql[at + prefix.len()..];
            &rest[..rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len())]
        })
        .collect()
}

/// Each column of a metric table's raw rows (alias `m` in every panel) is read as its family
/// declares it (`lasect-families`): increases only of cumulative counters, sums only of
/// per-interval deltas, averages and maxima only of levels. (Sums of levels across series, e.g.
/// the sizes of an instance's databases, are taken over derived rows, not `m`.)
fn check_semantics(file: &str, title: &str, sql: &str) {
    use lasect_families::Role;
    let families: Vec<_> = lasect_families::ALL
        .iter()
        .filter(|f| {
            sql.match_indices(f.table).any(|(at, _)| {
                !sql[at + f.table.len()..]
                    .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            })
        })
        .collect();
    let roles = |column: &str| -> Vec<Role> {
        families
            .iter()
            .filter_map(|f| f.column(column))
            .map(|c| c.role)
            .collect()
    };
    // The increase over the previous sample (generate.py's `delta`).
    for column in columns_after(sql, "CASE WHEN m.") {
        let lagged = format!("CASE WHEN m.{column} >= lag(m.{column}) OVER w");
        if !sql.contains(&lagged) {
            continue;
        }
        let found = roles(column);
        assert!(
            found.contains(&Role::Counter),
            "{file}: {title}: an increase of {column}, declared {found:?}"
        );
    }
    let rules: [(&str, &[Role], &str); 3] = [
        ("sum(m.", &[Role::Delta], "a sum"),
        ("avg(m.", &[Role::Gauge, Role::Peak], "an average"),
        ("max(m.", &[Role::Gauge, Role::Peak], "a maximum"),
    ];
    for (prefix, allowed, what) in rules {
        for column in columns_after(sql, prefix) {
            let found = roles(column);
            assert!(
                found.is_empty() || found.iter().any(|r| allowed.contains(r)),
                "{file}: {title}: {what} of {column}, declared {found:?}"
            );
        }
    }
}

fn check_references(file: &str, what: &str, text: &str, defined: &[String]) {
    for r in references(text) {
        if r.name.starts_with("__") {
            assert!(
                MACROS.contains(&r.name.as_str()),
                "{file}: {what}: unknown macro ${}",
                r.name
            );
        } else {
            assert!(
                defined.contains(&r.name),
                "{file}: {what}: variable ${} is not defined (before it)",
                r.name
            );
        }
        if let Some(format) = &r.format {
            assert!(
                ["csv", "sqlstring", "raw", "singlequote"].contains(&format.as_str()),
                "{file}: {what}: format {format} is not expanded by this test"
            );
        }
    }
}

/// What Grafana would substitute: the time range, the interval and the variables' values.
struct Context {
    /// RFC 3339, UTC.
    from: String,
    to: String,
    from_epoch: i64,
    to_epoch: i64,
    interval_ms: i64,
    /// Name → (values, multi-value or include-all variable).
    vars: BTreeMap<String, (Vec<String>, bool)>,
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// `text` with Grafana's variables (first, as its front end does) and then the PostgreSQL
/// datasource's macros expanded.
fn expand(text: &str, ctx: &Context) -> String {
    let mut out = String::new();
    let mut last = 0;
    for r in references(text) {
        let value = match r.name.as_str() {
            "__interval_ms" => Some(ctx.interval_ms.to_string()),
            "__interval" => Some(format!("{}s", ctx.interval_ms / 1000)),
            name => ctx
                .vars
                .get(name)
                .map(|(values, multi)| match r.format.as_deref() {
                    Some("csv") => values.join(","),
                    Some("sqlstring") | Some("singlequote") => values
                        .iter()
                        .map(|v| quote(v))
                        .collect::<Vec<_>>()
                        .join(","),
                    Some("raw") => values.join(","),
                    _ if *multi => values
                        .iter()
                        .map(|v| quote(v))
                        .collect::<Vec<_>>()
                        .join(","),
                    _ => values
                        .first()
                        .map(|v| v.replace('\'', "''"))
                        .unwrap_or_default(),
                }),
        };
        if let Some(value) = value {
            out.push_str(&text[last..r.start]);
            out.push_str(&value);
            last = r.end;
        }
    }
    out.push_str(&text[last..]);
    expand_macros(&out, ctx)
}

fn interval_secs(arg: &str) -> i64 {
    let arg = arg.trim().trim_matches('\'');
    let (digits, unit) = arg.split_at(arg.find(|c: char| !c.is_ascii_digit()).unwrap_or(arg.len()));
    let n: i64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("interval {arg:?}"));
    n * match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "ms" => return (n / 1000).max(1),
        other => panic!("interval unit {other:?}"),
    }
}

fn expand_macros(text: &str, ctx: &Context) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("$__") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        let name_len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..name_len];
        let after = &tail[name_len..];
        assert!(
            after.starts_with('('),
            "macro ${name} without arguments in {text}"
        );
        // Arguments up to the matching parenthesis, split at top-level commas.
        let mut depth = 0;
        let mut args = vec![String::new()];
        let mut end = None;
        for (n, c) in after.char_indices() {
            match c {
                '(' => {
                    depth += 1;
                    if depth == 1 {
                        continue;
                    }
                }
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(n);
                        break;
                    }
                }
                ',' if depth == 1 => {
                    args.push(String::new());
                    continue;
                }
                _ => {}
            }
            if let Some(a) = args.last_mut() {
                a.push(c);
            }
        }
        let end = end.unwrap_or_else(|| panic!("unclosed ${name}( in {text}"));
        let args: Vec<String> = args.into_iter().map(|a| a.trim().to_owned()).collect();
        let col = args[0].as_str();
        let group = || {
            let secs = interval_secs(args.get(1).map(String::as_str).unwrap_or("1m"));
            format!("floor(extract(epoch from {col})/{secs})*{secs}")
        };
        let expanded = match name {
            "__time" => format!("{col} AS \"time\""),
            "__timeEpoch" => format!("extract(epoch from {col}) AS \"time\""),
            "__timeFilter" => format!("{col} BETWEEN '{}' AND '{}'", ctx.from, ctx.to),
            "__timeFrom" => format!("'{}'", ctx.from),
            "__timeTo" => format!("'{}'", ctx.to),
            "__timeGroup" => group(),
            "__timeGroupAlias" => format!("{} AS \"time\"", group()),
            "__unixEpochFilter" => {
                format!("{col} >= {} AND {col} <= {}", ctx.from_epoch, ctx.to_epoch)
            }
            "__unixEpochFrom" => ctx.from_epoch.to_string(),
            "__unixEpochTo" => ctx.to_epoch.to_string(),
            other => panic!("macro ${other} is not expanded by this test"),
        };
        out.push_str(&expanded);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Runs `sql`; Ok(rows as text) or the server's error.
async fn run(db: &tokio_postgres::Client, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let messages = db
        .simple_query(sql)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(d) => format!(
                "{} ({}): {}",
                d.message(),
                d.code().code(),
                d.detail().unwrap_or("")
            ),
            None => e.to_string(),
        })?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|n| r.get(n).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect())
}

/// The values of a variable's query, as Grafana takes them: `__value` when the query has
/// one, else the first column.
async fn variable_values(db: &tokio_postgres::Client, sql: &str) -> Result<Vec<String>, String> {
    let messages = db.simple_query(sql).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for m in messages {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            let column = r
                .columns()
                .iter()
                .position(|c| c.name() == "__value")
                .unwrap_or(0);
            if let Some(v) = r.get(column) {
                out.push(v.to_owned());
            }
        }
    }
    Ok(out)
}

/// One round: every variable and panel of every dashboard, with every variable at all its
/// values (`single` = false) or at its first value. Returns the panels without rows; any
/// SQL error fails the test at once.
async fn round(
    db: &tokio_postgres::Client,
    dashboards: &[Dashboard],
    single: bool,
    label: &str,
    interval_ms: i64,
) -> Vec<String> {
    let times = run(
        db,
        "SELECT to_char((now() - interval '20 minutes') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                to_char((now() + interval '1 minute') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                extract(epoch FROM now() - interval '20 minutes')::int8,
                extract(epoch FROM now() + interval '1 minute')::int8",
    )
    .await
    .expect("time range");
    let t = &times[0];
    let field = |n: usize| t[n].clone().expect("time");
    let mut empty = Vec::new();
    for d in dashboards {
        let mut ctx = Context {
            from: field(0),
            to: field(1),
            from_epoch: field(2).parse().expect("epoch"),
            to_epoch: field(3).parse().expect("epoch"),
            interval_ms,
            vars: BTreeMap::new(),
        };
        for v in d.variables() {
            let name = v["name"].as_str().expect("name").to_owned();
            let multi = v["multi"] == true || v["includeAll"] == true;
            let sql = expand(v["query"].as_str().unwrap_or(""), &ctx);
            let mut values = variable_values(db, &sql)
                .await
                .unwrap_or_else(|e| panic!("{}: variable {name}: {e}\n{sql}", d.file));
            if name == "label" {
                assert!(
                    values.iter().any(|l| l == label),
                    "{}: labels {values:?}",
                    d.file
                );
                values = vec![label.to_owned()];
            }
            if values.is_empty() {
                empty.push(format!("{}: variable {name}", d.file));
            }
            if single {
                values.truncate(1);
            }
            ctx.vars.insert(name, (values, multi));
        }
        for p in d.panels() {
            if p["type"] == "row" {
                continue;
            }
            let title = p["title"].as_str().unwrap_or("");
            for t in p["targets"].as_array().into_iter().flatten() {
                let sql = expand(t["rawSql"].as_str().unwrap_or(""), &ctx);
                let rows = run(db, &sql)
                    .await
                    .unwrap_or_else(|e| panic!("{}: panel {title:?} failed: {e}\n{sql}", d.file));
                let may_be_empty = MAY_BE_EMPTY
                    .iter()
                    .any(|(uid, t, _)| *uid == d.uid() && *t == title);
                if rows.is_empty() && !may_be_empty {
                    empty.push(format!("{}: {title}", d.file));
                }
                // Rates, sizes, lags and counts are never negative: a counter reset must
                // not show as a negative spike. (Columns 0 and 1 are time and metric.)
                let may_be_negative = MAY_BE_NEGATIVE
                    .iter()
                    .any(|(uid, t, _)| *uid == d.uid() && *t == title);
                if t["format"] == "time_series" && !may_be_negative {
                    for r in &rows {
                        let negative = r
                            .iter()
                            .skip(2)
                            .flatten()
                            .find(|v| v.parse::<f64>().is_ok_and(|x| x < 0.0));
                        assert!(
                            negative.is_none(),
                            "{}: panel {title:?} shows a negative value: {r:?}\n{sql}",
                            d.file
                        );
                    }
                }
            }
        }
    }
    empty
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_runs_on_a_real_store() {
    let dashboards = load_dashboards();
    let stack = Stack::new(AGENT_ID).await;
    let monitored = PgCluster::start(PgOptions {
        stat_statements: true,
        logical: true,
        log_format: Some(LogFormat::Json),
        settings: vec![
            ("archive_mode".into(), "on".into()),
            ("archive_command".into(), "'/bin/true'".into()),
        ],
        ..PgOptions::default()
    })
    .expect("monitored cluster");
    let admin = monitored.connect("postgres").await.expect("connect");
    admin
        .batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .expect("pg_stat_statements");
    monitored.create_database("app").await.expect("create app");
    let app = monitored.connect("app").await.expect("connect app");
    // An index nothing scans and no constraint needs: an unused index.
    app.batch_execute(
        "CREATE TABLE app_t (id int PRIMARY KEY, v int);
         INSERT INTO app_t SELECT g, g FROM generate_series(1, 100) g;
         CREATE INDEX app_t_v_unused ON app_t (v);",
    )
    .await
    .expect("app table");
    let port = monitored.port().to_string();
    let pgbench = monitored.bindir().join("pgbench");
    let libpq = ["-h", "127.0.0.1", "-U", "postgres", "-p", &port];
    run_ok(
        Command::new(&pgbench)
            .args(["-i", "-s", "1", "-q"])
            .args(libpq)
            .arg("postgres"),
    );

    let mut ingest = stack.spawn_ingest("");
    wait_listening(&mut ingest);
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 1\nintervals = {{ statement = 1, table = 1, index = 1, \
             wal = 1, bgwriter = 1, archiver = 1, settings = 1, activity = 1, lock = 1, \
             replication = 1, replication_slot = 1, progress = 1, wait = 2, standby = 1, \
             host_filesystem = 1 }}\n\
             [[collect.custom]]\nname = \"branch_balance\"\n\
             sql = \"SELECT bid::text AS branch, bbalance AS balance FROM pgbench_branches\"\n\
             labels = [\"branch\"]\nvalues = [\"balance\"]\ninterval_secs = 1\n\
             [[instances]]\nname = \"monitored\"\ndsn = \"{}\"\n",
            monitored.dsn("postgres"),
        ),
    );
    let _agent = stack.start_agent(&[]);
    let store = stack.store().await;
    let start = Instant::now();
    while run(&store, "SELECT 1 FROM metric_statement LIMIT 1")
        .await
        .expect("statement rows")
        .is_empty()
    {
        assert!(start.elapsed() < BOUND, "no statement rows after {BOUND:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Work for every family: transactions, sequential scans, an error, a slow
    // statement, a checkpoint and a WAL switch, a changed setting, a logical
    // slot, a streaming WAL receiver, and a session blocked by another.
    run_ok(
        Command::new(&pgbench)
            .args(["-c", "2", "-t", "100"])
            .args(libpq)
            .arg("postgres"),
    );
    let err = admin
        .simple_query("SELECT 1/0")
        .await
        .expect_err("division by zero");
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("22012"));
    for sql in [
        "SET log_min_duration_statement = 0",
        "SELECT count(*) FROM pg_class",
        "RESET log_min_duration_statement",
        "CHECKPOINT",
        "SELECT pg_switch_wal()",
        "ALTER SYSTEM SET work_mem = '8MB'",
        "SELECT pg_reload_conf()",
        "SELECT pg_create_logical_replication_slot('dash_slot', 'test_decoding')",
    ] {
        admin.batch_execute(sql).await.expect(sql);
    }
    let wal_dir = stack.path("received-wal");
    std::fs::create_dir(&wal_dir).expect("wal dir");
    let _receiver = ChildGuard::spawn({
        let mut c = Command::new(monitored.bindir().join("pg_receivewal"));
        c.arg("-D").arg(&wal_dir).arg("--no-loop").args(libpq);
        c
    })
    .expect("spawn pg_receivewal");
    let holder = monitored.connect("app").await.expect("holder");
    holder
        .batch_execute("BEGIN; LOCK TABLE app_t IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let waiter = monitored.connect("app").await.expect("waiter");
    let blocked = tokio::spawn(async move {
        waiter
            .query_one("SELECT count(*) FROM app_t", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
    });

    // Grafana's login: a member of the group role V24 made, nothing else.
    store
        .batch_execute(&format!(
            "CREATE ROLE {GRAFANA_LOGIN} LOGIN IN ROLE lasect_grafana;
             UPDATE instances SET labels = '{{\"env\": \"e2e\"}}' WHERE name = 'monitored';
             {ALERTS}"
        ))
        .await
        .expect("grafana login and a label");
    let (grafana, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={GRAFANA_LOGIN} dbname=lasect",
            stack.store_pg.port()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect as the grafana login");
    tokio::spawn(async move {
        let _ = conn.await;
    });

    // It reads every metric table, those of families created later too (a
    // migration adding a family without the grant fails here), and nothing secret.
    store
        .batch_execute(
            "SELECT lasect_create_metric_table('e2e_probe', 'metric_e2e_probe',
                 'time timestamptz NOT NULL, instance_id bigint NOT NULL', 'instance_id')",
        )
        .await
        .expect("a family created after V24");
    let unreadable = run(
        &store,
        "SELECT string_agg(table_name, ', ') FROM metric_families
         WHERE NOT has_table_privilege('lasect_grafana', table_name, 'SELECT')",
    )
    .await
    .expect("privileges");
    assert_eq!(
        unreadable[0][0], None,
        "metric tables lasect_grafana cannot read"
    );
    for secret in [
        "SELECT 1 FROM users",
        "SELECT 1 FROM api_tokens",
        "SELECT 1 FROM refresh_tokens",
        "SELECT 1 FROM enrollment_tokens",
        "SELECT 1 FROM agent_certificates",
        "SELECT 1 FROM audit_log",
        "SELECT 1 FROM runs",
        "SELECT 1 FROM run_results",
        "SELECT 1 FROM run_inputs",
        "SELECT dsn_ciphertext FROM instances",
        "SELECT run_dsn_ciphertext FROM instances",
        "SELECT dsn_redacted FROM instances",
        "SELECT cert_serial FROM agents",
        "SELECT acknowledged_by FROM alert_instances",
        "SELECT created_by FROM alert_silences",
        "SELECT updated_by FROM alert_rules",
        "SELECT 1 FROM alert_evaluator",
        "INSERT INTO store_settings VALUES ('x', 'y')",
    ] {
        let e = run(&grafana, secret).await.expect_err(secret);
        assert!(e.contains("42501"), "{secret}: {e}");
    }

    // Every panel, until each shows data: all values, one label, then single values.
    let start = Instant::now();
    loop {
        let mut empty = round(&grafana, &dashboards, false, "*", INTERVAL_MS).await;
        if empty.is_empty() {
            empty = round(&grafana, &dashboards, false, "env=e2e", INTERVAL_MS).await;
        }
        if empty.is_empty() {
            // Single values must run; their rows depend on which value comes first.
            round(&grafana, &dashboards, true, "*", INTERVAL_MS).await;
            break;
        }
        assert!(
            start.elapsed() < BOUND,
            "panels still without rows after {BOUND:?}: {empty:#?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Counters reset (database, tables, bgwriter, WAL): once the store holds a sample
    // lower than the one before, every panel runs again and must show no negative rate.
    for sql in [
        "SELECT pg_stat_reset()",
        "SELECT pg_stat_reset_shared('bgwriter')",
        "SELECT pg_stat_reset_shared('wal')",
    ] {
        admin.batch_execute(sql).await.expect(sql);
    }
    let start = Instant::now();
    while run(
        &store,
        "SELECT 1 FROM (SELECT m.xact_commit < lag(m.xact_commit) OVER (ORDER BY m.time) AS fell
                        FROM metric_database m WHERE m.datname = 'postgres') x
         WHERE fell LIMIT 1",
    )
    .await
    .expect("reset seen")
    .is_empty()
    {
        assert!(start.elapsed() < BOUND, "the reset never reached the store");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Emptied gauges (dead rows) may be empty now; negative values fail the round.
    round(&grafana, &dashboards, false, "*", INTERVAL_MS).await;
    round(&grafana, &dashboards, false, "*", 1000).await;

    holder.batch_execute("COMMIT").await.expect("release");
    assert_eq!(blocked.await.expect("join").expect("unblocked"), 100);
}

#[test]
fn expansion_follows_grafana() {
    let mut vars = BTreeMap::new();
    vars.insert(
        "instance".to_owned(),
        (vec!["1".to_owned(), "2".to_owned()], true),
    );
    vars.insert("one".to_owned(), (vec!["it's".to_owned()], false));
    vars.insert(
        "db".to_owned(),
        (vec!["a".to_owned(), "b'c".to_owned()], true),
    );
    let ctx = Context {
        from: "2026-01-01T00:00:00Z".into(),
        to: "2026-01-01T01:00:00Z".into(),
        from_epoch: 1_767_225_600,
        to_epoch: 1_767_229_200,
        interval_ms: INTERVAL_MS,
        vars,
    };
    assert_eq!(
        expand(
            "WHERE i IN ($instance) AND x = '$one' AND $__timeFilter(m.time)",
            &ctx
        ),
        "WHERE i IN ('1','2') AND x = 'it''s' AND m.time BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-01T01:00:00Z'"
    );
    assert_eq!(
        expand("${db:csv} ${db:sqlstring} ${instance}", &ctx),
        "a,b'c 'a','b''c' '1','2'"
    );
    assert_eq!(
        expand("$__timeGroupAlias(time, $__interval), $__interval_ms", &ctx),
        "floor(extract(epoch from time)/10)*10 AS \"time\", 10000"
    );
    assert_eq!(
        expand(
            "$__unixEpochFilter(t) AND date_bin(x, y, $__timeFrom())",
            &ctx
        ),
        "t >= 1767225600 AND t <= 1767229200 AND date_bin(x, y, '2026-01-01T00:00:00Z')"
    );
    assert_eq!(
        references("[[a]] ${b:csv} $c_d $"),
        vec![
            Reference {
                start: 0,
                end: 5,
                name: "a".into(),
                format: None
            },
            Reference {
                start: 6,
                end: 14,
                name: "b".into(),
                format: Some("csv".into())
            },
            Reference {
                start: 15,
                end: 19,
                name: "c_d".into(),
                format: None
            },
        ]
    );
}
