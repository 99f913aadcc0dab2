//! Every rule of the default pack that `alerts.rs` does not already drive, proven on real
//! clusters: the real agent collects a primary and its physical standby (both harness
//! clusters), the real `lasect-api` evaluates every second, and the test drives each condition
//! for real (replication delayed, a slot holding WAL, sessions filling max_connections, a long
//! statement, a failing archive_command, WAL beyond max_wal_size, a deadlock, a sort spilling
//! to disk, a table larger than shared_buffers, a disk filling up, a restart-only setting
//! changed, a collector failing, an internal error logged, a failed dump run, multixacts, a
//! slot losing its WAL, the standby's WAL receiver stopped, a family and an instance gone
//! quiet), waits until the rule fires, ends the condition and waits
//! until it resolves. Conditions are driven side by side on one stack and two clusters.
//!
//! The rules are applied with the CLI as copies of the default rules: the same name, family,
//! column, aggregation and comparison, with thresholds, windows and `for` small enough for a
//! test (the defaults wait minutes to hours, and some numbers — 1 GiB of lag, 2^30 multixacts
//! — cannot be reached in a test). `filesystem_full_forecast` keeps its condition (the linear
//! fit of free space must cross 0) with a 5-minute horizon over a 10 s fit instead of 24 h over
//! 6 h, and the disk is a 64 MiB tmpfs mounted for the primary's log directory (the family
//! watches the data, WAL and log filesystems), filled with 48 MiB: no other writer moves it.
//! Without root (no mount) the data disk is filled with 2 GiB instead, where builds and other
//! tests also write. `log_panic` cannot be driven without crashing a cluster on purpose
//! (PostgreSQL offers no way to log PANIC on request), so it is proven with a PANIC entry
//! inserted as the agent would store it; `log_corruption` is driven by a real XX001 error.
//! docs/ALERTS.md has the table of how each rule is proven.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use lasect_e2e::{ALERTS_EVERY_SECOND, ALLOW_ALL, Stack, wait_listening, write};
use lasect_testkit::{ChildGuard, LogFormat, PgCluster, PgOptions};

const AGENT_ID: &str = "alerts-pack-agent";
const BOUND: Duration = Duration::from_secs(120);

/// Copies of the default rules with test-sized numbers (same conditions otherwise).
const RULES: &str = r#"
rules:
  - name: replication_lag_bytes
    severity: warning
    condition: {kind: threshold, family: replication, column: replay_lag_bytes, agg: avg,
                by: [application_name], window_secs: 3, op: ">", threshold: 10000}
  - name: replication_lag_seconds
    severity: warning
    condition: {kind: threshold, family: replication, column: replay_lag_seconds, agg: avg,
                by: [application_name], window_secs: 3, op: ">", threshold: 2}
  - name: slot_inactive_retaining_wal
    severity: warning
    condition: {kind: threshold, family: replication_slot, column: retained_bytes, agg: last,
                by: [slot_name], where: [{column: active, op: eq, value: "false"}],
                window_secs: 3, op: ">", threshold: 1048576}
  - name: connections_near_max
    severity: warning
    condition: {kind: threshold, family: activity, column: connection_use_percent, agg: avg,
                window_secs: 2, op: ">", threshold: 60}
  - name: long_running_transaction
    severity: warning
    condition: {kind: threshold, family: activity, column: oldest_xact_age_seconds, agg: last,
                window_secs: 3, op: ">", threshold: 3}
  - name: archiver_failing
    severity: critical
    condition: {kind: threshold, family: archiver, column: failed_count, agg: rate,
                window_secs: 5, op: ">", threshold: 0}
  - name: checkpoints_requested
    severity: info
    condition: {kind: threshold, family: bgwriter, column: checkpoints_req, agg: rate,
                denominator: [checkpoints_req, checkpoints_timed], window_secs: 5, op: ">",
                threshold: 0.5}
  - name: deadlocks
    severity: warning
    condition: {kind: threshold, family: database, column: deadlocks, agg: rate,
                by: [datname], window_secs: 5, op: ">", threshold: 0}
  - name: temp_files_growth
    severity: info
    condition: {kind: threshold, family: database, column: temp_bytes, agg: rate,
                by: [datname], window_secs: 5, op: ">", threshold: 10000}
  - name: cache_hit_ratio_low
    severity: info
    condition: {kind: threshold, family: database, column: blks_hit, agg: rate,
                denominator: [blks_hit, blks_read], by: [datname],
                where: [{column: datname, op: eq, value: cold}],
                window_secs: 5, op: "<", threshold: 0.9}
  - name: filesystem_full_forecast
    severity: critical
    condition: {kind: forecast, family: host_filesystem, column: free_bytes,
                by: [mount_point], window_secs: 10, horizon_secs: 300, op: "<", threshold: 0}
  - name: settings_pending_restart
    severity: info
    condition: {kind: threshold, family: settings, column: pending_restart, agg: last,
                by: [name], window_secs: 3, op: ">", threshold: 0}
  - name: collector_failing
    severity: info
    condition: {kind: events, family: collector_event, by: [collector], window_secs: 5,
                op: ">", threshold: 0}
  - name: log_corruption
    severity: critical
    condition: {kind: events, family: log, where: [{column: sqlstate, op: prefix, value: XX}],
                window_secs: 5, op: ">", threshold: 0}
  - name: log_panic
    severity: critical
    condition: {kind: events, family: log, where: [{column: severity, op: eq, value: PANIC}],
                window_secs: 5, op: ">", threshold: 0}
  - name: runs_failed
    severity: warning
    condition: {kind: events, family: runs, by: [kind],
                where: [{column: kind, op: in, value: "migration,dump_sql,import_csv,schema_snapshot"},
                        {column: status, op: in, value: "failed,timed_out"}],
                window_secs: 10, op: ">", threshold: 0}
  - name: schema_breaking_change
    severity: info
    condition: {kind: events, family: schema_changes, by: [database],
                where: [{column: classification, op: eq, value: breaking}],
                window_secs: 10, op: ">", threshold: 0}
  - name: multixact_wraparound_warning
    severity: warning
    condition: {kind: threshold, family: database, column: datminmxid_age, agg: max,
                by: [datname], where: [{column: datname, op: eq, value: postgres}],
                window_secs: 3, op: ">", threshold: 0}
  - name: standby_wal_receiver_down
    severity: warning
    condition: {kind: threshold, family: standby, column: replay_lsn, agg: last,
                where: [{column: receiver_status, op: ne, value: streaming}],
                window_secs: 3, op: ">=", threshold: 0}
  - name: slot_invalidated
    severity: critical
    condition: {kind: events, family: replication_slot, by: [slot_name],
                where: [{column: wal_status, op: in, value: "lost,unreserved"}],
                window_secs: 3, op: ">", threshold: 0}
  - name: family_silent_activity
    severity: warning
    condition: {kind: absence, target: family, family: activity, seconds: 6}
  - name: family_silent_database
    severity: warning
    condition: {kind: absence, target: family, family: database, seconds: 6}
  - name: instance_silent
    severity: critical
    condition: {kind: absence, target: instance, seconds: 8}
"#;

/// Rules whose condition holds until the test ends it.
const HELD: &[&str] = &[
    "replication_lag_bytes",
    "replication_lag_seconds",
    "slot_inactive_retaining_wal",
    "connections_near_max",
    "long_running_transaction",
    "settings_pending_restart",
    "multixact_wraparound_warning",
];

/// Every rule driven here (the silent ones come last, on their own).
const DRIVEN: &[&str] = &[
    "replication_lag_bytes",
    "replication_lag_seconds",
    "slot_inactive_retaining_wal",
    "connections_near_max",
    "long_running_transaction",
    "archiver_failing",
    "checkpoints_requested",
    "deadlocks",
    "temp_files_growth",
    "cache_hit_ratio_low",
    "filesystem_full_forecast",
    "settings_pending_restart",
    "collector_failing",
    "log_corruption",
    "log_panic",
    "runs_failed",
    "schema_breaking_change",
    "multixact_wraparound_warning",
];

/// The agent's config; `quiet_standby`: the standby's activity and database families are
/// collected once an hour (so they go silent while the agent runs).
fn agent_config(stack: &Stack, primary: &PgCluster, standby: &PgCluster, quiet_standby: bool) {
    let every = "activity = 1, lock = 1, replication = 1, replication_slot = 1, archiver = 1, \
                 bgwriter = 1, settings = 1, host_filesystem = 1, database = 1, standby = 1";
    let standby_intervals = if quiet_standby {
        "intervals = { activity = 3600, database = 3600 }\n"
    } else {
        ""
    };
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 1\nhost = true\nintervals = {{ {every} }}\n\
             [[collect.custom]]\nname = \"probe_rows\"\n\
             sql = \"SELECT count(*)::float8 AS n FROM probe\"\nvalues = [\"n\"]\ninterval_secs = 1\n\
             [control]\n{ALLOW_ALL}\n\
             [[instances]]\nname = \"primary\"\ndsn = \"{}\"\nallow_privileged_runs = true\n\
             [[instances]]\nname = \"standby\"\ndsn = \"{}\"\n{standby_intervals}",
            primary.dsn("postgres"),
            standby.dsn("postgres"),
        ),
    );
}

/// The newest alert of `rule` (any key): its state and instance name.
async fn state(store: &tokio_postgres::Client, rule: &str) -> Option<(String, String)> {
    state_of(store, rule, None).await
}

/// The newest alert of `rule`, of the key label `(name, value)` when given.
async fn state_of(
    store: &tokio_postgres::Client,
    rule: &str,
    key: Option<(&str, &str)>,
) -> Option<(String, String)> {
    let (label, value) = key.unzip();
    store
        .query_opt(
            "SELECT a.state, coalesce(i.name, '') FROM alert_instances a \
             JOIN alert_rules r ON r.id = a.rule_id LEFT JOIN instances i ON i.id = a.instance_id \
             WHERE r.name = $1 AND ($2::text IS NULL OR a.key_labels ->> $2 = $3) \
             ORDER BY a.since DESC, a.id DESC LIMIT 1",
            &[&rule, &label, &value],
        )
        .await
        .expect("alert state")
        .map(|r| (r.get(0), r.get(1)))
}

/// Waits until every rule of `rules` is in state `want`; names those that are not.
async fn wait_all(store: &tokio_postgres::Client, rules: &[&str], want: &str) {
    let start = Instant::now();
    loop {
        let mut missing = Vec::new();
        for rule in rules {
            let now = state(store, rule).await;
            if now.as_ref().map(|s| s.0.as_str()) != Some(want) {
                missing.push(format!("{rule}: {now:?}"));
            }
        }
        if missing.is_empty() {
            eprintln!("{} {want} after {:?}", rules.join(", "), start.elapsed());
            return;
        }
        assert!(
            start.elapsed() < BOUND,
            "not {want} within {BOUND:?}: {}",
            missing.join(", ")
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Repeats `pulse` (something that happens and is over, like a deadlock) until `rule` fires.
async fn pulse_until_firing<F, Fut>(store: &tokio_postgres::Client, rule: &str, pulse: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    pulse_until_firing_in(store, rule, None, pulse).await;
}

/// [`pulse_until_firing`] for the alert of key label `(name, value)`.
async fn pulse_until_firing_in<F, Fut>(
    store: &tokio_postgres::Client,
    rule: &str,
    key: Option<(&str, &str)>,
    mut pulse: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    while state_of(store, rule, key)
        .await
        .is_none_or(|s| s.0 != "firing")
    {
        assert!(
            start.elapsed() < BOUND,
            "{rule} did not fire within {BOUND:?}"
        );
        pulse().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("{rule} firing after {:?}", start.elapsed());
}

/// A small tmpfs for the primary's log directory, so the filesystem the forecast watches has
/// no other writer (the machine's own disk sees builds and other tests); unmounted on drop.
/// `None` when it cannot be mounted (not root): the forecast then watches the data disk.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m,mode=0777", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A schema snapshot run of `instance`, ended and succeeded.
async fn snapshot(stack: &Stack, instance: i64) {
    let (status, run) = stack
        .api(
            reqwest::Method::POST,
            &format!("api/v1/instances/{instance}/schema/snapshots"),
            Some(serde_json::json!({})),
        )
        .await;
    let run = stack
        .wait_run(crate::support::created_run(status, &run))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
}

/// Runs each statement on its own (ALTER SYSTEM refuses a multi-statement string).
async fn each(client: &tokio_postgres::Client, statements: &[&str]) {
    for sql in statements {
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

async fn deadlock(cluster: &PgCluster) {
    let a = cluster.connect("driven").await.expect("connect");
    let b = cluster.connect("driven").await.expect("connect");
    a.batch_execute("BEGIN; UPDATE d SET v = v + 1 WHERE id = 1")
        .await
        .expect("a locks 1");
    b.batch_execute("BEGIN; UPDATE d SET v = v + 1 WHERE id = 2")
        .await
        .expect("b locks 2");
    let waiting = tokio::spawn(async move {
        let r = a.batch_execute("UPDATE d SET v = v + 1 WHERE id = 2").await;
        let _ = a.batch_execute("ROLLBACK").await;
        r
    });
    // a waits for b; b now waits for a: one of them is the deadlock victim (40P01).
    let r = b.batch_execute("UPDATE d SET v = v + 1 WHERE id = 1").await;
    let _ = b.batch_execute("ROLLBACK").await;
    let other = waiting.await.expect("join");
    let victims = [r, other]
        .iter()
        .filter(|r| {
            r.as_ref()
                .err()
                .and_then(|e| e.code())
                .is_some_and(|c| c.code() == "40P01")
        })
        .count();
    assert_eq!(victims, 1, "exactly one deadlock victim");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_default_rule_fires_on_a_driven_cluster_and_resolves() {
    let _guard = crate::support::fault_test().await;
    let stack = Stack::new(AGENT_ID).await;
    // Declared before the clusters: unmounted after they stop.
    let small_disk = SmallDisk::mount();
    let mut settings = Vec::new();
    if let Some(disk) = &small_disk {
        settings.push((
            "log_directory".to_owned(),
            format!("'{}'", disk.path().display()),
        ));
    }
    let primary = PgCluster::start(PgOptions {
        log_format: Some(LogFormat::Json),
        settings: vec![
            ("max_connections".into(), "40".into()),
            ("shared_buffers".into(), "'16MB'".into()),
            ("max_wal_size".into(), "'32MB'".into()),
            ("min_wal_size".into(), "'32MB'".into()),
            // The standby has no slot: without a margin, the checkpoints of the slot pulses
            // below can remove a segment its WAL sender has not sent yet, and it never
            // streams again (what a DBA sets for a slotless standby).
            ("wal_keep_size".into(), "'128MB'".into()),
            ("archive_mode".into(), "on".into()),
            ("archive_command".into(), "'false'".into()),
            ("deadlock_timeout".into(), "'100ms'".into()),
        ]
        .into_iter()
        .chain(settings)
        .collect(),
        ..PgOptions::default()
    })
    .expect("primary");
    let standby = primary.start_replica(None).expect("standby");
    let db = primary.connect("postgres").await.expect("connect");
    db.batch_execute(
        "CREATE TABLE probe (i int); CREATE TABLE m (id int PRIMARY KEY); \
         INSERT INTO m VALUES (1)",
    )
    .await
    .expect("set up");
    primary.create_database("driven").await.expect("driven db");
    // Sorts spill to disk in this database only (the agent's own queries in `postgres` would
    // spill too with so little memory).
    db.batch_execute("ALTER DATABASE driven SET work_mem = '64kB'")
        .await
        .expect("work_mem");
    primary.create_database("cold").await.expect("cold db");
    let driven = primary.connect("driven").await.expect("connect driven");
    driven
        .batch_execute(
            "CREATE TABLE d (id int PRIMARY KEY, v int); INSERT INTO d VALUES (1, 0), (2, 0)",
        )
        .await
        .expect("driven");
    let cold = primary.connect("cold").await.expect("connect cold");
    // Three times shared_buffers: a sequential scan reads it through a small ring.
    cold.batch_execute(
        "CREATE TABLE big WITH (autovacuum_enabled = off) AS \
         SELECT g AS id, repeat('x', 200) AS pad \
         FROM generate_series(1, 250000) AS g",
    )
    .await
    .expect("big table");

    let mut ingest = stack.spawn_ingest("[agents]\nrefresh_interval_secs = 1\n");
    let mut api = ChildGuard::spawn(stack.api_command(ALERTS_EVERY_SECOND)).expect("spawn api");
    wait_listening(&mut ingest);
    wait_listening(&mut api);
    let rules = stack.path("rules.yaml");
    write(&rules, RULES);
    stack.cli(&[
        "alert",
        "rule",
        "apply",
        "-f",
        rules.to_str().expect("path"),
    ]);
    agent_config(&stack, &primary, &standby, false);
    let mut agent = stack.start_agent(&[]);
    let store = stack.store().await;
    let primary_id = stack.instance_id("primary").await;
    stack.instance_id("standby").await;

    // Conditions that hold until they are ended.
    // Replication: the standby applies WAL an hour late; a slot nobody uses keeps WAL.
    let sb = standby.connect("postgres").await.expect("connect standby");
    each(
        &sb,
        &[
            "ALTER SYSTEM SET recovery_min_apply_delay = '1h'",
            "SELECT pg_reload_conf()",
        ],
    )
    .await;
    db.batch_execute("SELECT pg_create_physical_replication_slot('held', true)")
        .await
        .expect("slot");
    // Sessions: 26 more of max_connections = 40 (the agent and the test hold a few).
    let mut crowd = Vec::new();
    for _ in 0..26 {
        crowd.push(primary.connect("postgres").await.expect("connect"));
    }
    // A statement that runs until it is cancelled.
    let sleeper = primary.connect("postgres").await.expect("connect");
    let sleeping = tokio::spawn(async move {
        sleeper
            .batch_execute("SELECT pg_sleep(600) /* lasect_long */")
            .await
    });
    // A restart-only setting changed and reloaded (not one the harness sets, so that
    // resetting it ends the condition).
    each(
        &db,
        &[
            "ALTER SYSTEM SET max_prepared_transactions = 5",
            "SELECT pg_reload_conf()",
        ],
    )
    .await;
    // Multixacts: two sessions share a row lock.
    let s1 = primary.connect("postgres").await.expect("connect");
    let s2 = primary.connect("postgres").await.expect("connect");
    for s in [&s1, &s2] {
        s.batch_execute("BEGIN; SELECT * FROM m WHERE id = 1 FOR SHARE")
            .await
            .expect("share");
    }
    for s in [&s1, &s2] {
        s.batch_execute("COMMIT").await.expect("commit");
    }
    // WAL the standby receives but does not apply, and the slot retains.
    db.batch_execute(
        "CREATE TABLE w AS SELECT g, repeat('w', 300) AS pad FROM generate_series(1, 50000) g",
    )
    .await
    .expect("write WAL");

    // Events and rates: something happens and is over (a failure, a deadlock, a spilling
    // sort, …); its rule fires, and resolves once the window has passed without another.
    // Each is repeated until its rule fires.
    // The custom collector's table gone: it fails (one event while it keeps failing).
    db.batch_execute("DROP TABLE probe")
        .await
        .expect("drop probe");
    pulse_until_firing(&store, "collector_failing", || async {}).await;
    db.batch_execute("CREATE TABLE probe (i int)")
        .await
        .expect("probe back");
    // A disk fills: the small tmpfs of the primary's log directory (48 of 64 MiB) when it
    // could be mounted, else the data disk (2 GiB).
    let (filler, mount_point, mib) = match &small_disk {
        Some(disk) => (
            disk.path().join("filler.bin"),
            Some(disk.path().display().to_string()),
            48,
        ),
        None => (stack.path("filler.bin"), None, 2048),
    };
    {
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..mib {
            f.write_all(&chunk).expect("write filler");
        }
        f.sync_all().expect("sync filler");
    }
    pulse_until_firing_in(
        &store,
        "filesystem_full_forecast",
        mount_point.as_deref().map(|m| ("mount_point", m)),
        || async {},
    )
    .await;
    std::fs::remove_file(&filler).expect("remove filler");
    pulse_until_firing(&store, "log_panic", || async {
        store
            .execute(
                "INSERT INTO metric_log (time, instance_id, severity, sqlstate, message, source) \
                 VALUES (now(), $1, 'PANIC', '58030', 'could not write to file', 'pg_log')",
                &[&primary_id],
            )
            .await
            .expect("panic entry");
    })
    .await;
    pulse_until_firing(&store, "log_corruption", || async {
        let e = db
            .batch_execute(
                "DO $$ BEGIN RAISE EXCEPTION 'lasect test: page verification failed' \
                 USING ERRCODE = 'XX001'; END $$",
            )
            .await
            .expect_err("raised");
        assert_eq!(e.code().map(|c| c.code()), Some("XX001"), "{e}");
    })
    .await;
    pulse_until_firing_in(&store, "deadlocks", Some(("datname", "driven")), || {
        deadlock(&primary)
    })
    .await;
    pulse_until_firing_in(
        &store,
        "temp_files_growth",
        Some(("datname", "driven")),
        || async {
            driven
                .batch_execute(
                    "SELECT g FROM generate_series(1, 200000) g ORDER BY g DESC OFFSET 199999",
                )
                .await
                .expect("spilling sort");
        },
    )
    .await;
    pulse_until_firing_in(
        &store,
        "cache_hit_ratio_low",
        Some(("datname", "cold")),
        || async {
            cold.batch_execute("SELECT count(*) FROM big")
                .await
                .expect("cold scan");
        },
    )
    .await;
    // Completed WAL segments the failing archive_command refuses.
    pulse_until_firing(&store, "archiver_failing", || async {
        db.batch_execute("INSERT INTO m SELECT max(id) + 1 FROM m; SELECT pg_switch_wal()")
            .await
            .expect("switch WAL");
    })
    .await;
    // More WAL than max_wal_size between two timed checkpoints: requested ones.
    pulse_until_firing(&store, "checkpoints_requested", || async {
        db.batch_execute(
            "INSERT INTO w SELECT g, repeat('c', 300) FROM generate_series(1, 100000) g",
        )
        .await
        .expect("write WAL");
    })
    .await;
    // A dump of a table that does not exist: a failed dump_sql run.
    pulse_until_firing(&store, "runs_failed", || async {
        let dumped = stack
            .cli_command(&[
                "data",
                "dump",
                "--instance",
                "primary",
                "--table",
                "public.no_such_table",
                "--out",
                stack.path("nothing.sql").to_str().expect("path"),
            ])
            .env("LASECT_TOKEN", &stack.admin_token)
            .output()
            .expect("run the CLI");
        assert!(
            !dumped.status.success(),
            "the dump of a missing table fails"
        );
    })
    .await;
    // A column dropped between two schema snapshots: a breaking change.
    db.batch_execute("CREATE TABLE orders (id int, note text)")
        .await
        .expect("orders");
    snapshot(&stack, primary_id).await;
    db.batch_execute("ALTER TABLE orders DROP COLUMN note")
        .await
        .expect("drop column");
    snapshot(&stack, primary_id).await;
    pulse_until_firing(&store, "schema_breaking_change", || async {}).await;
    wait_all(&store, HELD, "firing").await;
    assert_eq!(
        state(&store, "replication_lag_bytes").await.map(|s| s.1),
        Some("primary".to_owned())
    );

    // Every condition ends.
    each(
        &sb,
        &[
            "ALTER SYSTEM SET recovery_min_apply_delay = 0",
            "SELECT pg_reload_conf()",
        ],
    )
    .await;
    each(
        &db,
        &[
            "SELECT pg_drop_replication_slot('held')",
            // Back to the running value (a RESET would leave it pending: the removal of a
            // restart-only setting from the file also waits for a restart).
            "ALTER SYSTEM SET max_prepared_transactions = 0",
            "ALTER SYSTEM SET archive_command = 'true'",
            "SELECT pg_reload_conf()",
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
             WHERE query LIKE '%lasect_long%' AND pid <> pg_backend_pid()",
        ],
    )
    .await;
    let cancelled = sleeping.await.expect("join").expect_err("cancelled");
    assert_eq!(
        cancelled.code().map(|c| c.code()),
        Some("57014"),
        "{cancelled}"
    );
    drop(crowd);
    db.batch_execute("VACUUM (FREEZE)").await.expect("freeze");
    // Archiving works again: the next segment is archived.
    db.batch_execute("INSERT INTO m SELECT max(id) + 1 FROM m; SELECT pg_switch_wal()")
        .await
        .expect("switch WAL");
    let others: Vec<&str> = DRIVEN
        .iter()
        .copied()
        .filter(|r| *r != "filesystem_full_forecast")
        .collect();
    wait_all(&store, &others, "resolved").await;
    // The filled disk's own alert (other disks may see other writers).
    let start = Instant::now();
    let disk = mount_point.as_deref().map(|m| ("mount_point", m));
    while state_of(&store, "filesystem_full_forecast", disk)
        .await
        .is_none_or(|s| s.0 != "resolved")
    {
        assert!(
            start.elapsed() < BOUND,
            "filesystem_full_forecast not resolved"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let archived: i64 = db
        .query_one("SELECT archived_count FROM pg_stat_archiver", &[])
        .await
        .expect("archiver")
        .get(0);
    assert!(archived > 0, "archiving resumed");

    // A slot loses its WAL: max_slot_wal_keep_size exceeded, then a checkpoint invalidates it
    // (`unreserved` before the checkpoint, `lost` after; wal_keep_size's segments past it
    // first). The standby has no slot: the limit does not touch it.
    each(
        &db,
        &[
            "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'",
            "SELECT pg_reload_conf()",
            "SELECT pg_create_physical_replication_slot('lost', true)",
        ],
    )
    .await;
    pulse_until_firing_in(
        &store,
        "slot_invalidated",
        Some(("slot_name", "lost")),
        || async {
            db.batch_execute(
                "INSERT INTO m SELECT max(id) + 1 FROM m; SELECT pg_switch_wal(); CHECKPOINT",
            )
            .await
            .expect("WAL past the slot's limit");
        },
    )
    .await;
    each(
        &db,
        &[
            "SELECT pg_drop_replication_slot('lost')",
            "ALTER SYSTEM RESET max_slot_wal_keep_size",
            "SELECT pg_reload_conf()",
        ],
    )
    .await;
    // The standby's WAL receiver stops (no primary_conninfo) and starts again. Nothing is
    // written meanwhile, so the WAL it resumes from is still on the primary.
    let conninfo: String = sb
        .query_one("SHOW primary_conninfo", &[])
        .await
        .expect("primary_conninfo")
        .get(0);
    each(
        &sb,
        &[
            "ALTER SYSTEM SET primary_conninfo = ''",
            "SELECT pg_reload_conf()",
        ],
    )
    .await;
    wait_all(&store, &["standby_wal_receiver_down"], "firing").await;
    assert_eq!(
        state(&store, "standby_wal_receiver_down")
            .await
            .map(|s| s.1),
        Some("standby".to_owned())
    );
    let restore = format!(
        "ALTER SYSTEM SET primary_conninfo = '{}'",
        conninfo.replace('\'', "''")
    );
    each(&sb, &[restore.as_str(), "SELECT pg_reload_conf()"]).await;
    wait_all(
        &store,
        &["slot_invalidated", "standby_wal_receiver_down"],
        "resolved",
    )
    .await;

    // Families of the standby go quiet while the agent runs, then come back.
    agent.terminate(Duration::from_secs(10));
    agent_config(&stack, &primary, &standby, true);
    let mut agent = stack.start_agent(&[]);
    let silent = ["family_silent_activity", "family_silent_database"];
    wait_all(&store, &silent, "firing").await;
    for rule in silent {
        assert_eq!(
            state(&store, rule).await.map(|s| s.1),
            Some("standby".to_owned()),
            "{rule}"
        );
    }
    agent.terminate(Duration::from_secs(10));
    agent_config(&stack, &primary, &standby, false);
    let _agent = stack.start_agent(&[]);
    wait_all(&store, &silent, "resolved").await;

    // The standby stops: its instance is silent; it starts again.
    standby.stop().expect("stop standby");
    wait_all(&store, &["instance_silent"], "firing").await;
    assert_eq!(
        state(&store, "instance_silent").await.map(|s| s.1),
        Some("standby".to_owned())
    );
    standby.restart().expect("start standby");
    wait_all(&store, &["instance_silent"], "resolved").await;
}
