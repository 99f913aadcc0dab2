//! Custom SQL metrics against a real server: values and labels as
//! configured, in the DSN's database and in another one; every query runs
//! read-only and bounded by its statement_timeout, and each failure is one
//! collector event while the other metrics go on.

use std::time::Duration;

use lasect_agent::collect::{Collector, Tick};
use lasect_agent::config::{CollectConfig, Dsn, InstanceConfig};
use lasect_agent::custom_config::CustomMetricConfig;
use lasect_proto::v1::sample::Family;
use lasect_proto::v1::{CollectorEvent, CustomMetricValue};
use lasect_testkit::{PgCluster, PgOptions};

fn metric(name: &str, sql: &str, values: &[&str]) -> CustomMetricConfig {
    CustomMetricConfig {
        name: name.into(),
        sql: sql.into(),
        labels: vec![],
        values: values.iter().map(|v| (*v).to_owned()).collect(),
        interval_secs: 60,
        timeout_secs: 5,
        databases: vec![],
    }
}

fn custom_values(tick: &Tick) -> Vec<&CustomMetricValue> {
    tick.batch
        .samples
        .iter()
        .filter_map(|s| match &s.family {
            Some(Family::Custom(c)) => Some(c.values.iter()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn events(tick: &Tick) -> Vec<&CollectorEvent> {
    tick.batch
        .samples
        .iter()
        .filter_map(|s| match &s.family {
            // The server has no pg_stat_statements: `statement` reports too.
            Some(Family::CollectorEvent(e)) if e.collector.starts_with("custom:") => Some(e),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn custom_metrics_run_read_only_bounded_and_fail_alone() {
    let pg = PgCluster::start(PgOptions::default()).expect("pg");
    let admin = pg.connect("postgres").await.expect("connect");
    admin
        .batch_execute(
            "CREATE SEQUENCE s; CREATE TABLE t (k text, v int);
             INSERT INTO t VALUES ('a', 1), ('a', 2), ('b', 5);",
        )
        .await
        .expect("schema");
    pg.create_database("app").await.expect("app");
    pg.connect("app")
        .await
        .expect("connect app")
        .batch_execute("CREATE TABLE app_t (id int); INSERT INTO app_t VALUES (1), (2), (3)")
        .await
        .expect("app table");

    let mut by_key = metric(
        "by_key",
        "SELECT k, sum(v) AS total FROM t GROUP BY k",
        &["total"],
    );
    by_key.labels = vec!["k".into()];
    let mut in_app = metric("in_app", "SELECT count(*) AS n FROM app_t", &["n"]);
    in_app.databases = vec!["app".into()];
    let mut slow = metric("slow", "SELECT 1 AS n FROM pg_sleep(3)", &["n"]);
    slow.timeout_secs = 1;
    let collect = CollectConfig {
        host: false,
        custom: vec![
            by_key,
            in_app,
            metric("writes", "SELECT nextval('s') AS n", &["n"]),
            metric("second_statement", "SELECT 1 AS n; DROP TABLE t", &["n"]),
            slow,
            metric("missing", "SELECT 1 AS n", &["m"]),
        ],
        ..CollectConfig::default()
    };
    let instance = InstanceConfig {
        name: "main".into(),
        dsn: Dsn::new(pg.dsn("postgres")),
        run_dsn: None,
        allow_privileged_runs: false,
        intervals: Default::default(),
        max_connections: None,
        databases: None,
    };
    let mut collector = Collector::new(&[instance], &collect).expect("collector");
    let tick = collector
        .tick_at(tokio::time::Instant::now() + Duration::from_secs(3600))
        .await;
    assert!(tick.failures.is_empty(), "{:?}", tick.failures);

    let mut got: Vec<(String, String, String, Option<f64>)> = custom_values(&tick)
        .iter()
        .map(|v| {
            let labels: Vec<String> = v
                .labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect();
            (
                v.metric.clone(),
                v.datname.clone(),
                labels.join(","),
                v.value,
            )
        })
        .collect();
    got.sort_by(|a, b| (&a.0, &a.2).cmp(&(&b.0, &b.2)));
    assert_eq!(
        got,
        [
            ("by_key".into(), "postgres".into(), "k=a".into(), Some(3.0)),
            ("by_key".into(), "postgres".into(), "k=b".into(), Some(5.0)),
            ("in_app".into(), "app".into(), String::new(), Some(3.0)),
        ]
    );

    let mut failures: Vec<(&str, &str, &str)> = events(&tick)
        .iter()
        .map(|e| (e.collector.as_str(), e.kind.as_str(), e.sqlstate.as_str()))
        .collect();
    failures.sort();
    assert_eq!(
        failures,
        [
            ("custom:missing", "query", ""),
            // A subquery cannot hold a second statement.
            ("custom:second_statement", "query", "42601"),
            // statement_timeout of the metric's own transaction.
            ("custom:slow", "timeout", "57014"),
            // The transaction is READ ONLY.
            ("custom:writes", "query", "25006"),
        ]
    );
    let missing = events(&tick)
        .into_iter()
        .find(|e| e.collector == "custom:missing")
        .expect("missing event");
    assert!(
        missing
            .message
            .contains("column \"m\" is not in the result (columns: n)"),
        "{}",
        missing.message
    );

    // Nothing was written, and the session is usable afterwards.
    let row = admin
        .query_one("SELECT is_called FROM s", &[])
        .await
        .expect("sequence");
    assert!(!row.get::<_, bool>(0), "nextval ran");
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("t still there")
        .get(0);
    assert_eq!(rows, 3);

    // Next round (metrics due again): the failing ones stay quiet (rate
    // limit), the good ones still report.
    let tick = collector
        .tick_at(tokio::time::Instant::now() + Duration::from_secs(3660))
        .await;
    assert_eq!(custom_values(&tick).len(), 3);
    assert!(events(&tick).is_empty(), "{:?}", events(&tick));
}
