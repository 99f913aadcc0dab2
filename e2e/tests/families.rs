//! Metric families end to end over the real binaries, one set-up serving
//! several checks: a monitored cluster under a pgbench load is watched by
//! `lasect-agent` (1 s intervals), through `lasect-ingest` into the store,
//! read back through `lasect-api` with the `lasect` CLI.
//!
//! - `statement`: the stored calls deltas of a known query equal its
//!   executions, across a `pg_stat_statements_reset()`; pgbench's UPDATE
//!   is counted exactly; each text is stored once.
//! - bad input: a second instance on a database without pg_stat_statements,
//!   connecting as a role without pg_monitor, gives one warning and one
//!   `collector_event` per family it cannot read, and keeps its other
//!   families flowing. (The `log` family is off here: `logs.rs` covers it.)

use std::process::Command;
use std::time::{Duration, Instant};

use lasect_e2e::{Stack, run_ok, wait_listening};
use lasect_testkit::{ChildGuard, PgCluster, PgOptions};

const AGENT_ID: &str = "e2e-families";
const BOUND: Duration = Duration::from_secs(90);
const MARKER: &str = "lasect_known_query";

/// Polls `query` (one bigint) until `done` accepts it, within [`BOUND`].
async fn wait_for(
    store: &tokio_postgres::Client,
    what: &str,
    query: &str,
    done: impl Fn(i64) -> bool,
) -> i64 {
    let start = Instant::now();
    loop {
        let value = store
            .query_one(query, &[])
            .await
            .ok()
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .unwrap_or(0);
        if done(value) {
            return value;
        }
        assert!(
            start.elapsed() < BOUND,
            "{what}: still {value} after {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Sum of the stored calls deltas of the statements whose text matches.
fn calls_of(text_like: &str) -> String {
    format!(
        "SELECT sum(s.calls)::int8 FROM metric_statement s
         JOIN instances i ON i.id = s.instance_id
         JOIN statement_texts t ON t.instance_id = s.instance_id AND t.queryid = s.queryid
         WHERE i.name = 'monitored' AND t.query LIKE '{text_like}'"
    )
}

async fn run_known(client: &tokio_postgres::Client, n: i32) {
    let sql = format!("SELECT $1::int4 + 1 AS {MARKER}");
    for i in 0..n {
        client.query_one(&sql, &[&i]).await.expect("known query");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn families_end_to_end() {
    let stack = Stack::new(AGENT_ID).await;
    let monitored = PgCluster::start(PgOptions {
        stat_statements: true,
        // wal_level = logical: a logical slot for `replication_slot`.
        logical: true,
        // Archiving that always succeeds, so `archiver` has something to count.
        settings: vec![
            ("archive_mode".into(), "on".into()),
            ("archive_command".into(), "'/bin/true'".into()),
        ],
        ..PgOptions::default()
    })
    .expect("monitored cluster");

    let admin = monitored.connect("postgres").await.expect("connect");
    admin
        .batch_execute(
            "CREATE EXTENSION pg_stat_statements;
             CREATE ROLE plain LOGIN;",
        )
        .await
        .expect("set up monitored");
    monitored.create_database("app").await.expect("create app");
    let app = monitored.connect("app").await.expect("connect app");
    app.batch_execute("CREATE TABLE app_t (id int PRIMARY KEY); INSERT INTO app_t VALUES (1)")
        .await
        .expect("app table");
    let port = monitored.port();
    let pgbench = monitored.bindir().join("pgbench");
    run_ok(
        Command::new(&pgbench)
            .args(["-i", "-s", "1", "-q", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &port.to_string(), "postgres"]),
    );

    let mut ingest = stack.spawn_ingest("");
    let mut api = stack.spawn_api();
    wait_listening(&mut ingest);
    wait_listening(&mut api);
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 1\nintervals = {{ statement = 1, table = 1, index = 1, wal = 1, bgwriter = 1, archiver = 1, settings = 1, activity = 1, lock = 1, replication = 1, replication_slot = 1, progress = 1, wait = 2, replication_topology = 1 }}\n\
             [logs]\nenabled = false\n\
             [[instances]]\nname = \"monitored\"\ndsn = \"{dsn}\"\n\
             [[instances]]\nname = \"plain\"\n\
             dsn = \"host=127.0.0.1 port={port} user=plain dbname=app\"\n",
            dsn = monitored.dsn("postgres"),
        ),
    );
    let agent = stack.start_agent(&[]);

    let store = stack.store().await;
    // The first statement round is a baseline; the agent's own queries make
    // the next rounds store rows. From then on every execution counts.
    wait_for(
        &store,
        "first statement rows",
        "SELECT count(*) FROM metric_statement",
        |n| n > 0,
    )
    .await;

    let known = calls_of(&format!("%{MARKER}%"));
    run_known(&admin, 30).await;
    // What runs between the last read and a reset is gone with the reset
    // (nobody can see it); so the reset comes after the 30 were read.
    wait_for(&store, "known query calls", &known, |n| n >= 30).await;
    admin
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .expect("reset");
    run_known(&admin, 20).await;
    run_ok(
        Command::new(&pgbench)
            .args(["-c", "2", "-t", "100", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &port.to_string(), "postgres"]),
    );

    wait_for(&store, "known query calls", &known, |n| n >= 50).await;
    let update = calls_of("UPDATE pgbench_accounts%");
    wait_for(&store, "pgbench UPDATE calls", &update, |n| n >= 200).await;
    // A few more rounds must add nothing: no inflated deltas.
    let rows_now = wait_for(
        &store,
        "rows",
        "SELECT count(*) FROM metric_statement",
        |_| true,
    )
    .await;
    wait_for(
        &store,
        "later rounds",
        "SELECT count(*) FROM metric_statement",
        |n| n > rows_now,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let exact = |q: &str| {
        let q = q.to_owned();
        let store = &store;
        async move {
            store
                .query_one(&q, &[])
                .await
                .expect("sum")
                .get::<_, Option<i64>>(0)
        }
    };
    assert_eq!(exact(&known).await, Some(50), "30 + 20 across the reset");
    assert_eq!(exact(&update).await, Some(200), "pgbench -c 2 -t 100");
    let dup_texts: i64 = store
        .query_one(
            "SELECT count(*) - count(DISTINCT (instance_id, queryid)) FROM statement_texts",
            &[],
        )
        .await
        .expect("texts")
        .get(0);
    assert_eq!(dup_texts, 0);

    // `table` and `index` of the pgbench tables: pgbench's 200 UPDATEs of
    // pgbench_accounts are counted (cumulative, so the latest row has them).
    let accounts_updates = "SELECT max(t.n_tup_upd) FROM metric_table t
         JOIN instances i ON i.id = t.instance_id
         WHERE i.name = 'monitored' AND t.datname = 'postgres' AND t.relname = 'pgbench_accounts'";
    wait_for(&store, "pgbench_accounts updates", accounts_updates, |n| {
        n >= 200
    })
    .await;
    let pkey: i64 = store
        .query_one(
            "SELECT count(*) FROM metric_index x JOIN instances i ON i.id = x.instance_id
             WHERE i.name = 'monitored' AND x.indexrelname = 'pgbench_accounts_pkey'
               AND x.is_primary AND NOT x.unused AND x.size_bytes > 0",
            &[],
        )
        .await
        .expect("index rows")
        .get(0);
    assert!(pkey > 0, "pgbench_accounts_pkey stored");
    // Database `app` is visited too, over the instance's second connection.
    wait_for(
        &store,
        "app_t rows",
        "SELECT count(*) FROM metric_table t JOIN instances i ON i.id = t.instance_id
         WHERE i.name = 'monitored' AND t.datname = 'app' AND t.relname = 'app_t'",
        |n| n > 0,
    )
    .await;

    // Wraparound ages (V27) of every database, within 0..2^31.
    wait_for(
        &store,
        "wraparound ages",
        "SELECT count(*) FROM metric_database d JOIN instances i ON i.id = d.instance_id
         WHERE i.name = 'monitored' AND d.datname = 'app'
           AND d.datfrozenxid_age > 0 AND d.datminmxid_age >= 0",
        |n| n > 0,
    )
    .await;
    let without_age: i64 = store
        .query_one(
            "SELECT count(*) FROM metric_database d JOIN instances i ON i.id = d.instance_id
             WHERE i.name = 'monitored'
               AND (d.datfrozenxid_age IS NULL OR d.datminmxid_age IS NULL)",
            &[],
        )
        .await
        .expect("database rows")
        .get(0);
    assert_eq!(without_age, 0, "every database row has both ages");

    // Server-wide families. A checkpoint, a WAL switch (archived by
    // /bin/true) and two setting changes, one needing a restart.
    let first_lsn = wait_for(
        &store,
        "wal rows",
        "SELECT min(w.current_lsn) FROM metric_wal w JOIN instances i ON i.id = w.instance_id
         WHERE i.name = 'monitored'",
        |n| n > 0,
    )
    .await;
    let checkpoints = "SELECT max(b.checkpoints_req) FROM metric_bgwriter b
         JOIN instances i ON i.id = b.instance_id WHERE i.name = 'monitored'";
    let checkpoints_before = wait_for(&store, "bgwriter rows", checkpoints, |_| true).await;
    // One statement per call: ALTER SYSTEM refuses a multi-statement string.
    for sql in [
        "CHECKPOINT",
        "SELECT pg_switch_wal()",
        "ALTER SYSTEM SET work_mem = '8MB'",
        "ALTER SYSTEM SET shared_buffers = '64MB'",
        "SELECT pg_reload_conf()",
    ] {
        admin.batch_execute(sql).await.expect(sql);
    }
    wait_for(&store, "checkpoints_req", checkpoints, |n| {
        n > checkpoints_before
    })
    .await;
    wait_for(
        &store,
        "archived segments",
        "SELECT max(a.archived_count) FROM metric_archiver a
         JOIN instances i ON i.id = a.instance_id WHERE i.name = 'monitored'",
        |n| n >= 1,
    )
    .await;
    wait_for(
        &store,
        "wal position",
        "SELECT max(w.current_lsn) FROM metric_wal w JOIN instances i ON i.id = w.instance_id
         WHERE i.name = 'monitored'",
        |n| n > first_lsn,
    )
    .await;
    wait_for(
        &store,
        "work_mem change event",
        "SELECT count(*) FROM metric_setting_changes c JOIN instances i ON i.id = c.instance_id
         WHERE i.name = 'monitored' AND c.name = 'work_mem'
           AND c.old_setting = '4096' AND c.new_setting = '8192' AND NOT c.pending_restart",
        |n| n == 1,
    )
    .await;
    wait_for(
        &store,
        "shared_buffers pending restart",
        "SELECT count(*) FROM metric_setting_changes c JOIN instances i ON i.id = c.instance_id
         WHERE i.name = 'monitored' AND c.name = 'shared_buffers' AND c.pending_restart",
        |n| n == 1,
    )
    .await;
    let settings_rows: i64 = store
        .query_one(
            "SELECT count(*) FROM metric_settings s JOIN instances i ON i.id = s.instance_id
             WHERE i.name = 'monitored' AND s.name = 'max_connections'",
            &[],
        )
        .await
        .expect("settings")
        .get(0);
    assert!(settings_rows > 0);

    // `activity`: a session idle in a transaction that holds a lock, and a
    // second session waiting for it.
    let holder = monitored.connect("app").await.expect("holder");
    holder
        .batch_execute("BEGIN; LOCK TABLE app_t IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let waiter = monitored.connect("app").await.expect("waiter");
    let blocked = tokio::spawn(async move {
        waiter
            .query_one("SELECT count(*) FROM app_t", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
    });
    wait_for(
        &store,
        "a waiting session and an idle transaction",
        "SELECT count(*) FROM metric_activity a JOIN instances i ON i.id = a.instance_id
         WHERE i.name = 'monitored' AND a.waiting_sessions >= 1
           AND a.oldest_idle_in_xact_age_seconds >= 0 AND a.connection_use_percent > 0",
        |n| n > 0,
    )
    .await;
    wait_for(
        &store,
        "session groups of database app",
        "SELECT max(s.waiting) FROM metric_activity_sessions s
         JOIN instances i ON i.id = s.instance_id
         WHERE i.name = 'monitored' AND s.datname = 'app' AND s.state = 'active'",
        |n| n >= 1,
    )
    .await;
    // `lock`: the blocking chain names both sessions and both queries.
    wait_for(
        &store,
        "blocking chain",
        "SELECT count(*) FROM metric_lock_waits w JOIN instances i ON i.id = w.instance_id
         WHERE i.name = 'monitored' AND w.datname = 'app'
           AND w.blocked_query = 'SELECT count(*) FROM app_t'
           AND w.blocking_query LIKE '%LOCK TABLE app_t%' AND w.wait_seconds >= 0",
        |n| n > 0,
    )
    .await;
    wait_for(
        &store,
        "waiting lock counted",
        "SELECT count(*) FROM metric_lock l JOIN instances i ON i.id = l.instance_id
         WHERE i.name = 'monitored' AND NOT l.granted AND l.mode = 'AccessShareLock'",
        |n| n > 0,
    )
    .await;
    holder.batch_execute("COMMIT").await.expect("release");
    assert_eq!(blocked.await.expect("join").expect("unblocked"), 1);

    // `replication_slot`: a logical slot holds the WAL written since it was
    // made; `replication`: pg_receivewal is a streaming WAL sender client.
    admin
        .batch_execute("SELECT pg_create_logical_replication_slot('lasect_slot', 'test_decoding')")
        .await
        .expect("slot");
    let wal_dir = stack.path("received-wal");
    std::fs::create_dir(&wal_dir).expect("wal dir");
    let _receiver = ChildGuard::spawn({
        let mut c = Command::new(monitored.bindir().join("pg_receivewal"));
        c.arg("-D")
            .arg(&wal_dir)
            .args(["-h", "127.0.0.1", "-U", "postgres", "--no-loop"])
            .args(["-p", &port.to_string()]);
        c
    })
    .expect("spawn pg_receivewal");
    run_ok(
        Command::new(&pgbench)
            .args(["-c", "1", "-t", "50", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &port.to_string(), "postgres"]),
    );
    wait_for(
        &store,
        "slot retaining WAL",
        "SELECT max(s.retained_bytes) FROM metric_replication_slot s
         JOIN instances i ON i.id = s.instance_id
         WHERE i.name = 'monitored' AND s.slot_name = 'lasect_slot'
           AND s.slot_type = 'logical' AND s.plugin = 'test_decoding' AND NOT s.active",
        |n| n > 0,
    )
    .await;
    wait_for(
        &store,
        "streaming WAL sender",
        "SELECT count(*) FROM metric_replication r JOIN instances i ON i.id = r.instance_id
         WHERE i.name = 'monitored' AND r.application_name = 'pg_receivewal'
           AND r.state = 'streaming' AND r.sent_lag_bytes >= 0",
        |n| n > 0,
    )
    .await;

    // `replication_identity`: the cluster, timeline and listening port of a primary.
    wait_for(
        &store,
        "replication identity",
        &format!(
            "SELECT count(*) FROM metric_replication_identity r
             JOIN instances i ON i.id = r.instance_id
             WHERE i.name = 'monitored' AND r.system_identifier <> 0 AND r.timeline_id = 1
               AND NOT r.in_recovery AND r.wal_lsn > 0 AND r.port = {port}
               AND r.server_addr = '127.0.0.1' AND r.receiver_application_name IS NULL"
        ),
        |n| n > 0,
    )
    .await;

    // `progress`: a base backup throttled to crawl is seen mid-way.
    let mut backup = ChildGuard::spawn({
        let mut c = Command::new(monitored.bindir().join("pg_basebackup"));
        c.arg("-D")
            .arg(stack.path("backup"))
            .args([
                "-X",
                "none",
                "-c",
                "fast",
                "--max-rate=32k",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &port.to_string()]);
        c
    })
    .expect("spawn pg_basebackup");
    wait_for(
        &store,
        "base backup progress",
        "SELECT count(*) FROM metric_progress p JOIN instances i ON i.id = p.instance_id
         WHERE i.name = 'monitored' AND p.command = 'basebackup' AND p.done > 0
           AND p.percent_done > 0 AND p.percent_done < 100",
        |n| n > 0,
    )
    .await;
    backup.kill();

    // `wait`: a session sleeping in pg_sleep is seen in the 1 s samples and
    // stored as a window of two samples.
    let sleeper = monitored.connect("postgres").await.expect("sleeper");
    let sleeping = tokio::spawn(async move { sleeper.batch_execute("SELECT pg_sleep(4)").await });
    wait_for(
        &store,
        "PgSleep wait samples",
        "SELECT max(w.count) FROM metric_wait w JOIN instances i ON i.id = w.instance_id
         WHERE i.name = 'monitored' AND w.wait_event_type = 'Timeout'
           AND w.wait_event = 'PgSleep' AND w.samples >= 1 AND w.avg_sessions > 0",
        |n| n >= 1,
    )
    .await;
    sleeping.await.expect("join").expect("pg_sleep");

    // Host I/O families of the agent's machine: the loopback interface
    // always exists, and its traffic (this very test) gives it a rate.
    wait_for(
        &store,
        "loopback traffic",
        "SELECT count(*) FROM metric_host_network
         WHERE agent_id = 'e2e-families' AND interface = 'lo' AND rx_bytes_per_sec > 0",
        |n| n > 0,
    )
    .await;
    wait_for(
        &store,
        "block device counters",
        "SELECT count(*) FROM metric_host_disk_io
         WHERE agent_id = 'e2e-families' AND reads > 0 AND read_bytes > 0",
        |n| n > 0,
    )
    .await;

    // The CLI reads the family through the API.
    let shown: serde_json::Value = serde_json::from_str(&stack.cli(&[
        "metrics",
        "show",
        "--instance",
        "monitored",
        "--family",
        "statement",
        "--limit",
        "50",
        "--output",
        "json",
    ]))
    .expect("json");
    let rows = shown["rows"].as_array().expect("rows");
    assert!(
        rows.iter()
            .any(|r| r["calls"].as_i64().is_some_and(|c| c > 0)),
        "{shown}"
    );

    // Bad input: instance `plain` has no pg_stat_statements in its database
    // and no pg_monitor. Its database family keeps flowing...
    let plain_db = "SELECT count(DISTINCT d.time) FROM metric_database d
                    JOIN instances i ON i.id = d.instance_id WHERE i.name = 'plain'";
    let before = wait_for(&store, "plain database rows", plain_db, |n| n > 0).await;
    wait_for(&store, "more plain database rows", plain_db, |n| {
        n >= before + 2
    })
    .await;
    // ...and each family it may not read was reported once, not every
    // second: the missing extension, and the data directory that needs
    // pg_read_all_settings (host_filesystem: found hidden in pg_settings, so
    // no ERROR in the monitored server's log).
    let warnings: Vec<String> = agent
        .lines()
        .into_iter()
        .filter(|l| l.contains("cannot collect family") && l.contains("plain"))
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("statement") && w.contains("pg_stat_statements is not installed")),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("host_filesystem") && w.contains("pg_read_all_settings")),
        "{warnings:#?}"
    );
    // The same failures are stored as collector events, once each.
    let events = "SELECT count(*) FROM metric_collector_event e
                  JOIN instances i ON i.id = e.instance_id WHERE i.name = 'plain'";
    wait_for(&store, "plain collector events", events, |n| n >= 2).await;
    let stored: Vec<(String, String, Option<String>, String)> = store
        .query(
            "SELECT e.collector, e.kind, e.sqlstate, e.message FROM metric_collector_event e
             JOIN instances i ON i.id = e.instance_id WHERE i.name = 'plain'
             ORDER BY e.collector",
            &[],
        )
        .await
        .expect("events")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(stored.len(), 2, "{stored:#?}");
    assert_eq!(
        (
            stored[0].0.as_str(),
            stored[0].1.as_str(),
            stored[0].2.as_deref()
        ),
        ("host_filesystem", "unavailable", None),
        "{stored:#?}"
    );
    assert!(stored[0].3.contains("data_directory"), "{stored:#?}");
    assert_eq!(
        (
            stored[1].0.as_str(),
            stored[1].1.as_str(),
            stored[1].2.as_deref()
        ),
        ("statement", "unavailable", None),
        "{stored:#?}"
    );
    assert!(stored[1].3.contains("pg_stat_statements"), "{stored:#?}");
    // The superuser instance has the extension and the privileges: no events.
    let monitored_events: i64 = store
        .query_one(
            "SELECT count(*) FROM metric_collector_event e
             JOIN instances i ON i.id = e.instance_id WHERE i.name = 'monitored'",
            &[],
        )
        .await
        .expect("events")
        .get(0);
    assert_eq!(monitored_events, 0);
    assert!(
        !agent.lines().iter().any(|l| l.contains("panicked")),
        "the agent panicked"
    );
}
