//! The store schema against real PostgreSQL: concurrent and repeated
//! migration, daily partitions, retention, and the TimescaleDB layout when the
//! extension is installed on this machine.

use chrono::{Duration, Utc};
use lasect_migrations::{StorageMode, ensure_partitions, maintain, migrate, storage_mode};
use lasect_testkit::{PgCluster, PgOptions};

fn cluster() -> PgCluster {
    PgCluster::start(PgOptions::default()).expect("start pg")
}

async fn partitions_of(client: &tokio_postgres::Client, table: &str) -> Vec<String> {
    client
        .query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = $1::text::regclass ORDER BY 1",
            &[&table],
        )
        .await
        .expect("list partitions")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn concurrent_migrations_apply_once() {
    let pg = cluster();
    pg.create_database("store").await.expect("create db");
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(pg.connect("store").await.expect("connect"));
    }
    let results = futures_join_all(clients).await;
    let applied: usize = results.iter().map(|r| r.applied.len()).sum();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sql"))
        .expect("sql dir")
        .count();
    assert_eq!(
        applied, files,
        "each migration applied exactly once across 4 racing processes"
    );

    let mut again = pg.connect("store").await.expect("connect");
    let report = migrate(&mut again).await.expect("migrate again");
    assert!(report.applied.is_empty(), "idempotent: {report:?}");
    assert_eq!(
        storage_mode(&again).await.expect("mode"),
        StorageMode::Native
    );
}

async fn futures_join_all(
    clients: Vec<tokio_postgres::Client>,
) -> Vec<lasect_migrations::MigrationReport> {
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| tokio::spawn(async move { migrate(&mut c).await.expect("migrate") }))
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("join"));
    }
    out
}

#[tokio::test]
async fn native_partitions_are_created_ahead_and_expired() {
    let pg = cluster();
    let dsn = pg.store_dsn().await.expect("store");
    let dbname = dsn.rsplit("dbname=").next().expect("dbname").to_string();
    let client = pg.connect(&dbname).await.expect("connect");

    let today = Utc::now().date_naive();
    let parts = partitions_of(&client, "metric_database").await;
    for d in [today - Duration::days(1), today, today + Duration::days(3)] {
        let name = format!("metric_database_p{}", d.format("%Y%m%d"));
        assert!(parts.contains(&name), "{name} missing from {parts:?}");
    }

    // A sample from 20 days ago (a long-offline agent) gets its partition on demand.
    let old = today - Duration::days(20);
    let created = ensure_partitions(&client, old, old).await.expect("ensure");
    let tables: i64 = client
        .query_one("SELECT count(*) FROM metric_families", &[])
        .await
        .expect("count families")
        .get(0);
    assert_eq!(i64::from(created), tables, "one per metric table");
    assert_eq!(
        ensure_partitions(&client, old, old).await.expect("again"),
        0
    );
    client
        .execute(
            "INSERT INTO metric_host_cpu VALUES ($1::date::timestamptz + interval '1 hour', 'a1', 2, 1.5, 0, 0, 0)",
            &[&old],
        )
        .await
        .expect("insert old row");
    client
        .execute(
            "INSERT INTO metric_host_cpu VALUES (now(), 'a1', 2, 1.5, 0, 0, 0)",
            &[],
        )
        .await
        .expect("insert current row");

    // Partitions past their family's retention (14 days by default) go,
    // today's row stays.
    let expired: i64 = client
        .query_one(
            "SELECT count(*) FROM metric_families WHERE retention < interval '20 days'",
            &[],
        )
        .await
        .expect("count expired families")
        .get(0);
    let report = maintain(&client).await.expect("maintain");
    assert_eq!(i64::from(report.partitions_dropped), expired, "{report:?}");
    let n: i64 = client
        .query_one("SELECT count(*) FROM metric_host_cpu", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn row_without_partition_is_refused_not_misplaced() {
    let pg = cluster();
    let dsn = pg.store_dsn().await.expect("store");
    let dbname = dsn.rsplit("dbname=").next().expect("dbname").to_string();
    let client = pg.connect(&dbname).await.expect("connect");
    let err = client
        .execute(
            "INSERT INTO metric_host_cpu VALUES (now() - interval '100 days', 'a1', 2, 1.5, 0, 0, 0)",
            &[],
        )
        .await
        .expect_err("no partition for that day");
    let message = err.as_db_error().map(|e| e.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("no partition")),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_forced_storage_is_a_clear_error() {
    let pg = cluster();
    pg.create_database("store").await.expect("create db");
    let mut client = pg.connect("store").await.expect("connect");
    client
        .batch_execute("SET lasect.metric_storage = 'mongodb'")
        .await
        .expect("set");
    let err = migrate(&mut client).await.expect_err("must refuse");
    assert!(
        format!("{err:?}").contains("must be native or timescaledb"),
        "{err:?}"
    );
}

/// TimescaleDB is not packaged for every machine: this runs the hypertable
/// path wherever the extension is installed, and says so where it is not.
#[tokio::test]
async fn timescaledb_layout_when_available() {
    let probe = cluster();
    let client = probe.connect("postgres").await.expect("connect");
    let available: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
            &[],
        )
        .await
        .expect("probe")
        .get(0);
    if !available {
        eprintln!("timescaledb is not installed here: hypertable layout not exercised");
        return;
    }
    let pg = PgCluster::start(PgOptions {
        settings: vec![("shared_preload_libraries".into(), "'timescaledb'".into())],
        ..PgOptions::default()
    })
    .expect("start pg with timescaledb");
    pg.create_database("store").await.expect("create db");
    let mut client = pg.connect("store").await.expect("connect");
    migrate(&mut client).await.expect("migrate");
    assert_eq!(
        storage_mode(&client).await.expect("mode"),
        StorageMode::TimescaleDb
    );
    let hypertables: i64 = client
        .query_one(
            "SELECT count(*) FROM timescaledb_information.hypertables",
            &[],
        )
        .await
        .expect("hypertables")
        .get(0);
    let tables: i64 = client
        .query_one("SELECT count(*) FROM metric_families", &[])
        .await
        .expect("count families")
        .get(0);
    assert_eq!(hypertables, tables);
    // The same queries work: maintain is a no-op, inserts land anywhere in time.
    maintain(&client).await.expect("maintain");
    client
        .execute(
            "INSERT INTO metric_host_cpu VALUES (now() - interval '3 days', 'a1', 2, 1.5, 0, 0, 0)",
            &[],
        )
        .await
        .expect("insert");
}
