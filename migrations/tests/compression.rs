//! The compression the TimescaleDB layout gets (V22), checked on the native
//! layout where it is only generated: one ALTER TABLE per family, segmented by
//! its series key, ordered by time.

use lasect_migrations::{maintain, migrate};
use lasect_testkit::{PgCluster, PgOptions};
use tokio_postgres::Client;

async fn store() -> (PgCluster, Client) {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    pg.create_database("store").await.expect("create db");
    let mut client = pg.connect("store").await.expect("connect");
    migrate(&mut client).await.expect("migrate");
    (pg, client)
}

async fn compression_sql(client: &Client, family: &str) -> String {
    client
        .query_one("SELECT lasect_compression_sql($1)", &[&family])
        .await
        .expect("compression sql")
        .get(0)
}

fn expected(table: &str, segment_by: &str) -> String {
    format!(
        "ALTER TABLE {table} SET (timescaledb.compress, \
         timescaledb.compress_segmentby = '{segment_by}', \
         timescaledb.compress_orderby = 'time DESC')"
    )
}

#[tokio::test]
async fn segmented_by_the_series_key_of_each_family() {
    let (_pg, client) = store().await;
    for (family, table, segment_by) in [
        ("database", "metric_database", "instance_id, datname"),
        ("host_cpu", "metric_host_cpu", "agent_id"),
        ("wal", "metric_wal", "instance_id"),
        (
            "statement",
            "metric_statement",
            "instance_id, queryid, dbid, userid, toplevel",
        ),
        (
            "index",
            "metric_index",
            "instance_id, datname, schemaname, relname, indexrelname",
        ),
        (
            "custom",
            "metric_custom",
            "instance_id, metric, datname, labels, value_name",
        ),
        ("host_disk_io", "metric_host_disk_io", "agent_id, device"),
        ("log_plans", "metric_log_plans", "instance_id, query_id"),
    ] {
        assert_eq!(
            compression_sql(&client, family).await,
            expected(table, segment_by),
            "{family}"
        );
    }
}

/// Every family: the key starts with the id its rows are keyed by (the lookup
/// index's first column), names only columns of its table, and the SQL quotes
/// them (`table`/`index` are keywords as family names, not as columns).
#[tokio::test]
async fn every_family_has_a_valid_series_key() {
    let (_pg, client) = store().await;
    let rows = client
        .query(
            "SELECT f.name, f.table_name, f.segment_by, f.compress_after = interval '2 days',
                    (SELECT a.attname::text FROM pg_index i
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                     WHERE i.indexrelid = (f.table_name || '_lookup')::regclass),
                    (SELECT array_agg(c) FROM unnest(f.segment_by) c
                     WHERE NOT EXISTS (SELECT 1 FROM information_schema.columns
                                       WHERE table_name = f.table_name AND column_name = c))
             FROM metric_families f ORDER BY 1",
            &[],
        )
        .await
        .expect("families");
    assert!(rows.len() >= 30, "{} families", rows.len());
    for row in rows {
        let family: String = row.get(0);
        let table: String = row.get(1);
        let key: Vec<String> = row.get(2);
        let default_age: bool = row.get(3);
        let id_column: String = row.get(4);
        let unknown: Option<Vec<String>> = row.get(5);
        assert!(default_age, "{family}: compress_after defaults to 2 days");
        assert_eq!(key.first(), Some(&id_column), "{family}: {key:?}");
        assert!(
            ["instance_id", "agent_id"].contains(&id_column.as_str()),
            "{family}: {id_column}"
        );
        assert_eq!(unknown, None, "{family}: columns not in {table}");
        assert_eq!(
            compression_sql(&client, &family).await,
            expected(&table, &key.join(", ")),
            "{family}"
        );
    }
}

/// A family created after V22 gets its lookup columns as series key; on the
/// native layout nothing is compressed and maintenance changes nothing.
#[tokio::test]
async fn later_families_get_a_key_and_native_compresses_nothing() {
    let (_pg, client) = store().await;
    client
        .batch_execute(
            "SELECT lasect_create_metric_table('probe', 'metric_probe',
                 'time timestamptz NOT NULL, instance_id bigint NOT NULL, thing text NOT NULL',
                 'instance_id, thing')",
        )
        .await
        .expect("create a family");
    assert_eq!(
        compression_sql(&client, "probe").await,
        expected("metric_probe", "instance_id, thing")
    );
    let applied: i32 = client
        .query_one("SELECT lasect_apply_compression()", &[])
        .await
        .expect("apply")
        .get(0);
    assert_eq!(applied, 0);
    assert_eq!(
        maintain(&client)
            .await
            .expect("maintain")
            .compression_changes,
        0
    );
    let bad = client
        .execute(
            "UPDATE metric_families SET compress_after = interval '0' WHERE name = 'probe'",
            &[],
        )
        .await;
    assert!(bad.is_err(), "a zero age is refused");
}
