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
    for row in rows {
        let value: Option<f64> = row.try_get("value")?;
        let Some(value) = value.filter(|v| v.is_finite()) else {
            continue;
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
        out.push(Sample {
            instance_id: row.try_get("instance_id")?,
            agent_id: row.try_get("agent_id")?,
            key_labels,
            value,
        });
    }
    Ok(out)
}
