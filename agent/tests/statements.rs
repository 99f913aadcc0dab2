//! The `statement` collector against real PostgreSQL: deltas match the
//! executions of a known query, also across `pg_stat_statements_reset()`;
//! texts are sent once; a server without the extension fails only this
//! family.

use std::collections::BTreeMap;
use std::time::Duration;

use lasect_agent::collect::{Collector, Tick};
use lasect_agent::config::{CollectConfig, Dsn, InstanceConfig};
use lasect_proto::v1::StatementSnapshot;
use lasect_proto::v1::sample::Family;
use lasect_testkit::{PgCluster, PgOptions};
use tokio::time::Instant;

const MARKER: &str = "lasect_known_query";

fn collector(dsn: String) -> Collector {
    let mut intervals = BTreeMap::new();
    intervals.insert("statement".to_owned(), 1);
    let instance = InstanceConfig {
        name: "main".into(),
        dsn: Dsn::new(dsn),
        run_dsn: None,
        allow_privileged_runs: false,
        intervals,
        max_connections: None,
        databases: None,
    };
    let collect = CollectConfig {
        host: false,
        ..CollectConfig::default()
    };
    Collector::new(&[instance], &collect).expect("collector")
}

/// A tick with every family due (an hour later on the collector's clock).
async fn tick_all(c: &mut Collector, hours: &mut u64) -> Tick {
    *hours += 1;
    c.tick_at(Instant::now() + Duration::from_secs(3600 * *hours))
        .await
}

fn statements(tick: &Tick) -> Vec<&StatementSnapshot> {
    tick.batch
        .samples
        .iter()
        .filter_map(|s| match &s.family {
            Some(Family::Statement(st)) => Some(st),
            _ => None,
        })
        .collect()
}

/// Runs the known query `n` times (one queryid, whatever the parameter).
async fn run_known(client: &tokio_postgres::Client, n: i32) {
    let sql = format!("SELECT $1::int4 + 1 AS {MARKER}");
    for i in 0..n {
        client.query_one(&sql, &[&i]).await.expect("known query");
    }
}

#[tokio::test]
async fn calls_deltas_equal_executions_across_a_reset() {
    let pg = PgCluster::start(PgOptions {
        stat_statements: true,
        ..PgOptions::default()
    })
    .expect("start pg");
    let client = pg.connect("postgres").await.expect("connect");
    client
        .batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .expect("extension");
    let mut c = collector(pg.dsn("postgres"));
    let mut hours = 0;

    // The first round is a baseline only.
    let first = tick_all(&mut c, &mut hours).await;
    assert!(first.failures.is_empty());
    assert!(
        statements(&first).is_empty(),
        "no deltas without a baseline"
    );

    let mut known_id = None;
    let mut total_calls = 0;
    let mut texts_of_known = 0;
    let mut take = |tick: &Tick| {
        for s in statements(tick) {
            for t in &s.texts {
                if t.query.contains(MARKER) {
                    known_id = Some(t.queryid);
                    texts_of_known += 1;
                }
            }
            for r in &s.rows {
                assert!(r.calls.is_some_and(|c| c >= 0));
                if Some(r.queryid) == known_id {
                    total_calls += r.calls.unwrap_or(0);
                }
            }
        }
    };

    run_known(&client, 7).await;
    take(&tick_all(&mut c, &mut hours).await);
    run_known(&client, 5).await;
    take(&tick_all(&mut c, &mut hours).await);
    // A reset with no round in between, then more executions than before
    // the reset: counted from the reset, not subtracted.
    client
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .expect("reset");
    run_known(&client, 9).await;
    take(&tick_all(&mut c, &mut hours).await);
    // A reset seen by a round (the entry vanishes), then executions.
    client
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .expect("reset");
    take(&tick_all(&mut c, &mut hours).await);
    run_known(&client, 2).await;
    take(&tick_all(&mut c, &mut hours).await);
    // Idle: no further calls.
    take(&tick_all(&mut c, &mut hours).await);

    assert!(known_id.is_some(), "the known query's text was sent");
    assert_eq!(texts_of_known, 1, "a text is sent once per queryid");
    assert_eq!(total_calls, 7 + 5 + 9 + 2);
}

#[tokio::test]
async fn a_server_without_the_extension_fails_only_this_family() {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let mut c = collector(pg.dsn("postgres"));
    let mut hours = 0;
    for _ in 0..3 {
        let tick = tick_all(&mut c, &mut hours).await;
        assert!(tick.failures.is_empty(), "the instance itself is fine");
        assert!(statements(&tick).is_empty());
        assert!(
            tick.batch
                .samples
                .iter()
                .any(|s| matches!(s.family, Some(Family::Database(_)))),
            "database keeps being collected"
        );
    }
}
