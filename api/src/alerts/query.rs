//! The SQL of a compiled rule: one statement per rule, run in the store over the family
//! tables, answering one row per key: `(instance_id, agent_id, key_labels, value)`.
//!
//! Identifiers come only from [`super::rule::Compiled`] (the `'static` names of the family
//! list); everything a person wrote (the evaluation time, the window, the scope, filter
//! values) is a bind parameter: `$1` time of evaluation, `$2` window (s), `$3` one instance
//! or null, `$4` the scope's matchers (jsonb), `$5` lookback or horizon (s), `$6…` filter
//! values.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::rule::{Agg, Col, Compiled, Family, FilterOp, Op, Plan};
use super::selector;
use crate::routes::metric_families::FamilyKey;

/// One key's value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub instance_id: Option<i64>,
    pub agent_id: Option<String>,
    pub key_labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

const SCOPED: &str = "scoped AS (SELECT i.id, i.agent_id FROM instances i \
     WHERE ($3::int8 IS NULL OR i.id = $3::int8) \
     AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements($4::jsonb) m \
         WHERE (coalesce(i.labels->>(m->>'key'), '') = m->>'value') <> (m->>'op' = '=')))";

fn key_filter(family: &Family) -> &'static str {
    match family.key {
        FamilyKey::Instance => "t.instance_id IN (SELECT id FROM scoped)",
        FamilyKey::Agent => "t.agent_id IN (SELECT agent_id FROM scoped)",
    }
}

fn key_column(family: &Family) -> &'static str {
    match family.key {
        FamilyKey::Instance => "t.instance_id",
        FamilyKey::Agent => "t.agent_id",
    }
}

/// `(instance_id, agent_id)` of the output, from the key `k`.
fn key_output(family: &Family) -> &'static str {
    match family.key {
        FamilyKey::Instance => "k::int8 AS instance_id, NULL::text AS agent_id",
        FamilyKey::Agent => "NULL::int8 AS instance_id, k::text AS agent_id",
    }
}

fn filters_sql(family: &Family) -> String {
    let mut out = String::new();
    for (i, (column, op, _)) in family.filters.iter().enumerate() {
        let p = i + 6;
        out.push_str(&match op {
            FilterOp::Eq => format!(" AND t.{column}::text = $"),
            FilterOp::Ne => format!(" AND t.{column}::text IS DISTINCT FROM $"),
            FilterOp::Prefix => format!(" AND starts_with(t.{column}::text, $"),
            FilterOp::In => format!(" AND t.{column}::text = ANY(string_to_array($"),
        });
        out.push_str(&p.to_string());
        out.push_str(match op {
            FilterOp::Prefix => "::text)",
            FilterOp::In => "::text, ','))",
            FilterOp::Eq | FilterOp::Ne => "::text",
        });
    }
    out
}

fn key_labels_sql(by: &[&'static str]) -> String {
    if by.is_empty() {
        return "'{}'::jsonb".to_owned();
    }
    let pairs: Vec<String> = by
        .iter()
        .map(|b| format!("'{b}', coalesce(b_{b}::text, '')"))
        .collect();
    format!("jsonb_build_object({})", pairs.join(", "))
}

/// `w`: the family's rows in the window, with the key `k`, the `by` columns `b_…`, the other
/// series keys `s_…`, `time`, and the values `n` and `d0…`.
fn window_cte(family: &Family, values: &[(String, Col)], series: bool) -> String {
    let mut cols = vec![
        format!("{} AS k", key_column(family)),
        format!("t.{} AS time", family.time),
    ];
    cols.extend(family.by.iter().map(|b| format!("t.{b} AS b_{b}")));
    if series {
        cols.extend(family.series.iter().map(|s| format!("t.{s} AS s_{s}")));
    }
    cols.extend(
        values
            .iter()
            .map(|(alias, c)| format!("{} AS {alias}", c.expr())),
    );
    format!(
        "w AS (SELECT {cols} FROM {table} t WHERE {filter} \
         AND t.{time} > $1::timestamptz - make_interval(secs => $2::float8) \
         AND t.{time} <= $1::timestamptz{filters})",
        cols = cols.join(", "),
        time = family.time,
        table = family.table,
        filter = key_filter(family),
        filters = filters_sql(family),
    )
}

fn group(family: &Family) -> String {
    let mut g = vec!["k".to_owned()];
    g.extend(family.by.iter().map(|b| format!("b_{b}")));
    g.join(", ")
}

/// The statement of `rule`.
pub fn sql(rule: &Compiled) -> String {
    match &rule.plan {
        Plan::AgentSilent => {
            "WITH ".to_owned()
                + SCOPED
                + " SELECT NULL::int8 AS instance_id, a.id AS agent_id, '{}'::jsonb AS key_labels, \
               extract(epoch FROM $1::timestamptz - a.last_seen)::float8 AS value \
               FROM agents a WHERE a.disabled_at IS NULL \
               AND (($3::int8 IS NULL AND $4::jsonb = '[]'::jsonb) \
                    OR a.id IN (SELECT agent_id FROM scoped))"
        }
        Plan::InstanceSilent => {
            "WITH ".to_owned()
                + SCOPED
                + " SELECT i.id AS instance_id, i.agent_id AS agent_id, '{}'::jsonb AS key_labels, \
               extract(epoch FROM $1::timestamptz - coalesce(i.last_seen, i.created_at))::float8 AS value \
               FROM instances i JOIN agents a ON a.id = i.agent_id \
               WHERE a.disabled_at IS NULL AND i.id IN (SELECT id FROM scoped)"
        }
        Plan::FamilySilent { family, .. } => format!(
            "WITH {SCOPED} SELECT {out}, '{{}}'::jsonb AS key_labels, \
             extract(epoch FROM $1::timestamptz - max(time))::float8 AS value \
             FROM (SELECT {k} AS k, t.time FROM {table} t WHERE {filter} \
                   AND t.time > $1::timestamptz - make_interval(secs => $5::float8) \
                   AND t.time <= $1::timestamptz{filters}) w GROUP BY k",
            out = key_output(family),
            k = key_column(family),
            table = family.table,
            filter = key_filter(family),
            filters = filters_sql(family),
        ),
        Plan::Forecast { family, column, .. } => {
            let w = window_cte(family, &[("n".to_owned(), *column)], false);
            format!(
                "WITH {SCOPED}, {w}, \
                 agg AS (SELECT {g}, regr_slope(n, x) AS slope, regr_intercept(n, x) AS icpt, \
                         count(n) AS cnt \
                         FROM (SELECT *, extract(epoch FROM time - $1::timestamptz)::float8 AS x \
                               FROM w) q GROUP BY {g}) \
                 SELECT {out}, {labels} AS key_labels, icpt + slope * $5::float8 AS value \
                 FROM agg WHERE cnt >= 3 AND slope IS NOT NULL",
                g = group(family),
                out = key_output(family),
                labels = key_labels_sql(&family.by),
            )
        }
        Plan::Aggregate {
            family,
            agg,
            numerator,
            denominators,
            ..
        } => aggregate_sql(family, *agg, *numerator, denominators),
    }
}

fn aggregate_sql(
    family: &Family,
    agg: Option<Agg>,
    numerator: Option<Col>,
    denominators: &[Col],
) -> String {
    let g = group(family);
    let mut values: Vec<(String, Col)> = Vec::new();
    if let Some(n) = numerator {
        values.push(("n".to_owned(), n));
    }
    for (i, d) in denominators.iter().enumerate() {
        values.push((format!("d{i}"), *d));
    }
    let aliases: Vec<&str> = values.iter().map(|(a, _)| a.as_str()).collect();
    let (w, agg_cte) = match agg {
        None => (
            window_cte(family, &values, false),
            format!("agg AS (SELECT {g}, count(*)::float8 AS n FROM w GROUP BY {g})"),
        ),
        Some(a @ (Agg::Avg | Agg::Min | Agg::Max | Agg::Sum)) => {
            let f = match a {
                Agg::Avg => "avg",
                Agg::Min => "min",
                Agg::Max => "max",
                _ => "sum",
            };
            let cols: Vec<String> = aliases.iter().map(|a| format!("{f}({a}) AS {a}")).collect();
            (
                window_cte(family, &values, false),
                format!(
                    "agg AS (SELECT {g}, {} FROM w GROUP BY {g})",
                    cols.join(", ")
                ),
            )
        }
        Some(Agg::Last) => {
            // Two hash aggregations (per time, then the latest per key) rather than a window
            // over every row: no sort of the whole window on a fleet.
            let per_time: Vec<String> =
                aliases.iter().map(|a| format!("max({a}) AS {a}")).collect();
            let latest: Vec<String> = aliases
                .iter()
                .map(|a| format!("(array_agg({a} ORDER BY time DESC))[1] AS {a}"))
                .collect();
            (
                window_cte(family, &values, false),
                format!(
                    "t1 AS (SELECT {g}, time, {per_time} FROM w GROUP BY {g}, time), \
                     agg AS (SELECT {g}, {latest} FROM t1 GROUP BY {g})",
                    per_time = per_time.join(", "),
                    latest = latest.join(", "),
                ),
            )
        }
        Some(Agg::Rate) => {
            let mut series_group = vec![g.clone()];
            series_group.extend(family.series.iter().map(|s| format!("s_{s}")));
            let ends: Vec<String> = aliases
                .iter()
                .map(|a| {
                    format!(
                        "(array_agg({a} ORDER BY time DESC) FILTER (WHERE {a} IS NOT NULL))[1] \
                           AS {a}_l, \
                         (array_agg({a} ORDER BY time) FILTER (WHERE {a} IS NOT NULL))[1] AS {a}_f"
                    )
                })
                .collect();
            let rates: Vec<String> = aliases
                .iter()
                .map(|a| {
                    format!(
                        "sum((CASE WHEN {a}_l >= {a}_f THEN {a}_l - {a}_f ELSE {a}_l END) \
                         / nullif(span, 0)) AS {a}"
                    )
                })
                .collect();
            (
                window_cte(family, &values, true),
                format!(
                    "s AS (SELECT {sg}, {ends}, \
                     extract(epoch FROM max(time) - min(time))::float8 AS span \
                     FROM w GROUP BY {sg}), \
                     agg AS (SELECT {g}, {rates} FROM s GROUP BY {g})",
                    sg = series_group.join(", "),
                    ends = ends.join(", "),
                    rates = rates.join(", "),
                ),
            )
        }
    };
    let value = if denominators.is_empty() {
        "n".to_owned()
    } else {
        let sum: Vec<String> = (0..denominators.len()).map(|i| format!("d{i}")).collect();
        format!("n / nullif({}, 0)", sum.join(" + "))
    };
    format!(
        "WITH {SCOPED}, {w}, {agg_cte} \
         SELECT {out}, {labels} AS key_labels, ({value})::float8 AS value FROM agg \
         WHERE ({value}) IS NOT NULL",
        out = key_output(family),
        labels = key_labels_sql(&family.by),
    )
}

fn second_param(rule: &Compiled) -> (f64, f64) {
    match &rule.plan {
        Plan::Aggregate { window_secs, .. } => (f64::from(*window_secs), 0.0),
        Plan::Forecast {
            window_secs,
            horizon_secs,
            ..
        } => (f64::from(*window_secs), f64::from(*horizon_secs)),
        Plan::FamilySilent { lookback_secs, .. } => (0.0, f64::from(*lookback_secs)),
        Plan::AgentSilent | Plan::InstanceSilent => (0.0, 0.0),
    }
}

fn filter_values(rule: &Compiled) -> Vec<String> {
    match &rule.plan {
        Plan::Aggregate { family, .. }
        | Plan::Forecast { family, .. }
        | Plan::FamilySilent { family, .. } => {
            family.filters.iter().map(|(_, _, v)| v.clone()).collect()
        }
        Plan::AgentSilent | Plan::InstanceSilent => Vec::new(),
    }
}

/// Which keys an evaluation needs: those whose value passes `bound` (the release point of the
/// hysteresis, by the rule's operator), and the keys of the rule's pending and firing alerts
/// (their value is recorded when they end). Any other key does not hold in any state, exactly
/// as a key with no value, so it stays in the store (most keys, on a fleet).
#[derive(Debug, Clone, Default)]
pub struct Needed {
    pub bound: f64,
    /// Keys of active alerts: instance id (or -1), agent id when no instance (or empty), key
    /// labels.
    pub instances: Vec<i64>,
    pub agents: Vec<String>,
    pub key_labels: Vec<serde_json::Value>,
}

impl Needed {
    pub fn add_active(
        &mut self,
        instance_id: Option<i64>,
        agent_id: Option<&str>,
        key_labels: serde_json::Value,
    ) {
        self.instances.push(instance_id.unwrap_or(-1));
        self.agents.push(match instance_id {
            Some(_) => String::new(),
            None => agent_id.unwrap_or_default().to_owned(),
        });
        self.key_labels.push(key_labels);
    }
}

/// Runs `rule` as of `at`: every key, or with `needed` only those (see [`Needed`]).
pub async fn run(
    conn: &mut sqlx::PgConnection,
    rule: &Compiled,
    at: DateTime<Utc>,
    needed: Option<&Needed>,
) -> Result<Vec<Sample>, sqlx::Error> {
    let op = match rule.op {
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
    };
    let p = 6 + filter_values(rule).len();
    let (b, i, a, k) = (p, p + 1, p + 2, p + 3);
    // The active keys as a hashed semi-join (instance, agent, labels), not a scan per row.
    let text = format!(
        "SELECT * FROM ({}) q WHERE ${b}::float8 IS NULL OR q.value {op} ${b}::float8 \
         OR (coalesce(q.instance_id, -1), \
             CASE WHEN q.instance_id IS NULL THEN coalesce(q.agent_id, '') ELSE '' END, \
             q.key_labels) \
            IN (SELECT * FROM unnest(${i}::int8[], ${a}::text[], ${k}::jsonb[]))",
        sql(rule)
    );
    let (window, extra) = second_param(rule);
    // Identifiers from the family list only; every value is bound (module docs).
    let mut q = sqlx::query(sqlx::AssertSqlSafe(text))
        .bind(at)
        .bind(window)
        .bind(rule.scope_instance)
        .bind(selector::to_json(&rule.scope_matchers))
        .bind(extra);
    for v in filter_values(rule) {
        q = q.bind(v);
    }
    let rows = q
        .bind(needed.map(|n| n.bound))
        .bind(needed.map_or(&[][..], |n| n.instances.as_slice()))
        .bind(needed.map_or(&[][..], |n| n.agents.as_slice()))
        .bind(needed.map_or(&[][..], |n| n.key_labels.as_slice()))
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(s) = sample_of(row)? {
            out.push(s);
        }
    }
    Ok(out)
}

/// A row of a rule's statement; `None` when its value is not a finite number.
fn sample_of(row: &sqlx::postgres::PgRow) -> Result<Option<Sample>, sqlx::Error> {
    let value: Option<f64> = row.try_get("value")?;
    let Some(value) = value.filter(|v| v.is_finite()) else {
        return Ok(None);
    };
    let labels: serde_json::Value = row.try_get("key_labels")?;
    let key_labels = labels
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(Sample {
        instance_id: row.try_get("instance_id")?,
        agent_id: row.try_get("agent_id")?,
        key_labels,
        value,
    }))
}

/// What rules must share to be evaluated by one statement: the rows they read (table,
/// filters, scope) and the series grouping (`by` and the family's other series keys).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchKey {
    table: &'static str,
    filters: Vec<(&'static str, String, String)>,
    scope_instance: Option<i64>,
    scope_matchers: String,
    grouping: Vec<&'static str>,
}

/// The batch a rule can join: threshold aggregates only (events, absences and forecasts keep
/// their own statement, they are cheap or read other rows).
pub fn batch_key(rule: &Compiled) -> Option<BatchKey> {
    let Plan::Aggregate {
        family,
        agg: Some(_),
        numerator: Some(_),
        ..
    } = &rule.plan
    else {
        return None;
    };
    Some(BatchKey {
        table: family.table,
        filters: family
            .filters
            .iter()
            .map(|(c, op, v)| (*c, format!("{op:?}"), v.clone()))
            .collect(),
        scope_instance: rule.scope_instance,
        scope_matchers: selector::to_json(&rule.scope_matchers).to_string(),
        grouping: grouping(family),
    })
}

/// `by` and the other series keys, sorted: the finest grouping of a rule's rows (a rate's
/// series).
fn grouping(family: &Family) -> Vec<&'static str> {
    let mut g: Vec<&'static str> = family.by.iter().chain(&family.series).copied().collect();
    g.sort_unstable();
    g.dedup();
    g
}

/// One rule of a batch, in the statement's terms.
struct Member<'a> {
    family: &'a Family,
    agg: Agg,
    values: Vec<Col>,
    window: usize,
}

/// The statement of a batch: the family's rows read once over the longest window, statistics
/// per series and window (`ser`), then each rule rolled up to its own keys from them. Every
/// aggregate decomposes exactly: an average from sums and counts, the latest value from each
/// series' latest time, a rate from each series' first and last values, as [`sql`] computes
/// them. Binds as [`sql`], but `$2` is the windows (float8[]) and `$5` the longest; then the
/// filters, then the bounds (float8[], per rule, null: every key), then the active keys
/// (rule index, instance, agent, labels).
fn batch_sql(members: &[Member<'_>], ops: &[Op]) -> String {
    let family = members[0].family;
    let g = grouping(family);
    let gcols: String = g.iter().map(|c| format!(", g_{c}")).collect();
    let mut cols: Vec<Col> = Vec::new();
    for m in members {
        for c in &m.values {
            if !cols.contains(c) {
                cols.push(*c);
            }
        }
    }
    let col = |c: &Col| cols.iter().position(|x| x == c).unwrap_or(0);
    // Whether a row is in window `i`: a flag of `w`, computed once per row.
    let win = |i: usize| format!("in{i}");
    let windows = members.iter().map(|m| m.window).max().map_or(0, |m| m + 1);
    // Per-series columns, each once: the window pass (over the whole series) and the group.
    let mut over: Vec<String> = Vec::new();
    let mut stats: Vec<String> = Vec::new();
    let push = |v: &mut Vec<String>, s: String| {
        if !v.contains(&s) {
            v.push(s);
        }
    };
    for m in members {
        let i = m.window;
        for c in &m.values {
            let j = col(c);
            match m.agg {
                Agg::Avg => {
                    push(
                        &mut stats,
                        format!("sum(c{j}) FILTER (WHERE {}) AS as{j}_{i}", win(i)),
                    );
                    push(
                        &mut stats,
                        format!("count(c{j}) FILTER (WHERE {}) AS ac{j}_{i}", win(i)),
                    );
                }
                Agg::Min | Agg::Max | Agg::Sum => {
                    let (f, p) = agg_fn(m.agg);
                    push(
                        &mut stats,
                        format!("{f}(c{j}) FILTER (WHERE {}) AS {p}{j}_{i}", win(i)),
                    );
                }
                Agg::Last => {
                    push(
                        &mut over,
                        format!("max(time) FILTER (WHERE {}) OVER s AS tm{i}", win(i)),
                    );
                    push(&mut stats, format!("max(tm{i}) AS tm{i}"));
                    push(
                        &mut stats,
                        format!("max(c{j}) FILTER (WHERE time = tm{i}) AS lv{j}_{i}"),
                    );
                }
                Agg::Rate => {
                    for (name, f) in [("tl", "max"), ("tf", "min")] {
                        push(
                            &mut over,
                            format!(
                                "{f}(time) FILTER (WHERE c{j} IS NOT NULL AND {}) OVER s \
                                 AS {name}{j}_{i}",
                                win(i)
                            ),
                        );
                    }
                    push(
                        &mut stats,
                        format!("max(c{j}) FILTER (WHERE time = tl{j}_{i}) AS rl{j}_{i}"),
                    );
                    push(
                        &mut stats,
                        format!("max(c{j}) FILTER (WHERE time = tf{j}_{i}) AS rf{j}_{i}"),
                    );
                    push(
                        &mut stats,
                        format!(
                            "extract(epoch FROM max(time) FILTER (WHERE {w}) \
                             - min(time) FILTER (WHERE {w}))::float8 AS sp{i}",
                            w = win(i)
                        ),
                    );
                }
            }
        }
    }
    let mut w_cols = vec![
        format!("{} AS k", key_column(family)),
        format!("t.{} AS time", family.time),
    ];
    w_cols.extend(g.iter().map(|c| format!("t.{c} AS g_{c}")));
    w_cols.extend(
        cols.iter()
            .enumerate()
            .map(|(j, c)| format!("{} AS c{j}", c.expr())),
    );
    w_cols.extend((0..windows).map(|i| {
        format!(
            "t.{} > $1::timestamptz - make_interval(secs => ($2::float8[])[{}]) AS in{i}",
            family.time,
            i + 1
        )
    }));
    let mut text = format!(
        "WITH {SCOPED}, w AS (SELECT {w_cols} FROM {table} t WHERE {filter} \
         AND t.{time} > $1::timestamptz - make_interval(secs => $5::float8) \
         AND t.{time} <= $1::timestamptz{filters})",
        w_cols = w_cols.join(", "),
        table = family.table,
        filter = key_filter(family),
        time = family.time,
        filters = filters_sql(family),
    );
    let source = if over.is_empty() {
        "w".to_owned()
    } else {
        text.push_str(&format!(
            ", p AS (SELECT w.*, {} FROM w WINDOW s AS (PARTITION BY k{gcols}))",
            over.join(", ")
        ));
        "p".to_owned()
    };
    text.push_str(&format!(
        ", ser AS MATERIALIZED (SELECT k{gcols}, {} FROM {source} GROUP BY k{gcols})",
        stats.join(", ")
    ));
    let nb = 6 + family.filters.len();
    let (nr, ni, na, nk) = (nb + 1, nb + 2, nb + 3, nb + 4);
    let mut parts = Vec::new();
    for (r, m) in members.iter().enumerate() {
        let i = m.window;
        let by: String = m.family.by.iter().map(|b| format!(", g_{b}")).collect();
        let rolled: Vec<String> = m
            .values
            .iter()
            .enumerate()
            .map(|(v, c)| {
                let j = col(c);
                let e = match m.agg {
                    Agg::Avg => format!("sum(as{j}_{i}) / nullif(sum(ac{j}_{i}), 0)"),
                    Agg::Min | Agg::Max | Agg::Sum => {
                        let (f, p) = agg_fn(m.agg);
                        format!("{f}({p}{j}_{i})")
                    }
                    Agg::Last => format!("max(lv{j}_{i}) FILTER (WHERE tm{i} = gt)"),
                    Agg::Rate => format!(
                        "sum((CASE WHEN rl{j}_{i} >= rf{j}_{i} THEN rl{j}_{i} - rf{j}_{i} \
                         ELSE rl{j}_{i} END) / nullif(sp{i}, 0))"
                    ),
                };
                format!("{e} AS v{v}")
            })
            .collect();
        let from = if m.agg == Agg::Last {
            format!("(SELECT ser.*, max(tm{i}) OVER (PARTITION BY k{by}) AS gt FROM ser) s")
        } else {
            "ser".to_owned()
        };
        let value = if m.values.len() == 1 {
            "v0".to_owned()
        } else {
            let d: Vec<String> = (1..m.values.len()).map(|v| format!("v{v}")).collect();
            format!("v0 / nullif({}, 0)", d.join(" + "))
        };
        let labels: Vec<String> = m
            .family
            .by
            .iter()
            .map(|b| format!("'{b}', coalesce(g_{b}::text, '')"))
            .collect();
        let labels = if labels.is_empty() {
            "'{}'::jsonb".to_owned()
        } else {
            format!("jsonb_build_object({})", labels.join(", "))
        };
        let op = op_sql(ops[r]);
        parts.push(format!(
            "SELECT * FROM (SELECT {r}::int4 AS rule, {out}, {labels} AS key_labels, \
             ({value})::float8 AS value \
             FROM (SELECT k{by}, {rolled} FROM {from} GROUP BY k{by}) a) q \
             WHERE q.value IS NOT NULL AND ((${nb}::float8[])[{n}] IS NULL \
               OR q.value {op} (${nb}::float8[])[{n}] \
               OR ({r}::int4, coalesce(q.instance_id, -1), \
                   CASE WHEN q.instance_id IS NULL THEN coalesce(q.agent_id, '') ELSE '' END, \
                   q.key_labels) \
                  IN (SELECT * FROM unnest(${nr}::int4[], ${ni}::int8[], ${na}::text[], \
                      ${nk}::jsonb[])))",
            out = key_output(m.family),
            rolled = rolled.join(", "),
            n = r + 1,
        ));
    }
    text.push(' ');
    text.push_str(&parts.join(" UNION ALL "));
    text
}

fn agg_fn(agg: Agg) -> (&'static str, &'static str) {
    match agg {
        Agg::Min => ("min", "mn"),
        Agg::Max => ("max", "mx"),
        _ => ("sum", "sm"),
    }
}

fn op_sql(op: Op) -> &'static str {
    match op {
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
    }
}

/// Runs `rules`, all of one [`batch_key`], in one statement as of `at`: for each rule what
/// [`run`] answers (`needed[r]` as there).
pub async fn run_batch(
    conn: &mut sqlx::PgConnection,
    rules: &[&Compiled],
    at: DateTime<Utc>,
    needed: &[Option<&Needed>],
) -> Result<Vec<Vec<Sample>>, sqlx::Error> {
    let mut windows: Vec<f64> = Vec::new();
    let mut members = Vec::with_capacity(rules.len());
    for rule in rules {
        let Plan::Aggregate {
            family,
            agg: Some(agg),
            numerator: Some(numerator),
            denominators,
            window_secs,
        } = &rule.plan
        else {
            return Err(sqlx::Error::Protocol(
                "a rule that is not a threshold aggregate in a batch".to_owned(),
            ));
        };
        let secs = f64::from(*window_secs);
        let window = match windows.iter().position(|w| *w == secs) {
            Some(i) => i,
            None => {
                windows.push(secs);
                windows.len() - 1
            }
        };
        let mut values = vec![*numerator];
        values.extend(denominators.iter().copied());
        members.push(Member {
            family,
            agg: *agg,
            values,
            window,
        });
    }
    let Some(first) = rules.first() else {
        return Ok(Vec::new());
    };
    let ops: Vec<Op> = rules.iter().map(|r| r.op).collect();
    let text = batch_sql(&members, &ops);
    let longest = windows.iter().copied().fold(0.0, f64::max);
    let mut bounds = Vec::with_capacity(rules.len());
    let (mut idx, mut instances, mut agents, mut labels) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..rules.len() {
        let n = needed.get(r).copied().flatten();
        bounds.push(n.map(|n| n.bound));
        if let Some(n) = n {
            let r = i32::try_from(r).unwrap_or(i32::MAX);
            idx.extend(std::iter::repeat_n(r, n.instances.len()));
            instances.extend_from_slice(&n.instances);
            agents.extend_from_slice(&n.agents);
            labels.extend_from_slice(&n.key_labels);
        }
    }
    // Identifiers from the family list only; every value is bound (module docs).
    let mut q = sqlx::query(sqlx::AssertSqlSafe(text))
        .bind(at)
        .bind(&windows)
        .bind(first.scope_instance)
        .bind(selector::to_json(&first.scope_matchers))
        .bind(longest);
    for v in filter_values(first) {
        q = q.bind(v);
    }
    let rows = q
        .bind(&bounds)
        .bind(&idx)
        .bind(&instances)
        .bind(&agents)
        .bind(&labels)
        .fetch_all(&mut *conn)
        .await?;
    let mut out: Vec<Vec<Sample>> = vec![Vec::new(); rules.len()];
    for row in &rows {
        let r: i32 = row.try_get("rule")?;
        if let (Some(s), Some(slot)) = (
            sample_of(row)?,
            usize::try_from(r).ok().and_then(|r| out.get_mut(r)),
        ) {
            slot.push(s);
        }
    }
    Ok(out)
}
