//! The `statement` collector's steady state reads no query texts: on a real
//! server, the executions of the agent's only text-reading statement
//! (`pg_stat_statements(true)`) are counted in `pg_stat_statements` itself,
//! and they stay put while the same statements keep running; a new
//! statement costs exactly one more read. Texts go out a byte budget per
//! round (a batch must stay under ingest's size limit); the rest follows in
//! the next rounds, each text exactly once, none lost.

use std::collections::BTreeMap;
use std::time::Duration;

use lasect_agent::collect::statement::{StatementCollector, TEXTS_SQL_HEAD};
use lasect_agent::collect::{Collector, Tick};
use lasect_agent::config::{CollectConfig, Dsn, InstanceConfig};
use lasect_proto::v1::sample::Family;
use lasect_testkit::{PgCluster, PgOptions};
use tokio::time::Instant;

const WORKLOAD: [&str; 4] = [
    "SELECT count(*) AS lasect_steady_a FROM pg_class WHERE relpages > $1::int4",
    "SELECT max(oid) AS lasect_steady_b FROM pg_type WHERE typlen::int4 = $1::int4",
    "SELECT $1::int8 * 2 AS lasect_steady_c",
    "SELECT length($1::text) AS lasect_steady_d",
];

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

async fn tick_all(c: &mut Collector, hours: &mut u64) -> Tick {
    *hours += 1;
    c.tick_at(Instant::now() + Duration::from_secs(3600 * *hours))
        .await
}

/// (delta rows, texts) of the statement samples of one tick.
fn statement_output(tick: &Tick) -> (usize, Vec<String>) {
    let mut rows = 0;
    let mut texts = Vec::new();
    for s in &tick.batch.samples {
        if let Some(Family::Statement(st)) = &s.family {
            rows += st.rows.len();
            texts.extend(st.texts.iter().map(|t| t.query.clone()));
        }
    }
    (rows, texts)
}

async fn run_workload(client: &tokio_postgres::Client) {
    for sql in &WORKLOAD[..2] {
        for i in 0..3_i32 {
            client.query(*sql, &[&i]).await.expect("workload");
        }
    }
    client
        .query(WORKLOAD[2], &[&7_i64])
        .await
        .expect("workload");
    client.query(WORKLOAD[3], &[&"x"]).await.expect("workload");
}

/// Executions so far of the agent's text query, seen by the server.
async fn text_fetches(client: &tokio_postgres::Client) -> i64 {
    let prefix = TEXTS_SQL_HEAD;
    client
        .query_one(
            "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements \
             WHERE starts_with(query, $1)",
            &[&prefix],
        )
        .await
        .expect("count text fetches")
        .get(0)
}

#[tokio::test]
async fn steady_state_fetches_no_texts_of_seen_queryids() {
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

    // Warm-up: the baseline, the workload's first sight, and the first
    // sight of the statements the agent and this test add themselves (the
    // text query's own entry, the counting query).
    let mut workload_texts = 0;
    for _ in 0..4 {
        run_workload(&client).await;
        text_fetches(&client).await;
        let tick = tick_all(&mut c, &mut hours).await;
        assert!(tick.failures.is_empty(), "{:?}", tick.failures);
        let (_, texts) = statement_output(&tick);
        workload_texts += texts
            .iter()
            .filter(|t| t.contains("lasect_steady_"))
            .count();
    }
    assert_eq!(
        workload_texts,
        WORKLOAD.len(),
        "each workload text is sent once"
    );
    let settled = text_fetches(&client).await;
    assert!(settled >= 1, "the first sight read the texts");

    // Steady state: the same statements keep running, every round has
    // deltas, and no round reads texts.
    for round in 0..4 {
        run_workload(&client).await;
        let before = text_fetches(&client).await;
        let tick = tick_all(&mut c, &mut hours).await;
        assert!(tick.failures.is_empty(), "{:?}", tick.failures);
        let (rows, texts) = statement_output(&tick);
        assert!(
            rows >= WORKLOAD.len(),
            "round {round}: deltas of the workload"
        );
        assert!(
            texts.is_empty(),
            "round {round}: texts sent again: {texts:?}"
        );
        assert_eq!(
            text_fetches(&client).await,
            before,
            "round {round}: the text query ran in the steady state"
        );
    }

    // A statement never seen before costs exactly one text read.
    let before = text_fetches(&client).await;
    run_workload(&client).await;
    client
        .query("SELECT 42 AS lasect_steady_new", &[])
        .await
        .expect("new statement");
    let tick = tick_all(&mut c, &mut hours).await;
    let (_, texts) = statement_output(&tick);
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.contains("lasect_steady_new"))
            .count(),
        1
    );
    assert_eq!(text_fetches(&client).await, before + 1);
}

#[tokio::test]
async fn long_texts_go_out_a_budget_per_round_each_once() {
    const PAD: usize = 3000;
    const BUDGET: usize = 7000;
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
    let mut collector = StatementCollector::default().with_text_budget(BUDGET);
    assert!(
        collector
            .collect(&client, "main")
            .await
            .expect("baseline")
            .is_none()
    );

    // Six distinct statements (one per catalog) with long comments, run
    // once: they must all get their text although they never run again.
    let pad = format!("lasect_budget_pad {}", "x".repeat(PAD));
    let catalogs = [
        "pg_class",
        "pg_type",
        "pg_proc",
        "pg_namespace",
        "pg_am",
        "pg_database",
    ];
    for catalog in catalogs {
        client
            .batch_execute(&format!(
                "SELECT /* {pad} */ oid FROM {catalog} WHERE oid = 0"
            ))
            .await
            .expect("padded statement");
    }

    let mut sent: Vec<String> = Vec::new();
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds <= 10, "texts still pending after 10 rounds");
        let snap = collector
            .collect(&client, "main")
            .await
            .expect("round")
            .expect("snapshot");
        let bytes: usize = snap.texts.iter().map(|t| t.query.len()).sum();
        assert!(
            bytes <= BUDGET || snap.texts.len() == 1,
            "round {rounds}: {bytes} bytes of text in {} texts",
            snap.texts.len()
        );
        sent.extend(snap.texts.into_iter().map(|t| t.query));
        if collector.texts_pending() == 0 {
            break;
        }
    }
    assert!(rounds >= 3, "18 kB of text over a 7 kB budget takes rounds");
    for catalog in catalogs {
        let of_catalog = sent
            .iter()
            .filter(|q| q.contains("lasect_budget_pad") && q.contains(&format!("FROM {catalog} ")))
            .count();
        assert_eq!(of_catalog, 1, "{catalog}: sent once");
    }
}
