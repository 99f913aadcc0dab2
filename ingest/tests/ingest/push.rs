//! Batches that are stored: rows, identity, de-duplication, old days.

use std::time::Duration;

use crate::samples::{self, DAY_MICROS};
use crate::support::{Counts, Ingest, now_micros, push, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_stored_once_under_the_certificate_identity() {
    let mut ingest = Ingest::start().await;
    let mut client = ingest.agent().await;

    let ack = push(&mut client, request(1, samples::one_of_each()))
        .await
        .expect("push accepted");
    assert_eq!(ack.seq, 1);
    assert!(!ack.duplicate);
    assert_eq!(ack.stored_samples, 4);
    assert_eq!(ack.unknown_samples, 0);

    let expected = Counts {
        agents: 1,
        instances: 1,
        batches: 1,
        database: 2,
        host_cpu: 1,
        host_memory: 1,
    };
    assert_eq!(ingest.counts().await, expected);

    let store = ingest.store().await;
    let instance = store
        .query_one(
            "SELECT id, agent_id, name, server_version_num, version, in_recovery, last_seen IS NOT NULL
             FROM instances",
            &[],
        )
        .await
        .expect("read instance");
    let instance_id: i64 = instance.get(0);
    assert_eq!(instance.get::<_, String>(1), "agent-1");
    assert_eq!(instance.get::<_, String>(2), "main");
    assert_eq!(instance.get::<_, Option<i32>>(3), Some(170_002));
    assert!(
        instance
            .get::<_, Option<String>>(4)
            .is_some_and(|v| v.starts_with("PostgreSQL 17.2"))
    );
    assert_eq!(instance.get::<_, Option<bool>>(5), Some(false));
    assert!(instance.get::<_, bool>(6));

    let rows = store
        .query(
            "SELECT instance_id, datid, datname, numbackends, xact_commit, tup_fetched,
                    stats_reset IS NOT NULL
             FROM metric_database ORDER BY datid",
            &[],
        )
        .await
        .expect("read database rows");
    let names: Vec<String> = rows.iter().map(|r| r.get(2)).collect();
    assert_eq!(names, ["postgres", "app"]);
    for row in &rows {
        assert_eq!(row.get::<_, i64>(0), instance_id);
        assert_eq!(row.get::<_, Option<i32>>(3), Some(2));
        assert_eq!(row.get::<_, Option<i64>>(4), Some(100));
        // Not collected stays NULL, not zero.
        assert_eq!(row.get::<_, Option<i64>>(5), None);
        assert!(row.get::<_, bool>(6));
    }
    let cpu = store
        .query_one(
            "SELECT agent_id, cpu_count, usage_percent FROM metric_host_cpu",
            &[],
        )
        .await
        .expect("read cpu row");
    assert_eq!(cpu.get::<_, String>(0), "agent-1");
    assert_eq!(cpu.get::<_, i32>(1), 4);
    assert_eq!(cpu.get::<_, f64>(2), 12.5);
    let memory = store
        .query_one("SELECT agent_id, total_bytes FROM metric_host_memory", &[])
        .await
        .expect("read memory row");
    assert_eq!(memory.get::<_, String>(0), "agent-1");
    assert_eq!(memory.get::<_, i64>(1), 16 << 30);
    let batch = store
        .query_one("SELECT agent_id, seq, samples FROM ingest_batches", &[])
        .await
        .expect("read batch record");
    assert_eq!(batch.get::<_, String>(0), "agent-1");
    assert_eq!(batch.get::<_, i64>(1), 1);
    assert_eq!(batch.get::<_, i32>(2), 4);

    // The same seq again (an agent that missed the ack) writes nothing.
    let ack = push(&mut client, request(1, samples::one_of_each()))
        .await
        .expect("resend accepted");
    assert!(ack.duplicate);
    assert_eq!(ack.seq, 1);
    assert_eq!(ack.stored_samples, 0);
    assert_eq!(ingest.counts().await, expected);

    // The next seq is stored, reusing the agent and instance rows.
    let ack = push(&mut client, request(2, samples::one_of_each()))
        .await
        .expect("next batch accepted");
    assert!(!ack.duplicate);
    let counts = ingest.counts().await;
    assert_eq!((counts.agents, counts.instances, counts.batches), (1, 1, 2));
    assert_eq!(counts.database, 4);

    // SIGTERM stops the server cleanly.
    let status = ingest
        .child
        .terminate(Duration::from_secs(30))
        .expect("ingest exits");
    assert!(status.success(), "exit status {status}");
    ingest
        .child
        .wait_for_line("lasect-ingest stopped", Duration::from_secs(5))
        .expect("clean shutdown is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_days_in_the_past_get_partitions_on_demand() {
    let ingest = Ingest::start().await;
    let mut client = ingest.agent().await;
    let now = now_micros();
    // Maintenance only creates yesterday..today+3; these need new partitions.
    let days_ago = [5, 9, 12];
    let mut samples = Vec::new();
    for d in days_ago {
        let t = now - d * DAY_MICROS;
        samples.push(samples::host_cpu(t, 50.0));
        samples.push(samples::host_memory(t));
        samples.push(samples::database("main", t, &["postgres"]));
    }
    let ack = push(&mut client, request(7, samples))
        .await
        .expect("old samples accepted");
    assert_eq!(ack.stored_samples, 9);

    let counts = ingest.counts().await;
    assert_eq!(
        (counts.database, counts.host_cpu, counts.host_memory),
        (3, 3, 3)
    );

    let store = ingest.store().await;
    for d in days_ago {
        let day = chrono::DateTime::from_timestamp_micros(now - d * DAY_MICROS)
            .expect("valid time")
            .format("%Y%m%d")
            .to_string();
        for table in ["metric_database", "metric_host_cpu", "metric_host_memory"] {
            let partition = format!("{table}_p{day}");
            let row = store
                .query_one(
                    "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                     WHERE c.relname = $1",
                    &[&partition],
                )
                .await
                .expect("look up partition");
            assert_eq!(row.get::<_, i64>(0), 1, "partition {partition} exists");
        }
    }

    // A second batch on the same days goes through the cached path.
    let t = now - 5 * DAY_MICROS;
    push(&mut client, request(8, vec![samples::host_cpu(t, 1.0)]))
        .await
        .expect("second old batch accepted");
    assert_eq!(ingest.counts().await.host_cpu, 4);

    // A partition dropped behind the cache's back (as maintenance does with
    // expired ones): the push fails retryably and the retry recreates it.
    let day = chrono::DateTime::from_timestamp_micros(t)
        .expect("valid time")
        .format("%Y%m%d");
    store
        .batch_execute(&format!("DROP TABLE metric_host_cpu_p{day}"))
        .await
        .expect("drop partition");
    let status = push(&mut client, request(9, vec![samples::host_cpu(t, 2.0)]))
        .await
        .expect_err("no partition for the row");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        !status.message().contains("partition"),
        "no SQL details: {status:?}"
    );
    assert_eq!(
        ingest.counts().await.batches,
        2,
        "the failed batch left nothing"
    );
    push(&mut client, request(9, vec![samples::host_cpu(t, 2.0)]))
        .await
        .expect("the retry is stored");
    // 4 rows, minus the 2 of the dropped day, plus the retried one.
    assert_eq!(ingest.counts().await.host_cpu, 3);
}

/// Groups never update existing `agents`/`instances` rows for what every
/// batch changes (`writer::known`): a facts change (a promotion) is written
/// by the batch that carries it, `last_seen` by the refresh a moment later,
/// and a batch resent late never moves it backwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_facts_change_at_once_and_last_seen_follows() {
    let ingest =
        Ingest::start_configured("", |_| "[agents]\nrefresh_interval_secs = 1\n".into()).await;
    let mut client = ingest.agent().await;
    let store = ingest.store().await;
    let read = || async {
        let row = store
            .query_one(
                "SELECT in_recovery, (extract(epoch FROM last_seen) * 1e6)::int8 FROM instances",
                &[],
            )
            .await
            .expect("read instance");
        (row.get::<_, Option<bool>>(0), row.get::<_, i64>(1))
    };

    let t1 = now_micros() - 60_000_000;
    let first = vec![
        samples::instance_info("main", t1),
        samples::database("main", t1, &["app"]),
    ];
    push(&mut client, request(1, first))
        .await
        .expect("first push");
    assert_eq!(
        read().await,
        (Some(false), t1),
        "a new instance comes with its facts"
    );

    let t2 = t1 + 10_000_000;
    let mut promoted = samples::instance_info("main", t2);
    if let Some(lasect_proto::v1::sample::Family::InstanceInfo(info)) = &mut promoted.family {
        info.in_recovery = true;
    }
    push(
        &mut client,
        request(2, vec![promoted, samples::database("main", t2, &["app"])]),
    )
    .await
    .expect("second push");
    assert_eq!(
        read().await.0,
        Some(true),
        "the change is stored with its batch"
    );

    // An older batch, resent late, arrives after the newer one.
    let late = t1 + 5_000_000;
    push(
        &mut client,
        request(3, vec![samples::database("main", late, &["app"])]),
    )
    .await
    .expect("late push");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while read().await.1 != t2 {
        assert!(
            std::time::Instant::now() < deadline,
            "last_seen is {:?}, expected {t2}",
            read().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(read().await, (Some(true), t2), "last_seen never moves back");
}

/// Agent and instance rows removed under a running ingest (a store restored
/// from an older backup, a DBA's cleanup) come back with the next batch,
/// whose rows point at the instance's new id: ingest never trusts an id it
/// only remembers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_removed_under_a_running_ingest_come_back() {
    let ingest = Ingest::start().await;
    let mut client = ingest.agent().await;
    let store = ingest.store().await;
    push(&mut client, request(1, samples::one_of_each()))
        .await
        .expect("first push");
    store
        .batch_execute("TRUNCATE instances, agents RESTART IDENTITY CASCADE")
        .await
        .expect("remove the rows");
    // First a batch without the instance's facts, then one with the same
    // facts as before the rows went: they must be written again.
    let now = now_micros();
    push(
        &mut client,
        request(
            2,
            vec![samples::database("main", now, &["postgres", "app"])],
        ),
    )
    .await
    .expect("push after the rows went");
    push(&mut client, request(3, samples::one_of_each()))
        .await
        .expect("push with facts");
    let row = store
        .query_one(
            "SELECT (SELECT count(*) FROM agents),
                    (SELECT count(*) FROM metric_database m
                       JOIN instances i ON i.id = m.instance_id
                      WHERE i.agent_id = 'agent-1' AND i.name = 'main'
                        AND m.time >= 'epoch'::timestamptz + $1::int8 * interval '1 microsecond'),
                    (SELECT server_version_num FROM instances)",
            &[&now],
        )
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), 1, "the agent is registered again");
    // Batches 2 and 3's database rows hang off the new instance row.
    assert_eq!(row.get::<_, i64>(1), 4);
    assert_eq!(
        row.get::<_, Option<i32>>(2),
        Some(170_002),
        "facts written again"
    );
}

/// An instance of an agent's config file removed through the API while its agent still
/// collects it comes back with the agent's next samples: never a hidden instance whose samples
/// keep arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_instance_whose_samples_keep_arriving_comes_back() {
    let ingest =
        Ingest::start_configured("", |_| "[agents]\nrefresh_interval_secs = 1\n".into()).await;
    let mut client = ingest.agent().await;
    let store = ingest.store().await;
    let t1 = now_micros() - 60_000_000;
    push(
        &mut client,
        request(1, vec![samples::database("main", t1, &["app"])]),
    )
    .await
    .expect("first push");
    let state = || async {
        store
            .query_one("SELECT state, last_seen IS NOT NULL FROM instances", &[])
            .await
            .map(|r| (r.get::<_, String>(0), r.get::<_, bool>(1)))
            .expect("read instance")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !state().await.1 {
        assert!(
            std::time::Instant::now() < deadline,
            "last_seen never written"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    store
        .execute("UPDATE instances SET state = 'removed'", &[])
        .await
        .expect("remove");
    // A batch resent late (older than the last sighting) does not bring it back…
    push(
        &mut client,
        request(2, vec![samples::database("main", t1 - 1_000_000, &["app"])]),
    )
    .await
    .expect("late push");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(state().await.0, "removed");
    // …newer samples do.
    push(
        &mut client,
        request(
            3,
            vec![samples::database("main", t1 + 10_000_000, &["app"])],
        ),
    )
    .await
    .expect("new push");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while state().await.0 != "active" {
        assert!(
            std::time::Instant::now() < deadline,
            "the instance stayed hidden"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
