//! Threshold rules evaluated together (one statement per family, filters and scope) answer
//! exactly what each rule's own statement answers, on a real store: every aggregation, with
//! and without `by`, over windows of different lengths, ratios, counter resets, missing
//! values, a series that stopped, keys of agents, filters and scopes; and with the keys an
//! evaluation needs (the hysteresis bound and the active alerts) as well as with every key.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use common::fixture::fixture;
use lasect_api::alerts::query::{self, Needed, Sample};
use lasect_api::alerts::rule::{Catalog, Compiled, RuleDef, compile};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common;

/// Ten minutes of `database` samples a minute apart for three instances, `host_cpu` for
/// two agents and `activity` for two instances, with the awkward cases: a counter reset, a
/// counter missing at the first and the last sample of a series, a database dropped eight
/// minutes ago, a series whose counter stays flat.
async fn load(pool: &PgPool, now: DateTime<Utc>) {
    sqlx::query("INSERT INTO agents (id) VALUES ('db-02')")
        .execute(pool)
        .await
        .expect("agent");
    for m in 0..10i64 {
        let at = now - TimeDelta::seconds(60 * m + 5);
        let step = 10 - m;
        for (instance, datname, base) in [
            (1i64, "app", 1_000i64),
            (1, "shop", 50_000),
            (2, "app", 7),
            (2, "reports", 900),
            (3, "app", 0),
        ] {
            // Instance 1 `shop` restarted four minutes ago: its counters begin again.
            let commits = if instance == 1 && datname == "shop" && m < 4 {
                step * 3
            } else {
                base + step * step * instance
            };
            // `reports` lost its first and last blks_read sample; instance 3 stays flat.
            let read = if datname == "reports" && (m == 0 || m == 9) {
                None
            } else if instance == 3 {
                Some(40)
            } else {
                Some(base / 10 + step * 11)
            };
            if datname == "reports" && m < 8 {
                // Dropped eight minutes ago: only its two oldest samples remain.
                continue;
            }
            sqlx::query(
                "INSERT INTO metric_database (time, instance_id, datid, datname, xact_commit, \
                 blks_read, blks_hit, deadlocks, size_bytes) \
                 VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8)",
            )
            .bind(at)
            .bind(instance)
            .bind(datname)
            .bind(commits)
            .bind(read)
            .bind(commits * 9)
            .bind((m % 3 == 0).then_some(step))
            .bind(base * 1_000 + m * 17)
            .execute(pool)
            .await
            .expect("database row");
        }
        for (agent, usage) in [("db-01", 10.0 + m as f64), ("db-02", 90.0 - 2.0 * m as f64)] {
            sqlx::query(
                "INSERT INTO metric_host_cpu (time, agent_id, cpu_count, usage_percent, load1, \
                 load5, load15) VALUES ($1, $2, 4, $3, 1, 1, 1)",
            )
            .bind(at)
            .bind(agent)
            .bind(usage)
            .execute(pool)
            .await
            .expect("host_cpu row");
        }
        for instance in [1i64, 2] {
            common::insert_activity(pool, instance, at, (instance * 30 + m * 3) as f64).await;
        }
    }
}

fn rule(name: &str, condition: Value) -> RuleDef {
    let mut c = json!({"kind": "threshold", "op": ">", "threshold": 0});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), condition.as_object()) {
        c.extend(extra.clone());
    }
    serde_json::from_value(json!({"name": name, "severity": "info", "condition": c})).expect("rule")
}

fn rules() -> Vec<RuleDef> {
    let mut out = Vec::new();
    for agg in ["avg", "min", "max", "sum", "last", "rate"] {
        for (by, w) in [
            (json!(null), 300),
            (json!(["datname"]), 420),
            (json!(null), 3600),
        ] {
            let mut c = json!({"family": "database", "column": "xact_commit", "agg": agg,
                               "window_secs": w});
            if !by.is_null() {
                c["by"] = by.clone();
            }
            out.push(rule(&format!("db_{agg}_{w}"), c.clone()));
            c["column"] = json!("blks_read");
            out.push(rule(&format!("db_read_{agg}_{w}"), c.clone()));
            c["column"] = json!("blks_hit");
            c["denominator"] = json!(["blks_hit", "blks_read"]);
            out.push(rule(&format!("db_ratio_{agg}_{w}"), c));
        }
        out.push(rule(
            &format!("deadlocks_{agg}"),
            json!({"family": "database", "column": "deadlocks", "agg": agg, "by": ["datname"],
                   "window_secs": 900, "op": "<", "threshold": 3}),
        ));
        out.push(rule(
            &format!("cpu_{agg}"),
            json!({"family": "host_cpu", "column": "usage_percent", "agg": agg,
                   "window_secs": 240}),
        ));
        out.push(rule(
            &format!("activity_{agg}"),
            json!({"family": "activity", "column": "connection_use_percent", "agg": agg,
                   "window_secs": 600}),
        ));
        // Another batch: the same family behind a filter, and behind a scope.
        out.push(rule(
            &format!("filtered_{agg}"),
            json!({"family": "database", "column": "xact_commit", "agg": agg,
                   "where": [{"column": "datname", "op": "ne", "value": "shop"}],
                   "window_secs": 600}),
        ));
        let mut scoped = rule(
            &format!("scoped_{agg}"),
            json!({"family": "database", "column": "size_bytes", "agg": agg, "by": ["datname"],
                   "window_secs": 600}),
        );
        scoped.scope.selector = Some("env!=staging".to_owned());
        out.push(scoped);
    }
    out
}

fn sorted(mut s: Vec<Sample>) -> Vec<Sample> {
    s.sort_by(|a, b| {
        (a.instance_id, &a.agent_id, &a.key_labels).cmp(&(
            b.instance_id,
            &b.agent_id,
            &b.key_labels,
        ))
    });
    s
}

/// Equal keys, and values equal but for the order of a floating point sum.
fn assert_same(name: &str, alone: Vec<Sample>, together: Vec<Sample>) {
    let (alone, together) = (sorted(alone), sorted(together));
    let keys = |s: &[Sample]| -> Vec<_> {
        s.iter()
            .map(|s| (s.instance_id, s.agent_id.clone(), s.key_labels.clone()))
            .collect()
    };
    assert_eq!(keys(&alone), keys(&together), "{name}: the keys");
    for (a, t) in alone.iter().zip(&together) {
        assert!(
            (a.value - t.value).abs() <= 1e-9 * a.value.abs().max(1.0),
            "{name}: {a:?} alone, {t:?} together"
        );
    }
}

#[tokio::test]
async fn rules_evaluated_together_answer_what_each_answers_alone() {
    let f = fixture().await;
    let now = Utc::now();
    load(&f.pool, now).await;
    let catalog = Catalog::load_pool(&f.pool).await.expect("catalog");
    let defs = rules();
    let compiled: Vec<Compiled> = defs
        .iter()
        .map(|d| compile(d, &catalog).unwrap_or_else(|e| panic!("{}: {e}", d.name)))
        .collect();
    let mut batches: Vec<(query::BatchKey, Vec<usize>)> = Vec::new();
    for (n, c) in compiled.iter().enumerate() {
        let key = query::batch_key(c).expect("a threshold aggregate joins a batch");
        match batches.iter_mut().find(|(k, _)| *k == key) {
            Some((_, m)) => m.push(n),
            None => batches.push((key, vec![n])),
        }
    }
    // database (by datname or not: its series are per database), database behind the
    // filter, database in the scope, host_cpu, activity.
    assert_eq!(batches.len(), 5, "{batches:?}");
    let mut conn = f.pool.acquire().await.expect("connection");
    let mut answered = 0;
    for (_, members) in &batches {
        let rules: Vec<&Compiled> = members.iter().map(|n| &compiled[*n]).collect();
        let together = query::run_batch(&mut conn, &rules, now, &vec![None; rules.len()])
            .await
            .expect("the batch");
        assert_eq!(together.len(), rules.len());
        for (n, t) in members.iter().zip(together) {
            let alone = query::run(&mut conn, &compiled[*n], now, None)
                .await
                .expect("one rule");
            answered += usize::from(!alone.is_empty());
            assert_same(&defs[*n].name, alone, t);
        }
    }
    // Nearly every rule has keys: the comparisons are not between empty answers.
    assert!(answered + 3 >= defs.len(), "{answered} of {}", defs.len());

    // With the keys an evaluation needs: only values past the bound, plus active keys.
    let database: Vec<usize> = batches[0].1.clone();
    let mut needs: HashMap<usize, Needed> = HashMap::new();
    for (i, n) in database.iter().enumerate() {
        let mut need = Needed {
            bound: if i % 2 == 0 { 1e6 } else { 0.5 },
            ..Needed::default()
        };
        if i % 3 == 0 {
            need.add_active(Some(2), None, json!({}));
            need.add_active(Some(1), None, json!({"datname": "shop"}));
        }
        needs.insert(*n, need);
    }
    let rules: Vec<&Compiled> = database.iter().map(|n| &compiled[*n]).collect();
    let wanted: Vec<Option<&Needed>> = database.iter().map(|n| needs.get(n)).collect();
    let together = query::run_batch(&mut conn, &rules, now, &wanted)
        .await
        .expect("the batch");
    let mut filtered = 0;
    for (n, t) in database.iter().zip(together) {
        let all = query::run(&mut conn, &compiled[*n], now, None)
            .await
            .expect("one rule");
        let alone = query::run(&mut conn, &compiled[*n], now, needs.get(n))
            .await
            .expect("one rule");
        filtered += usize::from(alone.len() < all.len());
        assert_same(&defs[*n].name, alone, t);
    }
    assert!(filtered > 0, "the bounds left some keys out");
}
