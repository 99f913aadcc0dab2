//! `table` and `index` against real PostgreSQL: every visited database is
//! covered within the connection budget, include/exclude patterns apply,
//! dead tuples, unused and invalid indexes show up.

use std::time::Duration;

use lasect_agent::collect::{Collector, Tick};
use lasect_agent::config::{CollectConfig, DatabaseFilter, Dsn, InstanceConfig};
use lasect_proto::v1::sample::Family;
use lasect_proto::v1::{IndexRow, TableRow};
use lasect_testkit::{PgCluster, PgOptions};
use tokio::time::Instant;

fn collector(dsn: String, max_connections: usize) -> Collector {
    let instance = InstanceConfig {
        name: "main".into(),
        dsn: Dsn::new(dsn),
        run_dsn: None,
        allow_privileged_runs: false,
        intervals: Default::default(),
        max_connections: Some(max_connections),
        databases: Some(DatabaseFilter {
            include: vec![],
            exclude: vec!["skip_*".into()],
        }),
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

fn tables(tick: &Tick) -> Vec<&TableRow> {
    tick.batch
        .samples
        .iter()
        .filter_map(|s| match &s.family {
            Some(Family::Table(t)) => Some(t.tables.iter()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn indexes(tick: &Tick) -> Vec<&IndexRow> {
    tick.batch
        .samples
        .iter()
        .filter_map(|s| match &s.family {
            Some(Family::Index(i)) => Some(i.indexes.iter()),
            _ => None,
        })
        .flatten()
        .collect()
}

async fn agent_sessions(admin: &tokio_postgres::Client) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lasect-agent'",
            &[],
        )
        .await
        .expect("activity")
        .get(0)
}

#[tokio::test]
async fn tables_and_indexes_of_every_database_within_the_budget() {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    for db in ["app1", "app2", "app3", "skip_me"] {
        pg.create_database(db).await.expect("create db");
        let c = pg.connect(db).await.expect("connect");
        c.batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v int, w int);
             INSERT INTO t SELECT g, g % 10, g FROM generate_series(1, 1000) g;
             CREATE INDEX t_v ON t (v);
             DELETE FROM t WHERE id <= 300;",
        )
        .await
        .expect("workload");
        // A failed CREATE UNIQUE INDEX CONCURRENTLY leaves an invalid index.
        c.batch_execute("UPDATE t SET w = 1 WHERE id IN (500, 501)")
            .await
            .expect("duplicates");
        assert!(
            c.batch_execute("CREATE UNIQUE INDEX CONCURRENTLY t_w ON t (w)")
                .await
                .is_err()
        );
        // PG 15+ flushes a backend's counters lazily; ask for it.
        let _ = c.batch_execute("SELECT pg_stat_force_next_flush()").await;
        c.batch_execute("SELECT 1").await.expect("flush");
    }
    let admin = pg.connect("postgres").await.expect("admin");
    let mut c = collector(pg.dsn("postgres"), 2);
    let mut hours = 0;
    // Counters reach the views asynchronously: poll, bounded.
    let mut tick = tick_all(&mut c, &mut hours).await;
    for _ in 0..100 {
        let dead = tables(&tick)
            .iter()
            .filter(|t| t.n_dead_tup.is_some_and(|n| n >= 300))
            .count();
        if dead == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        tick = tick_all(&mut c, &mut hours).await;
    }
    assert!(tick.failures.is_empty());
    let t = tables(&tick);
    let mut dbs: Vec<&str> = t.iter().map(|r| r.datname.as_str()).collect();
    dbs.sort_unstable();
    assert_eq!(dbs, ["app1", "app2", "app3"], "skip_* is excluded");
    for row in &t {
        assert_eq!(row.relname, "t");
        assert!(row.n_dead_tup.is_some_and(|n| n >= 300), "{row:?}");
        assert!(row.heap_bytes.is_some_and(|b| b > 0));
        assert!(row.indexes_bytes.is_some_and(|b| b > 0));
        assert!(row.n_tup_ins.is_some_and(|n| n >= 1000));
    }
    let i = indexes(&tick);
    assert_eq!(i.len(), 9, "three indexes in each of three databases");
    for row in &i {
        match row.indexrelname.as_str() {
            "t_pkey" => assert!(row.is_primary && !row.unused && !row.invalid),
            "t_v" => assert!(row.unused && !row.invalid, "{row:?}"),
            "t_w" => assert!(row.invalid, "{row:?}"),
            other => panic!("unexpected index {other}"),
        }
    }
    assert!(
        agent_sessions(&admin).await <= 2,
        "at most max_connections sessions"
    );

    // With a budget of one connection only the DSN's database is read.
    drop(c);
    let mut single = collector(pg.dsn("app1"), 1);
    let tick = tick_all(&mut single, &mut hours).await;
    let dbs: Vec<&str> = tables(&tick).iter().map(|r| r.datname.as_str()).collect();
    assert_eq!(dbs, ["app1"]);
}
