//! Collectors against real PostgreSQL clusters.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lasect_agent::collect::{Collector, Tick};
use lasect_agent::config::{CollectConfig, Dsn, InstanceConfig};
use lasect_proto::v1::sample::Family;
use lasect_proto::v1::{DatabaseRow, HostCpu, HostMemory, InstanceInfo, SampleBatch};
use lasect_testkit::{PgCluster, PgOptions};

fn instance(name: &str, dsn: String) -> InstanceConfig {
    InstanceConfig {
        name: name.into(),
        dsn: Dsn::new(dsn),
        run_dsn: None,
        allow_privileged_runs: false,
        intervals: Default::default(),
        max_connections: None,
        databases: None,
    }
}

fn collect(host: bool) -> CollectConfig {
    CollectConfig {
        host,
        ..CollectConfig::default()
    }
}

/// A tick at which every family is due: each call is an hour later than
/// the previous one on the collector's clock.
async fn tick_all(collector: &mut Collector) -> Tick {
    use std::sync::atomic::{AtomicU64, Ordering};
    static HOURS: AtomicU64 = AtomicU64::new(1);
    let later = Duration::from_secs(3600 * HOURS.fetch_add(1, Ordering::Relaxed));
    collector.tick_at(tokio::time::Instant::now() + later).await
}

fn start_pg() -> PgCluster {
    PgCluster::start(PgOptions::default()).expect("start pg")
}

fn databases<'a>(batch: &'a SampleBatch, instance: &str) -> Vec<&'a DatabaseRow> {
    batch
        .samples
        .iter()
        .filter(|s| s.instance == instance)
        .filter_map(|s| match &s.family {
            Some(Family::Database(d)) => Some(d.databases.iter()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn database<'a>(batch: &'a SampleBatch, instance: &str, datname: &str) -> &'a DatabaseRow {
    databases(batch, instance)
        .into_iter()
        .find(|d| d.datname == datname)
        .unwrap_or_else(|| panic!("no row for database {datname:?} of {instance:?}"))
}

fn instance_info<'a>(batch: &'a SampleBatch, instance: &str) -> &'a InstanceInfo {
    batch
        .samples
        .iter()
        .filter(|s| s.instance == instance)
        .find_map(|s| match &s.family {
            Some(Family::InstanceInfo(i)) => Some(i),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no instance_info for {instance:?}"))
}

fn host(batch: &SampleBatch) -> (&HostCpu, &HostMemory) {
    let cpu = batch.samples.iter().find_map(|s| match &s.family {
        Some(Family::HostCpu(c)) => Some(c),
        _ => None,
    });
    let mem = batch.samples.iter().find_map(|s| match &s.family {
        Some(Family::HostMemory(m)) => Some(m),
        _ => None,
    });
    (
        cpu.expect("host_cpu sample"),
        mem.expect("host_memory sample"),
    )
}

fn failed(tick: &Tick) -> Vec<&str> {
    tick.failures
        .iter()
        .map(|(name, _)| name.as_str())
        .collect()
}

#[track_caller]
fn assert_ok(tick: &Tick) {
    assert!(
        tick.failures.is_empty(),
        "unexpected failures: {:?}",
        tick.failures
            .iter()
            .map(|(n, e)| format!("{n}: {e}"))
            .collect::<Vec<_>>()
    );
}

fn now_micros() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(now.as_micros()).expect("fits")
}

#[tokio::test]
async fn xact_commit_grows_between_ticks() {
    let pg = start_pg();
    pg.create_database("app").await.expect("create app");
    let mut collector =
        Collector::new(&[instance("main", pg.dsn("postgres"))], &collect(true)).expect("collector");

    let first = tick_all(&mut collector).await;
    assert_ok(&first);
    let before = database(&first.batch, "main", "app")
        .xact_commit
        .expect("xact_commit collected");

    let app = pg.connect("app").await.expect("connect app");
    for i in 0..20 {
        app.batch_execute(&format!("SELECT {i}"))
            .await
            .expect("transaction");
    }
    // PG 15+ flushes a backend's counters lazily; ask for it (older
    // servers lack the function, and their collector gets there on its own).
    let _ = app.batch_execute("SELECT pg_stat_force_next_flush()").await;

    // Counters reach pg_stat_database asynchronously: poll, bounded.
    let mut after = before;
    for _ in 0..300 {
        let tick = tick_all(&mut collector).await;
        assert_ok(&tick);
        after = database(&tick.batch, "main", "app")
            .xact_commit
            .expect("xact_commit collected");
        if after >= before + 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        after >= before + 20,
        "xact_commit went from {before} to {after}"
    );
}

#[tokio::test]
async fn a_tick_holds_instance_database_and_host_samples() {
    let pg = start_pg();
    pg.create_database("app").await.expect("create app");
    let mut collector =
        Collector::new(&[instance("main", pg.dsn("postgres"))], &collect(true)).expect("collector");
    let start = now_micros();
    let tick = tick_all(&mut collector).await;
    let end = now_micros();
    assert_ok(&tick);

    for s in &tick.batch.samples {
        assert!(
            (start..=end).contains(&s.time_unix_micros),
            "sample time {} outside the tick [{start}, {end}]",
            s.time_unix_micros
        );
        assert!(s.family.is_some());
    }
    let rows = databases(&tick.batch, "main");
    let names: Vec<&str> = rows.iter().map(|d| d.datname.as_str()).collect();
    for expected in ["app", "postgres", "template1"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    assert!(
        !names.contains(&""),
        "the shared-objects row must be skipped"
    );
    let app = database(&tick.batch, "main", "app");
    assert!(app.datid > 0);
    assert!(app.size_bytes.is_some_and(|b| b > 0), "{app:?}");
    for counter in [
        app.numbackends,
        app.xact_commit,
        app.xact_rollback,
        app.blks_read,
        app.blks_hit,
        app.tup_returned,
        app.tup_fetched,
        app.tup_inserted,
        app.tup_updated,
        app.tup_deleted,
        app.conflicts,
        app.temp_files,
        app.temp_bytes,
        app.deadlocks,
    ] {
        assert!(counter.is_some_and(|c| c >= 0), "{app:?}");
    }
    // The collector's own connection shows up in `postgres`.
    let postgres = database(&tick.batch, "main", "postgres");
    assert!(postgres.numbackends.is_some_and(|n| n >= 1), "{postgres:?}");

    let (cpu, mem) = host(&tick.batch);
    assert!(cpu.cpu_count >= 1);
    assert!((0.0..=100.0).contains(&cpu.usage_percent));
    assert!(cpu.load1 >= 0.0);
    assert!(mem.total_bytes > 0 && mem.used_bytes <= mem.total_bytes);
    assert!(mem.available_bytes <= mem.total_bytes);
}

/// The wraparound ages are `pg_database`'s own: present for every database, within
/// 0..2^31, growing as transaction ids are spent and falling when `VACUUM FREEZE`
/// advances `datfrozenxid`.
#[tokio::test]
async fn wraparound_ages_follow_pg_database() {
    let pg = start_pg();
    pg.create_database("app").await.expect("create app");
    let app = pg.connect("app").await.expect("connect app");
    let mut collector = Collector::new(&[instance("main", pg.dsn("postgres"))], &collect(false))
        .expect("collector");
    let server_age = async || -> i64 {
        let row = app
            .query_one(
                "SELECT age(datfrozenxid)::int8 FROM pg_database WHERE datname = 'app'",
                &[],
            )
            .await
            .expect("age of app");
        row.get(0)
    };

    // Each statement of its own spends one transaction id.
    for _ in 0..50 {
        app.batch_execute("SELECT txid_current()")
            .await
            .expect("spend a transaction id");
    }
    let before = server_age().await;
    let tick = tick_all(&mut collector).await;
    let after = server_age().await;
    assert_ok(&tick);
    let rows = databases(&tick.batch, "main");
    assert!(rows.len() >= 3, "{rows:?}");
    for db in &rows {
        for age in [db.datfrozenxid_age, db.datminmxid_age] {
            assert!(
                age.is_some_and(|a| (0..1 << 31).contains(&a)),
                "{}: {db:?}",
                db.datname
            );
        }
    }
    let spent = database(&tick.batch, "main", "app")
        .datfrozenxid_age
        .expect("age collected");
    assert!(
        spent >= 50 && (before..=after).contains(&spent),
        "collected {spent}, the server said {before} then {after}"
    );

    app.batch_execute("VACUUM (FREEZE)")
        .await
        .expect("vacuum freeze");
    let frozen = server_age().await;
    let tick = tick_all(&mut collector).await;
    assert_ok(&tick);
    let collected = database(&tick.batch, "main", "app")
        .datfrozenxid_age
        .expect("age collected");
    assert!(
        collected < spent && collected >= frozen,
        "after VACUUM FREEZE: collected {collected}, before it {spent}, the server said {frozen}"
    );
}

#[tokio::test]
async fn instance_info_has_the_server_version() {
    let pg = start_pg();
    let client = pg.connect("postgres").await.expect("connect");
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .expect("version");
    let expected: i32 = row.get(0);

    // Over the unix socket this time.
    let dsn = format!(
        "host={} port={} user=postgres dbname=postgres",
        pg.socket_dir().display(),
        pg.port()
    );
    let mut collector =
        Collector::new(&[instance("main", dsn)], &collect(false)).expect("collector");
    let tick = tick_all(&mut collector).await;
    assert_ok(&tick);
    let info = instance_info(&tick.batch, "main");
    assert_eq!(info.server_version_num, expected);
    assert!(info.version.starts_with("PostgreSQL "), "{}", info.version);
    assert!(!info.in_recovery);
    // host = false: no host samples.
    assert!(tick.batch.samples.iter().all(|s| s.instance == "main"));

    // The collector's session identifies itself and bounds its statements.
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lasect-agent'",
            &[],
        )
        .await
        .expect("activity");
    assert_eq!(row.get::<_, i64>(0), 1, "one connection, reused");
    let tick = tick_all(&mut collector).await;
    assert_ok(&tick);
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lasect-agent'",
            &[],
        )
        .await
        .expect("activity");
    assert_eq!(
        row.get::<_, i64>(0),
        1,
        "still one connection after a second tick"
    );
}

#[tokio::test]
async fn a_database_refusing_connections_is_still_sized() {
    let pg = start_pg();
    pg.create_database("closed").await.expect("create closed");
    let client = pg.connect("postgres").await.expect("connect");
    client
        .batch_execute("ALTER DATABASE closed ALLOW_CONNECTIONS false")
        .await
        .expect("alter");
    let mut collector = Collector::new(&[instance("main", pg.dsn("postgres"))], &collect(false))
        .expect("collector");
    let tick = tick_all(&mut collector).await;
    assert_ok(&tick);
    // pg_database_size() reads the directory; it does not connect.
    let closed = database(&tick.batch, "main", "closed");
    assert!(closed.size_bytes.is_some_and(|b| b > 0), "{closed:?}");
    assert!(closed.xact_commit.is_some(), "counters still collected");
    assert!(
        database(&tick.batch, "main", "template0")
            .size_bytes
            .is_some_and(|b| b > 0)
    );
}

#[tokio::test]
async fn a_database_the_role_may_not_size_loses_only_its_size() {
    let pg = start_pg();
    pg.create_database("secret").await.expect("create secret");
    let client = pg.connect("postgres").await.expect("connect");
    client
        .batch_execute(
            "CREATE ROLE lasect_agent LOGIN;
             REVOKE CONNECT ON DATABASE secret FROM PUBLIC;",
        )
        .await
        .expect("set up role");
    let dsn = format!(
        "host=127.0.0.1 port={} user=lasect_agent dbname=postgres",
        pg.port()
    );
    let mut collector =
        Collector::new(&[instance("main", dsn)], &collect(false)).expect("collector");
    let tick = tick_all(&mut collector).await;
    assert_ok(&tick);
    assert_eq!(database(&tick.batch, "main", "secret").size_bytes, None);
    assert!(
        database(&tick.batch, "main", "postgres")
            .size_bytes
            .is_some()
    );
    // The agent asked for the privilege instead of provoking an ERROR that
    // would land in the monitored server's log on every tick: not for the
    // sizes, nor for the directories host_filesystem looks at (hidden
    // settings; the wording of that ERROR changed in PostgreSQL 18).
    let log = std::fs::read_to_string(pg.log_path()).expect("server log");
    assert!(!log.contains("ERROR:"), "{log}");
}

#[tokio::test]
async fn a_stopped_cluster_fails_its_instance_only_and_recovers() {
    let pg_a = start_pg();
    let pg_b = start_pg();
    let mut collector = Collector::new(
        &[
            instance("a", pg_a.dsn("postgres")),
            instance("b", pg_b.dsn("postgres")),
        ],
        &collect(true),
    )
    .expect("collector");
    let tick = tick_all(&mut collector).await;
    assert_ok(&tick);
    instance_info(&tick.batch, "a");
    instance_info(&tick.batch, "b");

    pg_a.stop().expect("stop a");
    for _ in 0..3 {
        let tick = tick_all(&mut collector).await;
        assert_eq!(failed(&tick), ["a"]);
        // Only the failure itself, as a collector event (each tick is an
        // hour later, beyond the events' rate limit).
        let of_a: Vec<_> = tick
            .batch
            .samples
            .iter()
            .filter(|s| s.instance == "a")
            .collect();
        assert_eq!(of_a.len(), 1);
        match &of_a[0].family {
            Some(Family::CollectorEvent(e)) => {
                assert_eq!(
                    (e.collector.as_str(), e.kind.as_str()),
                    ("connection", "connect")
                );
            }
            other => panic!("expected a collector event, got {other:?}"),
        }
        instance_info(&tick.batch, "b");
        database(&tick.batch, "b", "postgres");
        host(&tick.batch);
    }

    // Back up: the collector reconnects by itself (after its backoff).
    pg_a.restart().expect("restart a");
    let mut recovered = false;
    for _ in 0..300 {
        let tick = tick_all(&mut collector).await;
        if tick.failures.is_empty() {
            instance_info(&tick.batch, "a");
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "instance a did not come back");
}

#[tokio::test]
async fn an_unreachable_instance_does_not_stop_the_others() {
    let pg = start_pg();
    let closed_port = lasect_testkit::free_port();
    let mut collector = Collector::new(
        &[
            instance(
                "gone",
                format!("host=127.0.0.1 port={closed_port} user=postgres dbname=postgres"),
            ),
            instance("main", pg.dsn("postgres")),
        ],
        &collect(true),
    )
    .expect("collector");
    for _ in 0..2 {
        let tick = tick_all(&mut collector).await;
        assert_eq!(failed(&tick), ["gone"]);
        instance_info(&tick.batch, "main");
        host(&tick.batch);
    }
}

/// Every family's SQL suits the server it runs on: no collector reports a
/// failure. `make test` runs this against PostgreSQL 18 too (pg_stat_wal
/// lost its write/sync counters there, pg_stat_checkpointer took
/// bgwriter's on 17), where `LASECT_PG_MAJOR` names the version to expect.
#[tokio::test]
async fn every_family_collects_on_this_server_version() {
    let pg = PgCluster::start(PgOptions {
        stat_statements: true,
        ..PgOptions::default()
    })
    .expect("start pg");
    let admin = pg.connect("postgres").await.expect("connect");
    admin
        .batch_execute(
            "CREATE EXTENSION pg_stat_statements;
             CREATE TABLE t AS SELECT g AS a FROM generate_series(1, 1000) AS g;
             CHECKPOINT;",
        )
        .await
        .expect("set up");
    let mut collector =
        Collector::new(&[instance("main", pg.dsn("postgres"))], &collect(true)).expect("collector");
    // Twice: `statement` sends rows only from its second round on.
    for round in 0..2 {
        let tick = tick_all(&mut collector).await;
        assert_ok(&tick);
        let events: Vec<String> = tick
            .batch
            .samples
            .iter()
            .filter_map(|s| match &s.family {
                Some(Family::CollectorEvent(e)) => Some(format!("{}: {}", e.collector, e.message)),
                _ => None,
            })
            .collect();
        assert!(events.is_empty(), "round {round}: {events:?}");
        if round == 0 {
            admin
                .batch_execute("SELECT count(*) FROM t")
                .await
                .expect("a statement between the rounds");
            continue;
        }

        let version = instance_info(&tick.batch, "main").server_version_num;
        if let Ok(major) = std::env::var("LASECT_PG_MAJOR") {
            let major: i32 = major.parse().expect("LASECT_PG_MAJOR");
            assert_eq!(version / 10_000, major, "the server this run asked for");
        }
        let family = |pick: fn(&Family) -> bool| {
            tick.batch
                .samples
                .iter()
                .filter_map(|s| s.family.as_ref())
                .find(|f| pick(f))
                .unwrap_or_else(|| panic!("a family is missing from {:?}", tick.batch))
        };
        let Family::Wal(wal) = family(|f| matches!(f, Family::Wal(_))) else {
            unreachable!()
        };
        assert!(wal.current_lsn.is_some_and(|l| l > 0), "{wal:?}");
        if version >= 140_000 {
            assert!(wal.wal_records.is_some_and(|n| n > 0), "{wal:?}");
            // On 18 from pg_stat_io: CHECKPOINT wrote WAL (syncs stay 0 with
            // the harness's fsync = off).
            assert!(wal.wal_write.is_some_and(|n| n > 0), "{wal:?}");
            assert!(wal.wal_sync.is_some(), "{wal:?}");
            assert!(wal.wal_write_time_ms.is_some(), "{wal:?}");
            assert!(wal.stats_reset_unix_micros.is_some(), "{wal:?}");
        }
        let Family::Bgwriter(bg) = family(|f| matches!(f, Family::Bgwriter(_))) else {
            unreachable!()
        };
        assert!(bg.checkpoints_req.is_some_and(|n| n > 0), "{bg:?}");
        assert!(bg.buffers_alloc.is_some(), "{bg:?}");
        let Family::Statement(st) = family(|f| matches!(f, Family::Statement(_))) else {
            unreachable!()
        };
        assert!(!st.rows.is_empty(), "{st:?}");
    }
}
