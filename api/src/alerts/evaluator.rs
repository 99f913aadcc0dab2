//! The evaluation round: every enabled rule run once in the store, states moved, every
//! transition recorded in `alert_events`, all in one transaction.
//!
//! Exactly once across API processes: the round begins by claiming the tick in the
//! `alert_evaluator` row (`last_tick` at least 0.9 interval old). A second process claiming at
//! the same moment waits on the row lock and then finds the tick taken; one whose round fails
//! rolls the claim back with everything else, so the next tick of any process runs it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::metrics::AlertMetrics;
use super::query::{self, Sample};
use super::rule::{Catalog, Compiled, RuleError, compile};
use super::selector::{self, Matcher};
use super::state::{self, Limits, State};
use super::store::{self, StoredRule};
use super::template;

/// What a round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// False: another process (or this one) had evaluated within the interval.
    pub evaluated: bool,
    pub rules: usize,
    /// Rules whose evaluation failed (their `last_error` says why).
    pub errors: usize,
    pub transitions: usize,
}

/// How long one rule's statement may run.
const RULE_TIMEOUT: &str = "10s";

/// The round's `work_mem` (its transaction only).
const ROUND_WORK_MEM: &str = "64MB";

#[derive(Debug, Clone)]
pub(crate) struct InstanceInfo {
    pub name: String,
    pub agent_id: String,
    pub labels: BTreeMap<String, String>,
}

pub(crate) fn string_labels(v: &serde_json::Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) async fn load_instances(
    conn: &mut sqlx::PgConnection,
) -> Result<HashMap<i64, InstanceInfo>, sqlx::Error> {
    let rows: Vec<(i64, String, String, serde_json::Value)> =
        sqlx::query_as("SELECT id, name, agent_id, labels FROM instances")
            .fetch_all(conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, agent_id, labels)| {
            (
                id,
                InstanceInfo {
                    name,
                    agent_id,
                    labels: string_labels(&labels),
                },
            )
        })
        .collect())
}

pub(crate) async fn active_silences(
    conn: &mut sqlx::PgConnection,
    at: DateTime<Utc>,
) -> Result<Vec<Vec<Matcher>>, sqlx::Error> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT matchers FROM alert_silences \
         WHERE removed_at IS NULL AND starts_at <= $1 AND ends_at > $1",
    )
    .bind(at)
    .fetch_all(conn)
    .await?;
    // Written after parsing; one that no longer parses silences nothing.
    Ok(rows
        .iter()
        .filter_map(|m| selector::parse(m).ok())
        .filter(|m| !m.is_empty())
        .collect())
}

/// One alert's identity and labels, from a sample.
pub(crate) struct Keyed {
    pub key: String,
    pub instance_id: Option<i64>,
    pub agent_id: Option<String>,
    pub key_labels: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

pub(crate) fn keyed(
    rule: &StoredRule,
    sample: &Sample,
    instances: &HashMap<i64, InstanceInfo>,
) -> Keyed {
    let info = sample.instance_id.and_then(|id| instances.get(&id));
    let agent_id = sample
        .agent_id
        .clone()
        .or_else(|| info.map(|i| i.agent_id.clone()));
    let scope = match (sample.instance_id, &agent_id) {
        (Some(id), _) => format!("i{id}"),
        (None, Some(a)) => format!("a{a}"),
        (None, None) => "-".to_owned(),
    };
    let key = format!(
        "{scope}|{}",
        serde_json::to_string(&sample.key_labels).unwrap_or_default()
    );
    let mut labels = info.map(|i| i.labels.clone()).unwrap_or_default();
    labels.extend(rule.def.labels.clone());
    labels.extend(sample.key_labels.clone());
    labels.insert("alertname".to_owned(), rule.def.name.clone());
    labels.insert("severity".to_owned(), rule.def.severity.as_str().to_owned());
    if let Some(i) = info {
        labels.insert("instance".to_owned(), i.name.clone());
    }
    if let Some(a) = &agent_id {
        labels.insert("agent".to_owned(), a.clone());
    }
    Keyed {
        key,
        instance_id: sample.instance_id,
        agent_id,
        key_labels: sample.key_labels.clone(),
        labels,
    }
}

pub(crate) fn annotations(
    rule: &StoredRule,
    threshold: f64,
    value: Option<f64>,
    labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let ctx = template::Context {
        value,
        threshold,
        rule: &rule.def.name,
        severity: rule.def.severity.as_str(),
        instance: labels.get("instance").map_or("", String::as_str),
        agent: labels.get("agent").map_or("", String::as_str),
        labels: Some(labels),
    };
    rule.def
        .annotations
        .iter()
        .map(|(k, t)| (k.clone(), template::render(t, &ctx)))
        .collect()
}

#[derive(sqlx::FromRow)]
struct Existing {
    key: String,
    state: String,
    since: DateTime<Utc>,
    instance_id: Option<i64>,
    agent_id: Option<String>,
    key_labels: serde_json::Value,
    labels: serde_json::Value,
}

/// Runs one round as of `at` (`None`: the store's clock), if the tick is not taken.
pub async fn tick(
    pool: &PgPool,
    interval: Duration,
    at: Option<DateTime<Utc>>,
    holder: &str,
) -> Result<TickReport, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let claimed: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE alert_evaluator SET last_tick = coalesce($1, now()), holder = $2 \
         WHERE last_tick <= coalesce($1, now()) - make_interval(secs => $3) \
         RETURNING last_tick",
    )
    .bind(at)
    .bind(holder)
    .bind(interval.as_secs_f64() * 0.9)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(at) = claimed else {
        tx.rollback().await?;
        return Ok(TickReport::default());
    };
    // The round holds the lease until it commits and is the only writer of alert_events, so
    // the events it writes are exactly those above this id.
    let events_before: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM alert_events")
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query("SELECT set_config('statement_timeout', $1, true)")
        .bind(RULE_TIMEOUT)
        .execute(&mut *tx)
        .await?;
    // A batch of rules sorts a family's window once (300,000 rows of `database` for 1,000
    // instances over 5 minutes): in memory rather than through temporary files.
    sqlx::query("SELECT set_config('work_mem', $1, true)")
        .bind(ROUND_WORK_MEM)
        .execute(&mut *tx)
        .await?;
    let catalog = Catalog::load(&mut *tx).await?;
    let instances = load_instances(&mut tx).await?;
    let silences = active_silences(&mut tx, at).await?;
    let rules = store::load_all(&mut *tx).await?;
    let mut report = TickReport {
        evaluated: true,
        ..TickReport::default()
    };
    let compiled: Vec<Option<Result<Compiled, RuleError>>> = rules
        .iter()
        .map(|r| r.as_ref().ok().map(|r| compile(&r.def, &catalog)))
        .collect();
    let needed = needed_keys(&mut tx, &rules, &compiled).await?;
    let mut batched = evaluate_batches(&mut tx, &rules, &compiled, &needed, at).await?;
    for (n, (rule, compiled)) in rules.into_iter().zip(compiled).enumerate() {
        let rule = match rule {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "alert rule unreadable; skipped");
                report.errors += 1;
                continue;
            }
        };
        report.rules += 1;
        let compiled = match compiled {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                record_error(&mut tx, rule.id, at, &e.to_string()).await?;
                report.errors += 1;
                continue;
            }
            None => continue,
        };
        let samples = if !rule.def.enabled {
            // A disabled rule ends its alerts.
            Vec::new()
        } else if let Some(s) = batched.remove(&n) {
            s
        } else {
            let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
            match query::run(&mut savepoint, &compiled, at, needed.get(&n)).await {
                Ok(s) => {
                    savepoint.commit().await?;
                    s
                }
                Err(e) => {
                    savepoint.rollback().await?;
                    tracing::warn!(rule = %rule.def.name, error = %e, "alert rule evaluation failed");
                    record_error(
                        &mut tx,
                        rule.id,
                        at,
                        "the rule's query failed (see the API log)",
                    )
                    .await?;
                    report.errors += 1;
                    continue;
                }
            }
        };
        report.transitions += apply(
            &mut tx, &rule, &compiled, &samples, at, &instances, &silences,
        )
        .await?;
        sqlx::query(
            "UPDATE alert_rules SET last_evaluated_at = $2, last_error = NULL WHERE id = $1",
        )
        .bind(rule.id)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    }
    if report.transitions > 0 {
        let last: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM alert_events")
            .fetch_one(&mut *tx)
            .await?;
        super::live::announce(&mut tx, events_before, last).await?;
    }
    tx.commit().await?;
    Ok(report)
}

/// For each enabled rule (by its index in the round): the release point of its hysteresis and
/// the keys of its pending and firing alerts, which its statement must answer (see
/// [`query::Needed`]).
async fn needed_keys(
    tx: &mut sqlx::PgConnection,
    rules: &[Result<StoredRule, store::LoadError>],
    compiled: &[Option<Result<Compiled, RuleError>>],
) -> Result<HashMap<usize, query::Needed>, sqlx::Error> {
    let active: Vec<(i64, Option<i64>, Option<String>, serde_json::Value)> = sqlx::query_as(
        "SELECT rule_id, instance_id, agent_id, key_labels FROM alert_instances \
         WHERE state IN ('pending', 'firing')",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut by_rule: HashMap<i64, usize> = HashMap::new();
    let mut needed = HashMap::new();
    for (n, (rule, compiled)) in rules.iter().zip(compiled).enumerate() {
        if let (Ok(rule), Some(Ok(c))) = (rule, compiled)
            && rule.def.enabled
        {
            by_rule.insert(rule.id, n);
            needed.insert(
                n,
                query::Needed {
                    bound: c.op.release(c.threshold, rule.def.hysteresis),
                    ..query::Needed::default()
                },
            );
        }
    }
    for (rule_id, instance, agent, labels) in active {
        if let Some(n) = by_rule.get(&rule_id).and_then(|n| needed.get_mut(n)) {
            n.add_active(instance, agent.as_deref(), labels);
        }
    }
    Ok(needed)
}

/// Runs the enabled threshold rules that read the same rows together, one statement per
/// batch (the family's window read once rather than once per rule), and returns their
/// samples by rule index. A batch whose statement fails is left out: its rules then run one
/// by one, so a failure stays the failing rule's own.
async fn evaluate_batches(
    tx: &mut sqlx::PgConnection,
    rules: &[Result<StoredRule, store::LoadError>],
    compiled: &[Option<Result<Compiled, RuleError>>],
    needed: &HashMap<usize, query::Needed>,
    at: DateTime<Utc>,
) -> Result<HashMap<usize, Vec<Sample>>, sqlx::Error> {
    let mut batches: Vec<(query::BatchKey, Vec<usize>)> = Vec::new();
    for (n, (rule, c)) in rules.iter().zip(compiled).enumerate() {
        let (Ok(rule), Some(Ok(c))) = (rule, c) else {
            continue;
        };
        if !rule.def.enabled {
            continue;
        }
        let Some(key) = query::batch_key(c) else {
            continue;
        };
        match batches.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(n),
            None => batches.push((key, vec![n])),
        }
    }
    let mut out = HashMap::new();
    for (_, members) in batches.into_iter().filter(|(_, m)| m.len() > 1) {
        let batch: Vec<&Compiled> = members
            .iter()
            .filter_map(|n| compiled[*n].as_ref()?.as_ref().ok())
            .collect();
        let wanted: Vec<Option<&query::Needed>> = members.iter().map(|n| needed.get(n)).collect();
        let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
        match query::run_batch(&mut savepoint, &batch, at, &wanted).await {
            Ok(samples) => {
                savepoint.commit().await?;
                out.extend(members.into_iter().zip(samples));
            }
            Err(e) => {
                savepoint.rollback().await?;
                tracing::warn!(rules = members.len(), error = %e,
                    "alert rules evaluated together failed; evaluating them one by one");
            }
        }
    }
    Ok(out)
}

async fn record_error(
    tx: &mut sqlx::PgConnection,
    rule_id: i64,
    at: DateTime<Utc>,
    message: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE alert_rules SET last_evaluated_at = $2, last_error = $3 WHERE id = $1")
        .bind(rule_id)
        .bind(at)
        .bind(message)
        .execute(tx)
        .await?;
    Ok(())
}

fn limits(rule: &StoredRule, compiled: &Compiled) -> Limits {
    Limits {
        op: compiled.op,
        threshold: compiled.threshold,
        hysteresis: rule.def.hysteresis,
        for_secs: rule.def.for_secs,
    }
}

/// One alert row of a round: what [`upsert_all`] writes, and the transition it makes.
struct Written {
    k: Keyed,
    from: State,
    to: State,
    since: DateTime<Utc>,
    value: Option<f64>,
    notes: BTreeMap<String, String>,
}

/// Moves the states of `rule`'s alerts with this round's samples; returns the transitions.
async fn apply(
    tx: &mut sqlx::PgConnection,
    rule: &StoredRule,
    compiled: &Compiled,
    samples: &[Sample],
    at: DateTime<Utc>,
    instances: &HashMap<i64, InstanceInfo>,
    silences: &[Vec<Matcher>],
) -> Result<usize, sqlx::Error> {
    let existing: Vec<Existing> = sqlx::query_as(
        "SELECT key, state, since, instance_id, agent_id, key_labels, labels \
         FROM alert_instances WHERE rule_id = $1",
    )
    .bind(rule.id)
    .fetch_all(&mut *tx)
    .await?;
    let mut existing: HashMap<String, Existing> =
        existing.into_iter().map(|e| (e.key.clone(), e)).collect();
    let limits = limits(rule, compiled);
    let mut rows: Vec<Written> = Vec::new();
    for sample in samples {
        let k = keyed(rule, sample, instances);
        let prev = existing.remove(&k.key);
        let (state, since) = prev.as_ref().map_or((State::Inactive, at), |p| {
            (State::parse(&p.state).unwrap_or(State::Inactive), p.since)
        });
        let (next, next_since) = state::next(state, since, Some(sample.value), &limits, at);
        if prev.is_none() && next == State::Inactive {
            continue;
        }
        let notes = annotations(rule, compiled.threshold, Some(sample.value), &k.labels);
        rows.push(Written {
            k,
            from: state,
            to: next,
            since: next_since,
            value: Some(sample.value),
            notes,
        });
    }
    // Keys with no value this round: the condition does not hold for them.
    for (_, prev) in existing {
        let state = State::parse(&prev.state).unwrap_or(State::Inactive);
        if !state.active() {
            continue;
        }
        let (next, next_since) = state::next(state, prev.since, None, &limits, at);
        let k = Keyed {
            key: prev.key.clone(),
            instance_id: prev.instance_id,
            agent_id: prev.agent_id.clone(),
            key_labels: string_labels(&prev.key_labels),
            labels: string_labels(&prev.labels),
        };
        let notes = annotations(rule, compiled.threshold, None, &k.labels);
        rows.push(Written {
            k,
            from: state,
            to: next,
            since: next_since,
            value: None,
            notes,
        });
    }
    let ids = upsert_all(tx, rule.id, &rows, at).await?;
    let mut transitions = 0;
    for row in rows.iter().filter(|r| r.to != r.from) {
        let Some(id) = ids.get(&row.k.key) else {
            continue;
        };
        transitions += 1;
        event(
            tx, rule, compiled, *id, &row.k, row.from, row.to, row.value, at, &row.notes, silences,
        )
        .await?;
    }
    Ok(transitions)
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// Writes a rule's alert rows of the round in one statement (on a fleet most of them only
/// take the round's value); returns their ids by key.
async fn upsert_all(
    tx: &mut sqlx::PgConnection,
    rule_id: i64,
    rows: &[Written],
    at: DateTime<Utc>,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    // Two samples of one key (a `by` value NULL and another empty) write the key once, the
    // later one, as one statement cannot update a row twice.
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        last.insert(r.k.key.as_str(), i);
    }
    let rows: Vec<&Written> = rows
        .iter()
        .enumerate()
        .filter(|(i, r)| last.get(r.k.key.as_str()) == Some(i))
        .map(|(_, r)| r)
        .collect();
    let returned: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO alert_instances (rule_id, key, instance_id, agent_id, key_labels, state, \
         since, last_value, last_evaluated, labels, annotations) \
         SELECT $1, u.key, u.instance_id, u.agent_id, u.key_labels, u.state, u.since, \
                u.last_value, $2, u.labels, u.annotations \
         FROM unnest($3::text[], $4::int8[], $5::text[], $6::jsonb[], $7::text[], \
                     $8::timestamptz[], $9::float8[], $10::jsonb[], $11::jsonb[]) \
              AS u(key, instance_id, agent_id, key_labels, state, since, last_value, labels, \
                   annotations) \
         ON CONFLICT (rule_id, key) DO UPDATE SET state = excluded.state, \
           since = excluded.since, last_value = excluded.last_value, \
           last_evaluated = excluded.last_evaluated, labels = excluded.labels, \
           annotations = excluded.annotations, \
           acknowledged_by = CASE WHEN excluded.state IN ('pending', 'firing') \
             THEN alert_instances.acknowledged_by END, \
           acknowledged_at = CASE WHEN excluded.state IN ('pending', 'firing') \
             THEN alert_instances.acknowledged_at END \
         RETURNING key, id",
    )
    .bind(rule_id)
    .bind(at)
    .bind(rows.iter().map(|r| r.k.key.clone()).collect::<Vec<_>>())
    // An instance removed since the sample was read no longer exists.
    .bind(rows.iter().map(|r| r.k.instance_id).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.k.agent_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|r| to_json(&r.k.key_labels))
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.to.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.since).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.value).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| to_json(&r.k.labels))
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| to_json(&r.notes)).collect::<Vec<_>>())
    .fetch_all(tx)
    .await?;
    Ok(returned.into_iter().collect())
}

#[allow(clippy::too_many_arguments)]
async fn event(
    tx: &mut sqlx::PgConnection,
    rule: &StoredRule,
    compiled: &Compiled,
    alert_id: i64,
    k: &Keyed,
    from: State,
    to: State,
    value: Option<f64>,
    at: DateTime<Utc>,
    notes: &BTreeMap<String, String>,
    silences: &[Vec<Matcher>],
) -> Result<(), sqlx::Error> {
    let silenced = silences.iter().any(|m| selector::matches_all(m, &k.labels));
    sqlx::query(
        "INSERT INTO alert_events (at, alert_id, rule_id, rule_name, severity, key, instance_id, \
         agent_id, from_state, to_state, value, threshold, labels, annotations, silenced) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(at)
    .bind(alert_id)
    .bind(rule.id)
    .bind(&rule.def.name)
    .bind(rule.def.severity.as_str())
    .bind(&k.key)
    .bind(k.instance_id)
    .bind(&k.agent_id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(value)
    .bind(compiled.threshold)
    .bind(serde_json::to_value(&k.labels).unwrap_or_default())
    .bind(serde_json::to_value(notes).unwrap_or_default())
    .bind(silenced)
    .execute(tx)
    .await?;
    Ok(())
}

/// The background task of `lasect-api serve`: a round every `interval`.
pub async fn run(pool: PgPool, interval: Duration, metrics: AlertMetrics) {
    let holder = format!("pid {}", std::process::id());
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let started = Instant::now();
        match tick(&pool, interval, None, &holder).await {
            Ok(r) if r.evaluated => {
                metrics.evaluated(started.elapsed(), r.errors, r.transitions);
            }
            Ok(_) => metrics.skipped(),
            Err(e) => {
                tracing::warn!(error = %e, "alert evaluation round failed; next tick retries");
                metrics.failed();
            }
        }
    }
}
