//! The default pack's wraparound rules (migration V27) on a real store: they compile
//! against the family list, fire per database on `database` samples whose
//! `datfrozenxid_age` / `datminmxid_age` pass the warning (2^30) and critical (1.5e9)
//! levels, hold through the hysteresis, and end once the window (5 minutes) holds only
//! samples taken after a VACUUM (FREEZE).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::fixture::fixture;
use lasect_api::alerts::evaluator::tick;
use lasect_api::alerts::rule::{Catalog, compile};
use lasect_api::alerts::store;
use serde_json::Value;
use sqlx::PgPool;

use crate::common;

const TICK: Duration = Duration::from_secs(1);

const RULES: [&str; 4] = [
    "xid_wraparound_warning",
    "xid_wraparound_critical",
    "multixact_wraparound_warning",
    "multixact_wraparound_critical",
];

/// One `database` row; `None` ages are rows of an agent older than V27.
async fn database(
    pool: &PgPool,
    instance: i64,
    at: DateTime<Utc>,
    datname: &str,
    xid_age: Option<i32>,
    mxid_age: Option<i32>,
) {
    sqlx::query(
        "INSERT INTO metric_database (time, instance_id, datid, datname, datfrozenxid_age, \
         datminmxid_age) VALUES ($1, $2, 16384, $3, $4, $5)",
    )
    .bind(at)
    .bind(instance)
    .bind(datname)
    .bind(xid_age)
    .bind(mxid_age)
    .execute(pool)
    .await
    .expect("insert database sample");
}

async fn evaluate(pool: &PgPool, at: DateTime<Utc>) {
    let report = tick(pool, TICK, Some(at), "test").await.expect("tick");
    assert!(report.evaluated, "the tick at {at} was taken");
    assert_eq!(report.errors, 0, "{report:?}");
}

/// (rule, instance, datname) of every firing alert.
async fn firing(pool: &PgPool) -> BTreeSet<(String, i64, String)> {
    let rows: Vec<(String, i64, Value)> = sqlx::query_as(
        "SELECT r.name, a.instance_id, a.key_labels FROM alert_instances a \
         JOIN alert_rules r ON r.id = a.rule_id WHERE a.state = 'firing'",
    )
    .fetch_all(pool)
    .await
    .expect("firing alerts");
    rows.into_iter()
        .map(|(rule, instance, labels)| {
            let datname = labels["datname"].as_str().unwrap_or_default().to_owned();
            (rule, instance, datname)
        })
        .collect()
}

fn alerts(list: &[(&str, i64, &str)]) -> BTreeSet<(String, i64, String)> {
    list.iter()
        .map(|&(r, i, d)| (r.to_owned(), i, d.to_owned()))
        .collect()
}

#[tokio::test]
async fn wraparound_rules_fire_per_database_and_end_after_a_freeze() {
    let f = fixture().await;
    // Only the wraparound rules of the pack evaluate, so every alert below is theirs.
    let disabled = sqlx::query(
        "UPDATE alert_rules SET enabled = false WHERE source = 'default' AND name <> ALL($1)",
    )
    .bind(RULES)
    .execute(&f.pool)
    .await
    .expect("disable the rest of the pack");
    assert!(disabled.rows_affected() >= 17);

    let catalog = Catalog::load_pool(&f.pool).await.expect("catalog");
    let rules: Vec<_> = store::load_all(&f.pool)
        .await
        .expect("rules")
        .into_iter()
        .map(|r| r.expect("readable"))
        .filter(|r| RULES.contains(&r.def.name.as_str()))
        .collect();
    assert_eq!(rules.len(), RULES.len(), "the pack holds the four rules");
    for rule in &rules {
        assert_eq!(rule.source, "default", "{}", rule.def.name);
        compile(&rule.def, &catalog).unwrap_or_else(|e| panic!("{}: {e}", rule.def.name));
    }

    let t0 = Utc::now() - TimeDelta::minutes(10);
    // prod (1): `app` past the xid warning only; `big` past both xid levels and the
    // multixact warning. staging (2): young, and a row of an older agent without ages.
    database(&f.pool, 1, t0, "app", Some(1_200_000_000), Some(10)).await;
    database(
        &f.pool,
        1,
        t0,
        "big",
        Some(1_600_000_000),
        Some(1_100_000_000),
    )
    .await;
    database(&f.pool, 2, t0, "app", Some(300_000_000), Some(5_000)).await;
    database(&f.pool, 2, t0, "old_agent", None, None).await;
    evaluate(&f.pool, t0).await;
    assert_eq!(
        firing(&f.pool).await,
        alerts(&[
            ("xid_wraparound_warning", 1, "app"),
            ("xid_wraparound_warning", 1, "big"),
            ("xid_wraparound_critical", 1, "big"),
            ("multixact_wraparound_warning", 1, "big"),
        ])
    );
    let (summary, value, severity): (String, f64, String) = sqlx::query_as(
        "SELECT annotations->>'summary', value, labels->>'severity' FROM alert_events \
         WHERE rule_name = 'xid_wraparound_critical' AND to_state = 'firing'",
    )
    .fetch_one(&f.pool)
    .await
    .expect("the critical alert's event");
    assert_eq!(value, 1_600_000_000.0);
    assert_eq!(severity, "critical");
    assert!(
        summary.contains("database big on prod") && summary.contains("1600000000"),
        "{summary}"
    );

    // Within the window the maximum still holds what t0 saw: nothing changes yet.
    let t_half = t0 + TimeDelta::seconds(200);
    database(&f.pool, 1, t_half, "big", Some(5_000_000), Some(1_000)).await;
    evaluate(&f.pool, t_half).await;
    assert_eq!(firing(&f.pool).await.len(), 4);

    // Out of the window: `big` was frozen and ends; `app` fell under the warning level but
    // not by the hysteresis (50 million): still firing.
    let t1 = t0 + TimeDelta::seconds(400);
    database(&f.pool, 1, t1, "app", Some(1_050_000_000), Some(10)).await;
    database(&f.pool, 1, t1, "big", Some(5_000_000), Some(1_000)).await;
    evaluate(&f.pool, t1).await;
    assert_eq!(
        firing(&f.pool).await,
        alerts(&[("xid_wraparound_warning", 1, "app")])
    );
    let resolved: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM alert_events WHERE to_state = 'resolved' AND labels->>'datname' = 'big'",
    )
    .fetch_one(&f.pool)
    .await
    .expect("resolutions");
    assert_eq!(resolved, 3);

    // Past the release point, `app` ends too; a multixact age at the critical level fires.
    let t2 = t1 + TimeDelta::seconds(400);
    database(
        &f.pool,
        1,
        t2,
        "app",
        Some(1_000_000_000),
        Some(1_500_000_001),
    )
    .await;
    database(&f.pool, 1, t2, "big", Some(5_000_100), Some(1_000)).await;
    evaluate(&f.pool, t2).await;
    assert_eq!(
        firing(&f.pool).await,
        alerts(&[
            ("multixact_wraparound_warning", 1, "app"),
            ("multixact_wraparound_critical", 1, "app"),
        ])
    );
}
