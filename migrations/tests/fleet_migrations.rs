//! The store's side of fleet migrations (V16): targets run one after the
//! other, the first failure halts the rest, and only one migration runs at
//! a time — enforced by the store, whoever writes to it.

use lasect_migrations::migrate;
use lasect_testkit::{PgCluster, PgOptions};
use tokio_postgres::Client;

async fn store() -> (PgCluster, Client) {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    pg.create_database("store").await.expect("create db");
    let mut client = pg.connect("store").await.expect("connect");
    migrate(&mut client).await.expect("migrate");
    client
        .batch_execute(
            "INSERT INTO agents (id) VALUES ('a1');
             INSERT INTO instances (name, agent_id) VALUES ('i1', 'a1'), ('i2', 'a1'), ('i3', 'a1');",
        )
        .await
        .expect("seed");
    (pg, client)
}

async fn start_migration(client: &Client) -> i64 {
    let id: i64 = client
        .query_one(
            "INSERT INTO migrations (name, sql, sql_sha256, requested_by, targets, dry_run,
                 lock_timeout_ms, statement_timeout_ms, timeout_ms, queue_timeout_s)
             VALUES ('m', 'CREATE TABLE t (x int)', 'h', 'user:admin', '{}', false,
                     5000, 60000, 600000, 60)
             RETURNING id",
            &[],
        )
        .await
        .expect("insert migration")
        .get(0);
    client
        .execute(
            "INSERT INTO migration_targets (migration_id, position, instance_id, instance_name)
             SELECT $1, row_number() OVER (ORDER BY name), id, name FROM instances",
            &[&id],
        )
        .await
        .expect("targets");
    client
        .execute("SELECT lasect_migration_queue_next($1)", &[&id])
        .await
        .expect("queue first");
    id
}

async fn queued_run(client: &Client, migration: i64) -> (i64, String) {
    let row = client
        .query_one(
            "SELECT r.id, i.name FROM runs r JOIN instances i ON i.id = r.instance_id
             WHERE r.migration_id = $1 AND r.status = 'queued'",
            &[&migration],
        )
        .await
        .expect("exactly one queued run");
    (row.get(0), row.get(1))
}

async fn finish(client: &Client, run: i64, status: &str, error: Option<&str>) {
    client
        .execute(
            "UPDATE runs SET status = $2, error = $3, finished_at = now() WHERE id = $1",
            &[&run, &status, &error],
        )
        .await
        .expect("finish run");
}

async fn report(client: &Client, migration: i64) -> Vec<(String, String)> {
    client
        .query(
            "SELECT instance_name, status FROM migration_targets
             WHERE migration_id = $1 ORDER BY position",
            &[&migration],
        )
        .await
        .expect("report")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test]
async fn targets_run_in_turn_and_the_first_failure_halts_the_rest() {
    let (_pg, client) = store().await;
    let m = start_migration(&client).await;

    let (run1, name1) = queued_run(&client, m).await;
    assert_eq!(name1, "i1");
    let params: serde_json::Value = client
        .query_one("SELECT params FROM runs WHERE id = $1", &[&run1])
        .await
        .expect("params")
        .get(0);
    assert_eq!(params["sql"], "CREATE TABLE t (x int)");
    assert_eq!(params["lock_timeout_ms"], 5000);
    assert_eq!(params["dry_run"], false);

    finish(&client, run1, "succeeded", None).await;
    let (run2, name2) = queued_run(&client, m).await;
    assert_eq!(name2, "i2");
    finish(
        &client,
        run2,
        "failed",
        Some("ERROR 42P07: relation \"t\" already exists"),
    )
    .await;

    assert_eq!(
        report(&client, m).await,
        pairs(&[("i1", "succeeded"), ("i2", "failed"), ("i3", "skipped")])
    );
    let row = client
        .query_one("SELECT status, error FROM migrations WHERE id = $1", &[&m])
        .await
        .expect("migration");
    assert_eq!(row.get::<_, String>(0), "failed");
    let error: String = row.get(1);
    assert!(
        error.contains("i2") && error.contains("already exists"),
        "{error}"
    );
    let runs: i64 = client
        .query_one("SELECT count(*) FROM runs WHERE migration_id = $1", &[&m])
        .await
        .expect("count")
        .get(0);
    assert_eq!(runs, 2, "the third target never got a run");
}

#[tokio::test]
async fn one_migration_at_a_time_and_success_closes_it() {
    let (_pg, client) = store().await;
    let m = start_migration(&client).await;
    let second = client
        .execute(
            "INSERT INTO migrations (name, sql, sql_sha256, requested_by, targets, dry_run,
                 lock_timeout_ms, statement_timeout_ms, timeout_ms, queue_timeout_s)
             VALUES ('m2', 'SELECT 1', 'h', 'user:admin', '{}', false, 1, 1, 1, 1)",
            &[],
        )
        .await
        .expect_err("a second running migration is refused");
    assert_eq!(
        second.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );

    for _ in 0..3 {
        let (run, _) = queued_run(&client, m).await;
        finish(&client, run, "succeeded", None).await;
    }
    assert_eq!(
        report(&client, m).await,
        pairs(&[
            ("i1", "succeeded"),
            ("i2", "succeeded"),
            ("i3", "succeeded")
        ])
    );
    let status: String = client
        .query_one("SELECT status FROM migrations WHERE id = $1", &[&m])
        .await
        .expect("migration")
        .get(0);
    assert_eq!(status, "succeeded");
    // Finished: the next one may start.
    start_migration(&client).await;
}

#[tokio::test]
async fn an_expired_target_halts_the_migration() {
    let (_pg, client) = store().await;
    let m = start_migration(&client).await;
    let (run, _) = queued_run(&client, m).await;
    finish(
        &client,
        run,
        "expired",
        Some("agent a1 did not pick the run up"),
    )
    .await;
    assert_eq!(
        report(&client, m).await,
        pairs(&[("i1", "failed"), ("i2", "skipped"), ("i3", "skipped")])
    );
}
