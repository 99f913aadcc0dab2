//! The declaration of every family against a migrated store: the columns of its table in
//! `information_schema.columns` (names, order, types, nullability) and its row of
//! `metric_families` (table, series key). A migration that adds, drops, retypes or reorders a
//! column, or a family declared without a migration (or the reverse), fails here.

use std::collections::BTreeMap;

use lasect_families::{ALL, ColumnType, Family};
use lasect_migrations::{StorageMode, migrate, storage_mode};
use lasect_testkit::{PgCluster, PgOptions};
use tokio_postgres::Client;

/// One column as the store has it: `name type NULL|NOT NULL`.
type StoreColumns = BTreeMap<String, Vec<String>>;

fn describe(name: &str, ty: &str, nullable: bool) -> String {
    format!("{name} {ty} {}", if nullable { "NULL" } else { "NOT NULL" })
}

/// The columns the declaration says `family`'s table has, in table order.
fn declared(family: &Family) -> Vec<String> {
    let mut out = vec![
        describe("time", ColumnType::Timestamptz.sql_name(), false),
        describe(
            family.key.column(),
            family.key.column_type().sql_name(),
            false,
        ),
    ];
    out.extend(
        family
            .columns
            .iter()
            .map(|c| describe(c.name, c.ty.sql_name(), c.nullable)),
    );
    out
}

/// Every family's difference from the store, as readable lines (empty when they agree).
fn differences(
    families: &[&Family],
    columns: &StoreColumns,
    registered: &BTreeMap<String, (String, Vec<String>)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for family in families {
        match registered.get(family.name) {
            None => out.push(format!("{}: not in metric_families", family.name)),
            Some((table, segment_by)) => {
                if table != family.table {
                    out.push(format!(
                        "{}: metric_families.table_name is {table}, declared {}",
                        family.name, family.table
                    ));
                }
                let declared_segment: Vec<String> = family
                    .segment_by()
                    .iter()
                    .map(|c| (*c).to_owned())
                    .collect();
                if *segment_by != declared_segment {
                    out.push(format!(
                        "{}: metric_families.segment_by is {segment_by:?}, declared series key {declared_segment:?}",
                        family.name
                    ));
                }
            }
        }
        let store = columns.get(family.table).cloned().unwrap_or_default();
        let want = declared(family);
        if store != want {
            let missing: Vec<_> = want.iter().filter(|c| !store.contains(c)).collect();
            let extra: Vec<_> = store.iter().filter(|c| !want.contains(c)).collect();
            out.push(format!(
                "{} ({}): declared but not in the store: {missing:?}; in the store but not declared: {extra:?}{}",
                family.name,
                family.table,
                if missing.is_empty() && extra.is_empty() {
                    " (same columns, another order)"
                } else {
                    ""
                }
            ));
        }
    }
    for name in registered.keys() {
        if !families.iter().any(|f| f.name == name) {
            out.push(format!("{name}: in metric_families but not declared"));
        }
    }
    out
}

async fn store_columns(client: &Client) -> StoreColumns {
    let rows = client
        .query(
            "SELECT c.table_name::text, c.column_name::text, c.data_type::text,
                    c.is_nullable = 'YES'
             FROM information_schema.columns c
             JOIN metric_families f ON f.table_name = c.table_name
             WHERE c.table_schema = current_schema()
             ORDER BY c.table_name, c.ordinal_position",
            &[],
        )
        .await
        .expect("read information_schema.columns");
    let mut out = StoreColumns::new();
    for row in rows {
        out.entry(row.get(0))
            .or_default()
            .push(describe(row.get(1), row.get(2), row.get(3)));
    }
    out
}

async fn registered(client: &Client) -> BTreeMap<String, (String, Vec<String>)> {
    client
        .query(
            "SELECT name, table_name, segment_by FROM metric_families",
            &[],
        )
        .await
        .expect("read metric_families")
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

async fn migrated(pg: &PgCluster) -> Client {
    pg.create_database("store").await.expect("create db");
    let mut client = pg.connect("store").await.expect("connect");
    migrate(&mut client).await.expect("migrate");
    client
}

/// Checks the store `client` is connected to against the declaration.
async fn check(client: &Client) {
    let columns = store_columns(client).await;
    let registered = registered(client).await;
    let found = differences(ALL, &columns, &registered);
    assert!(
        found.is_empty(),
        "the family declaration (families/src/catalog.rs) and the migrated store differ:\n{}",
        found.join("\n")
    );
}

/// Native partitions (and TimescaleDB hypertables where installed), and a self-check of the
/// comparison on one-edit drifts.
#[tokio::test]
async fn the_declaration_matches_a_migrated_store() {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let client = migrated(&pg).await;
    assert_eq!(
        storage_mode(&client).await.expect("mode"),
        StorageMode::Native
    );
    check(&client).await;

    // The comparison sees a retyped column, a NULL that became NOT NULL, a column the store
    // lacks and a series key that is not the store's (each a declaration one edit away from
    // the real one), so a migration that drifts the same way is caught too.
    let columns = store_columns(&client).await;
    let registered = registered(&client).await;
    let drifted = |edit: fn(&mut Vec<lasect_families::Column>)| {
        let family = &lasect_families::DATABASE;
        let mut edited = family.columns.to_vec();
        edit(&mut edited);
        let edited = Family {
            columns: Box::leak(edited.into_boxed_slice()),
            ..*family
        };
        differences(&[&edited], &columns, &registered)
            .into_iter()
            .filter(|d| d.starts_with(family.name))
            .count()
    };
    // `numbackends integer NULL`, a gauge; `datid bigint NOT NULL`, a detail.
    fn column<'a>(
        columns: &'a mut [lasect_families::Column],
        name: &str,
    ) -> &'a mut lasect_families::Column {
        columns
            .iter_mut()
            .find(|c| c.name == name)
            .expect("declared column")
    }
    assert_eq!(
        drifted(|c| column(c, "numbackends").ty = ColumnType::Int8),
        1,
        "type"
    );
    assert_eq!(
        drifted(|c| column(c, "numbackends").nullable = false),
        1,
        "nullability"
    );
    assert_eq!(
        drifted(|c| c.push(lasect_families::Column::new(
            "not_in_the_store",
            ColumnType::Text,
            lasect_families::Role::Detail
        ))),
        1,
        "column"
    );
    assert_eq!(
        drifted(|c| column(c, "datid").role = lasect_families::Role::Key),
        1,
        "series key"
    );
    assert_eq!(drifted(|c| c.swap(0, 1)), 1, "order");

    // The hypertable layout creates its tables through the same function; compared wherever
    // TimescaleDB is installed (the CI image has none: then this says so).
    let available: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
            &[],
        )
        .await
        .expect("probe")
        .get(0);
    if !available {
        eprintln!("timescaledb is not installed here: hypertable layout not compared");
        return;
    }
    drop(client);
    drop(pg);
    let pg = PgCluster::start(PgOptions {
        settings: vec![("shared_preload_libraries".into(), "'timescaledb'".into())],
        ..PgOptions::default()
    })
    .expect("start pg with timescaledb");
    let client = migrated(&pg).await;
    assert_eq!(
        storage_mode(&client).await.expect("mode"),
        StorageMode::TimescaleDb
    );
    check(&client).await;
}
