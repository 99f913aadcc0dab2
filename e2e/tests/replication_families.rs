//! Replication, subscription, custom and filesystem families end to end
//! over the real binaries: a primary (wal_level = logical) with a streaming
//! replica made by `pg_basebackup` on a physical slot, and a third cluster
//! subscribed to a publication of the primary; `lasect-agent` watches all
//! three (1 s intervals) with two custom metrics from its config, one of
//! them broken.
//!
//! - `replication` / `replication_slot` on the primary: the replica streams
//!   with its lag columns present, its physical slot is active;
//! - `standby` on the replica: receiver streaming from the primary's port,
//!   received and replayed LSNs that advance with the primary's writes;
//!   nothing on the primary;
//! - `subscription`: the apply worker (enabled and running), a disabled subscription (no
//!   worker, not enabled) and the table's `ready` sync state; a table still copying shows on
//!   the topology's logical edge with rows copied on 14+ and its state only on 13
//!   (`copy_progress` `state_only`: PostgreSQL 13 has no pg_stat_progress_copy);
//! - `custom`: labels and values stored as configured; a value column that
//!   is not numeric gives one warning per instance and a `collector_event`,
//!   and the good metric keeps flowing;
//! - `host_filesystem`: the mount holding the primary's data directory.

use std::path::Path;
use std::time::{Duration, Instant};

use lasect_e2e::{Stack, wait_listening};
use lasect_testkit::{PgCluster, PgOptions, REPLICA_APPLICATION_NAME};
use reqwest::Method;

const AGENT_ID: &str = "e2e-replication";
const BOUND: Duration = Duration::from_secs(90);

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

/// The longest mount point of /proc/self/mountinfo holding `path`.
fn mount_point_of(path: &Path) -> String {
    let path = std::fs::canonicalize(path).expect("canonical path");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| path.starts_with(m))
        .max_by_key(String::len)
        .expect("a mount holds the data directory")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_subscription_custom_and_filesystem() {
    let stack = Stack::new(AGENT_ID).await;
    let primary = PgCluster::start(PgOptions {
        logical: true,
        ..PgOptions::default()
    })
    .expect("primary");
    let admin = primary.connect("postgres").await.expect("connect primary");
    admin
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, amount numeric);
             INSERT INTO orders VALUES (1, 'paid', 10.5), (2, 'paid', 4.5), (3, 'open', NULL);
             CREATE TABLE slow (id int PRIMARY KEY);
             INSERT INTO slow SELECT generate_series(1, 1000);
             CREATE PUBLICATION pub_orders FOR TABLE orders, slow;",
        )
        .await
        .expect("primary schema");
    let replica = primary
        .start_replica(Some("replica_slot"))
        .expect("replica");
    let subscriber = PgCluster::start(PgOptions::default()).expect("subscriber");
    subscriber
        .connect("postgres")
        .await
        .expect("connect subscriber")
        .batch_execute(
            // The copy of `slow` takes 5 minutes (a row every 0.3 s), longer than the test, so
            // its backfill is seen under way however slowly the machine runs the steps before.
            // ENABLE ALWAYS: table-sync workers run with session_replication_role = replica.
            "CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, amount numeric);
             CREATE TABLE slow (id int PRIMARY KEY);
             CREATE FUNCTION slow_copy() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$;
             CREATE TRIGGER slow_copy BEFORE INSERT ON slow FOR EACH ROW EXECUTE FUNCTION slow_copy();
             ALTER TABLE slow ENABLE ALWAYS TRIGGER slow_copy;",
        )
        .await
        .expect("subscriber table");
    subscriber
        .subscribe(&primary, "postgres", "pub_orders", "sub_orders")
        .await
        .expect("subscribe");
    // A disabled subscription: it has no apply worker and must say so without seeming down.
    subscriber
        .connect("postgres")
        .await
        .expect("connect subscriber")
        .batch_execute(&format!(
            "CREATE SUBSCRIPTION sub_parked CONNECTION '{}' PUBLICATION pub_orders \
             WITH (connect = false, slot_name = NONE)",
            primary.dsn("postgres")
        ))
        .await
        .expect("disabled subscription");

    let mut ingest = stack.spawn_ingest("");
    let mut api = stack.spawn_api();
    wait_listening(&mut ingest);
    wait_listening(&mut api);
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 1\nhost = false\n\
             intervals = {{ replication = 1, replication_slot = 1, standby = 1, subscription = 1, \
             host_filesystem = 1, replication_topology = 1 }}\n\
             [[collect.custom]]\nname = \"orders_by_status\"\n\
             sql = \"SELECT status, count(*) AS n, sum(amount) AS total FROM orders GROUP BY status;\"\n\
             labels = [\"status\"]\nvalues = [\"n\", \"total\"]\ninterval_secs = 1\n\
             [[collect.custom]]\nname = \"bad_value\"\nsql = \"SELECT 'x'::text AS v\"\n\
             values = [\"v\"]\ninterval_secs = 1\n\
             [[instances]]\nname = \"primary\"\ndsn = \"{}\"\n\
             [[instances]]\nname = \"replica\"\ndsn = \"{}\"\n\
             [[instances]]\nname = \"subscriber\"\ndsn = \"{}\"\n",
            primary.dsn("postgres"),
            replica.dsn("postgres"),
            subscriber.dsn("postgres"),
        ),
    );
    let agent = stack.start_agent(&[]);
    let store = stack.store().await;

    // `replication` and `replication_slot` on the primary.
    wait_for(
        &store,
        "replica streaming",
        &format!(
            "SELECT count(*) FROM metric_replication r JOIN instances i ON i.id = r.instance_id
             WHERE i.name = 'primary' AND r.application_name = '{REPLICA_APPLICATION_NAME}'
               AND r.state = 'streaming' AND r.sent_lag_bytes >= 0
               AND r.write_lag_bytes >= 0 AND r.flush_lag_bytes >= 0 AND r.replay_lag_bytes >= 0"
        ),
        |n| n > 0,
    )
    .await;
    wait_for(
        &store,
        "active physical slot",
        "SELECT count(*) FROM metric_replication_slot s JOIN instances i ON i.id = s.instance_id
         WHERE i.name = 'primary' AND s.slot_name = 'replica_slot' AND s.slot_type = 'physical'
           AND s.active AND s.retained_bytes >= 0",
        |n| n > 0,
    )
    .await;

    // `standby` on the replica: streaming from the primary, positions known.
    let standby_lsn = format!(
        "SELECT max(s.replay_lsn) FROM metric_standby s JOIN instances i ON i.id = s.instance_id
         WHERE i.name = 'replica' AND s.receiver_status = 'streaming'
           AND s.sender_port = {} AND s.slot_name = 'replica_slot'
           AND s.receive_lsn > 0 AND s.replay_lag_bytes >= 0 AND s.last_msg_age_seconds IS NOT NULL",
        primary.port()
    );
    let first_lsn = wait_for(&store, "standby status", &standby_lsn, |n| n > 0).await;
    admin
        .batch_execute(
            "INSERT INTO orders SELECT g, 'bulk', 1 FROM generate_series(100, 2000) g;
             DELETE FROM orders WHERE status = 'bulk';",
        )
        .await
        .expect("write on primary");
    wait_for(&store, "replay advances", &standby_lsn, |n| n > first_lsn).await;

    // `subscription` on the subscriber: the apply worker and the table.
    wait_for(
        &store,
        "subscribed table ready",
        "SELECT count(*) FROM metric_subscription_tables t JOIN instances i ON i.id = t.instance_id
         WHERE i.name = 'subscriber' AND t.subname = 'sub_orders' AND t.schemaname = 'public'
           AND t.relname = 'orders' AND t.state = 'ready'",
        |n| n > 0,
    )
    .await;
    // Error counts come from pg_stat_subscription_stats, PostgreSQL 15+; none before.
    let version: i32 = subscriber
        .connect("postgres")
        .await
        .expect("connect subscriber")
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .expect("server_version_num")
        .get(0);
    let errors = if version >= 150_000 {
        "s.apply_error_count = 0 AND s.sync_error_count = 0"
    } else {
        "s.apply_error_count IS NULL AND s.sync_error_count IS NULL"
    };
    wait_for(
        &store,
        "apply worker",
        &format!(
            "SELECT count(*) FROM metric_subscription s JOIN instances i ON i.id = s.instance_id
             WHERE i.name = 'subscriber' AND s.subname = 'sub_orders' AND s.relid IS NULL
               AND s.pid > 0 AND s.received_lsn > 0 AND {errors}
               AND s.enabled AND s.apply_worker_running"
        ),
        |n| n > 0,
    )
    .await;
    wait_for(
        &store,
        "disabled subscription",
        "SELECT count(*) FROM metric_subscription s JOIN instances i ON i.id = s.instance_id
         WHERE i.name = 'subscriber' AND s.subname = 'sub_parked' AND s.pid IS NULL
           AND NOT s.enabled AND NOT s.apply_worker_running",
        |n| n > 0,
    )
    .await;

    // The backfill of the copy under way, on the topology's logical edge: rows copied from
    // pg_stat_progress_copy on 14+ (`counted`); on 13, which has no such view, the table's
    // state only (`state_only`: no rows, no percent), and no copy samples at all.
    let subscriber_id: i64 = store
        .query_one("SELECT id FROM instances WHERE name = 'subscriber'", &[])
        .await
        .expect("subscriber id")
        .get(0);
    let start = Instant::now();
    let (backfill, slow) = loop {
        let (status, topo) = stack
            .api(Method::GET, "api/v1/replication/topology", None)
            .await;
        assert_eq!(status, 200, "{topo}");
        let found = topo["edges"].as_array().and_then(|edges| {
            edges.iter().find_map(|e| {
                let b = &e["backfill"];
                let slow = b["tables"]
                    .as_array()?
                    .iter()
                    .find(|t| t["table"] == "slow" && t["state"] == "data_copy")?;
                (e["to"] == format!("instance:{subscriber_id}")).then(|| (b.clone(), slow.clone()))
            })
        });
        if let Some((b, slow)) = found
            && (version < 140_000 || slow["rows_copied"].as_i64().is_some_and(|n| n > 0))
        {
            break (b, slow);
        }
        assert!(
            start.elapsed() < BOUND,
            "no backfill of `slow` under way on the topology: {topo}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    if version >= 140_000 {
        assert_eq!(backfill["copy_progress"], "counted", "{backfill}");
        assert!(
            slow["percent"].as_f64().is_some_and(|p| p < 100.0),
            "{slow}"
        );
    } else {
        assert_eq!(backfill["copy_progress"], "state_only", "{backfill}");
        assert!(
            slow["percent"].is_null() && slow["rows_copied"].is_null(),
            "{slow}"
        );
        assert!(backfill["percent"].is_null(), "{backfill}");
        let copies: i64 = store
            .query_one(
                "SELECT count(*) FROM metric_subscription_copy WHERE instance_id = $1",
                &[&subscriber_id],
            )
            .await
            .expect("copy samples")
            .get(0);
        assert_eq!(copies, 0, "no copy progress before 14");
    }

    // `custom`: labels and values as configured, from every instance that
    // has the table (the subscriber's copy came through the subscription).
    for (instance, value_name, want) in [
        ("primary", "n", 2.0),
        ("primary", "total", 15.0),
        ("replica", "n", 2.0),
        ("subscriber", "n", 2.0),
    ] {
        wait_for(
            &store,
            &format!("custom {instance} {value_name}"),
            &format!(
                "SELECT count(*) FROM metric_custom c JOIN instances i ON i.id = c.instance_id
                 WHERE i.name = '{instance}' AND c.metric = 'orders_by_status'
                   AND c.datname = 'postgres' AND c.labels = '{{\"status\": \"paid\"}}'::jsonb
                   AND c.value_name = '{value_name}' AND c.value = {want}"
            ),
            |n| n > 0,
        )
        .await;
    }
    // A NULL sum is stored as NULL, not as 0.
    wait_for(
        &store,
        "NULL total",
        "SELECT count(*) FROM metric_custom c JOIN instances i ON i.id = c.instance_id
         WHERE i.name = 'primary' AND c.labels ->> 'status' = 'open'
           AND c.value_name = 'total' AND c.value IS NULL",
        |n| n > 0,
    )
    .await;

    // The broken metric: one event per instance (rate-limited), one warning.
    wait_for(
        &store,
        "bad_value events",
        "SELECT count(DISTINCT e.instance_id) FROM metric_collector_event e
         WHERE e.collector = 'custom:bad_value' AND e.kind = 'query'
           AND e.message LIKE '%\"v\" is not numeric (got text)%'",
        |n| n == 3,
    )
    .await;

    // `host_filesystem`: the mount of the primary's data directory.
    let mount = mount_point_of(&primary.data_dir());
    wait_for(
        &store,
        "data directory filesystem",
        &format!(
            "SELECT count(*) FROM metric_host_filesystem f JOIN instances i ON i.id = f.instance_id
             WHERE i.name = 'primary' AND f.mount_point = '{}' AND f.roles LIKE '%data%'
               AND f.roles LIKE '%wal%' AND f.total_bytes > 0 AND f.used_bytes <= f.total_bytes
               AND f.total_inodes >= f.used_inodes",
            mount.replace('\'', "''")
        ),
        |n| n > 0,
    )
    .await;

    // A few more rounds: the good metric keeps flowing, the bad one stays
    // at one event per instance.
    let custom_rows = "SELECT count(DISTINCT c.time) FROM metric_custom c
                       WHERE c.metric = 'orders_by_status'";
    let before = wait_for(&store, "custom rounds", custom_rows, |_| true).await;
    wait_for(&store, "more custom rounds", custom_rows, |n| {
        n >= before + 3
    })
    .await;
    let bad_events: i64 = store
        .query_one(
            "SELECT count(*) FROM metric_collector_event WHERE collector = 'custom:bad_value'",
            &[],
        )
        .await
        .expect("events")
        .get(0);
    assert_eq!(bad_events, 3, "one event per instance within the interval");
    let warnings: Vec<String> = agent
        .lines()
        .into_iter()
        .filter(|l| l.contains("custom metric failed") && l.contains("bad_value"))
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(warnings[0].contains("is not numeric"), "{}", warnings[0]);

    // A primary has no standby rows: nothing, and no error either.
    let primary_standby: i64 = store
        .query_one(
            "SELECT count(*) FROM metric_standby s JOIN instances i ON i.id = s.instance_id
             WHERE i.name = 'primary'",
            &[],
        )
        .await
        .expect("standby rows")
        .get(0);
    assert_eq!(primary_standby, 0);
    let family_events: i64 = store
        .query_one(
            "SELECT count(*) FROM metric_collector_event
             WHERE collector IN ('standby', 'subscription', 'host_filesystem', 'replication',
                                 'replication_slot', 'connection', 'custom:orders_by_status')",
            &[],
        )
        .await
        .expect("events")
        .get(0);
    assert_eq!(
        family_events, 0,
        "these families collected on every instance"
    );

    // The CLI reads the new families through the API.
    let show = |instance: &str, family: &str| -> serde_json::Value {
        serde_json::from_str(&stack.cli(&[
            "metrics",
            "show",
            "--instance",
            instance,
            "--family",
            family,
            "--output",
            "json",
        ]))
        .expect("json")
    };
    let standby = show("replica", "standby");
    assert_eq!(
        standby["rows"][0]["receiver_status"], "streaming",
        "{standby}"
    );
    let tables = show("subscriber", "subscription_tables");
    assert_eq!(tables["rows"][0]["state"], "ready", "{tables}");
    let subscription = show("subscriber", "subscription");
    assert_eq!(
        subscription["rows"][0]["subname"], "sub_orders",
        "{subscription}"
    );
    let custom = show("primary", "custom");
    assert!(
        custom["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .any(|r| r["labels"]["status"] == "paid"
                && r["value_name"] == "n"
                && r["value"] == 2.0),
        "{custom}"
    );
    let fs = show("primary", "host_filesystem");
    assert!(
        fs["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .any(|r| r["mount_point"] == mount.as_str()),
        "{fs}"
    );
    assert!(
        !agent.lines().iter().any(|l| l.contains("panicked")),
        "the agent panicked"
    );
}
