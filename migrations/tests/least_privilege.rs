//! The store migrated as its owner, an ordinary role, as on a real host: the
//! layout is chosen without any superuser-only setting, stores created by the
//! V1 first shipped still migrate, and on TimescaleDB (where installed) the
//! hypertables get compression.

use lasect_migrations::{
    MigrateError, SHIPPED_V1_CHECKSUM, StorageMode, maintain, migrate, storage_mode,
};
use lasect_testkit::{PgCluster, PgOptions};
use tokio_postgres::Client;

const OWNER: &str = "lasect_owner";

fn cluster() -> PgCluster {
    PgCluster::start(PgOptions::default()).expect("start pg")
}

/// Creates the role `OWNER` (no superuser, no pg_read_all_settings) and a
/// database it owns; `prepare` runs in it as superuser first (what an
/// administrator would do). Returns a connection as the owner.
async fn owner_store(pg: &PgCluster, db: &str, prepare: &str) -> Client {
    let admin = pg.connect("postgres").await.expect("connect as superuser");
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{OWNER}') THEN
                     CREATE ROLE {OWNER} LOGIN;
                 END IF;
             END $$;"
        ))
        .await
        .expect("create owner");
    admin
        .batch_execute(&format!("CREATE DATABASE {db} OWNER {OWNER}"))
        .await
        .expect("create store");
    if !prepare.is_empty() {
        let admin = pg.connect(db).await.expect("connect to store as superuser");
        admin.batch_execute(prepare).await.expect("prepare store");
    }
    let dsn = format!("host=127.0.0.1 port={} user={OWNER} dbname={db}", pg.port());
    let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .expect("connect as owner");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

async fn timescaledb_available(pg: &PgCluster) -> bool {
    pg.connect("postgres")
        .await
        .expect("connect")
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
            &[],
        )
        .await
        .expect("probe")
        .get(0)
}

#[tokio::test]
async fn layout_is_chosen_as_an_unprivileged_owner() {
    let pg = cluster();
    let mut owner = owner_store(&pg, "store", "").await;

    // The role is what a least-privileged store has: the setting V1 once read
    // is refused to it.
    let err = owner
        .query_one("SELECT current_setting('shared_preload_libraries')", &[])
        .await
        .expect_err("shared_preload_libraries is superuser-only");
    assert!(
        err.as_db_error()
            .is_some_and(|e| e.message().contains("pg_read_all_settings")),
        "{err:?}"
    );

    migrate(&mut owner).await.expect("migrate as the owner");
    assert_eq!(
        storage_mode(&owner).await.expect("mode"),
        StorageMode::Native
    );

    let facts = owner
        .query_one(
            "SELECT created, available, preloaded, may_create FROM lasect_timescaledb_facts()",
            &[],
        )
        .await
        .expect("the layout's facts, read as the owner");
    let (created, available, preloaded, may_create): (bool, bool, bool, bool) =
        (facts.get(0), facts.get(1), facts.get(2), facts.get(3));
    assert!(!created && !preloaded, "{facts:?}");
    assert_eq!(available, timescaledb_available(&pg).await);
    // Owning the database gives CREATE on it, but a role may create only a
    // trusted extension that is installed.
    if !available {
        assert!(!may_create, "nothing to create");
    }
}

#[tokio::test]
async fn storage_choice_for_each_situation() {
    let pg = cluster();
    let mut owner = owner_store(&pg, "store", "").await;
    migrate(&mut owner).await.expect("migrate as the owner");

    // forced, [created, available, preloaded, may_create] => layout or error.
    type Case = (
        Option<&'static str>,
        [bool; 4],
        Result<&'static str, &'static str>,
    );
    let cases: &[Case] = &[
        (None, [true, true, true, false], Ok("timescaledb")),
        (None, [false, true, true, true], Ok("timescaledb")),
        (None, [false, true, false, true], Ok("native")),
        (None, [false, true, true, false], Ok("native")),
        (None, [false, false, false, false], Ok("native")),
        (Some("native"), [true, true, true, true], Ok("native")),
        (
            Some("timescaledb"),
            [true, true, true, false],
            Ok("timescaledb"),
        ),
        (
            Some("timescaledb"),
            [false, false, false, true],
            Err("not installed on this server"),
        ),
        (
            Some("timescaledb"),
            [false, true, false, true],
            Err("not in shared_preload_libraries"),
        ),
        (
            Some("timescaledb"),
            [false, true, true, false],
            Err("an administrator must run CREATE EXTENSION timescaledb"),
        ),
        (
            Some("mongodb"),
            [false, false, false, false],
            Err("must be native or timescaledb"),
        ),
    ];
    for (forced, [created, available, preloaded, may_create], expected) in cases {
        let got = owner
            .query_one(
                "SELECT lasect_choose_metric_storage($1, $2, $3, $4, $5)",
                &[forced, created, available, preloaded, may_create],
            )
            .await;
        let case = format!("{forced:?} {created} {available} {preloaded} {may_create}");
        match (expected, got) {
            (Ok(layout), Ok(row)) => assert_eq!(row.get::<_, String>(0), *layout, "{case}"),
            (Err(part), Err(e)) => assert!(
                e.as_db_error().is_some_and(|d| d.message().contains(part)),
                "{case}: {e:?}"
            ),
            (expected, got) => panic!("{case}: expected {expected:?}, got {got:?}"),
        }
    }
}

/// A store created by the V1 first shipped (it read shared_preload_libraries)
/// keeps migrating although V1 was edited since.
#[tokio::test]
async fn store_of_the_shipped_v1_still_migrates() {
    let pg = cluster();
    pg.create_database("store").await.expect("create db");
    let mut client = pg.connect("store").await.expect("connect");
    let shipped = refinery::Migration::unapplied(
        "V1__foundation",
        include_str!("fixtures/V1__foundation.shipped.sql"),
    )
    .expect("shipped V1");
    assert_eq!(shipped.checksum(), SHIPPED_V1_CHECKSUM);
    refinery::Runner::new(&[shipped])
        .run_async(&mut client)
        .await
        .expect("apply the shipped V1");

    let report = migrate(&mut client)
        .await
        .expect("migrate past the shipped V1");
    assert_eq!(
        report.applied.first().map(String::as_str),
        Some("V2__families")
    );
    assert!(
        report.applied.iter().any(|m| m == "V22__compression"),
        "{report:?}"
    );
    let recorded: String = client
        .query_one(
            "SELECT checksum FROM refinery_schema_history WHERE version = 1",
            &[],
        )
        .await
        .expect("V1 in history")
        .get(0);
    assert_ne!(recorded, SHIPPED_V1_CHECKSUM.to_string());
    let again = migrate(&mut client).await.expect("migrate again");
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(
        storage_mode(&client).await.expect("mode"),
        StorageMode::Native
    );
}

/// Only the shipped V1 is accepted: any other divergence still stops.
#[tokio::test]
async fn other_divergence_is_still_refused() {
    for version in [1, 2] {
        let pg = cluster();
        pg.create_database("store").await.expect("create db");
        let mut client = pg.connect("store").await.expect("connect");
        migrate(&mut client).await.expect("migrate");
        client
            .execute(
                "UPDATE refinery_schema_history SET checksum = '42' WHERE version = $1",
                &[&version],
            )
            .await
            .expect("tamper");
        let err = migrate(&mut client).await.expect_err("divergent history");
        assert!(
            matches!(&err, MigrateError::Refinery(e)
                if matches!(e.kind(), refinery::error::Kind::DivergentVersion(..))),
            "V{version}: {err:?}"
        );
    }
}

/// Where TimescaleDB is installed: preloaded, created by an administrator in
/// the store database, then everything else done by the owner.
#[tokio::test]
async fn timescaledb_as_an_unprivileged_owner_when_available() {
    if !timescaledb_available(&cluster()).await {
        eprintln!(
            "timescaledb is not installed here (not in pg_available_extensions): \
             hypertable layout as an unprivileged owner not exercised"
        );
        return;
    }
    let pg = PgCluster::start(PgOptions {
        settings: vec![("shared_preload_libraries".into(), "'timescaledb'".into())],
        ..PgOptions::default()
    })
    .expect("start pg with timescaledb");
    let mut owner = owner_store(&pg, "store", "CREATE EXTENSION timescaledb").await;
    migrate(&mut owner).await.expect("migrate as the owner");
    assert_eq!(
        storage_mode(&owner).await.expect("mode"),
        StorageMode::TimescaleDb
    );
    let families: i64 = owner
        .query_one("SELECT count(*) FROM metric_families", &[])
        .await
        .expect("families")
        .get(0);
    let counts = owner
        .query_one(
            "SELECT count(*),
                    count(*) FILTER (WHERE compression_enabled),
                    (SELECT count(*) FROM timescaledb_information.jobs
                     WHERE proc_name = 'policy_compression'
                       AND (config ->> 'compress_after')::interval = interval '2 days')
             FROM timescaledb_information.hypertables",
            &[],
        )
        .await
        .expect("hypertables");
    assert_eq!(
        (
            counts.get::<_, i64>(0),
            counts.get::<_, i64>(1),
            counts.get::<_, i64>(2)
        ),
        (families, families, families)
    );
    let segmentby: String = owner
        .query_one(
            "SELECT segmentby FROM timescaledb_information.hypertable_compression_settings
             WHERE hypertable = 'metric_statement'::regclass",
            &[],
        )
        .await
        .expect("statement compression settings")
        .get(0);
    assert_eq!(
        segmentby.replace(['"', ' '], ""),
        "instance_id,queryid,dbid,userid,toplevel"
    );

    // Idempotent; a changed age replaces the policy.
    assert_eq!(
        maintain(&owner)
            .await
            .expect("maintain")
            .compression_changes,
        0
    );
    owner
        .execute(
            "UPDATE metric_families SET compress_after = interval '5 days' WHERE name = 'wal'",
            &[],
        )
        .await
        .expect("change age");
    assert_eq!(
        maintain(&owner)
            .await
            .expect("maintain")
            .compression_changes,
        1
    );
    let after: String = owner
        .query_one(
            "SELECT config ->> 'compress_after' FROM timescaledb_information.jobs
             WHERE proc_name = 'policy_compression' AND hypertable_name = 'metric_wal'",
            &[],
        )
        .await
        .expect("wal policy")
        .get(0);
    assert_eq!(after, "5 days");
}
