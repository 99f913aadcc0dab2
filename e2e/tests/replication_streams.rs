//! Logical replication streams end to end (issue 21, R2/R3) over the real binaries: one agent
//! watches a publisher (wal_level = logical), a subscriber and a server with wal_level =
//! replica, with the `replication` class allowed.
//!
//! - validation reports each problem and creates nothing: a table without a primary key and a
//!   target table missing (in one request, both listed), wal_level = replica, an unreachable
//!   publisher; a dry run of a valid stream creates nothing either (through the CLI);
//! - a stream of a 1,000,000-row table (its copy slowed by an `ENABLE ALWAYS` trigger on the
//!   subscriber, so samples catch it under way) shows backfill below 100 % with an ETA, then
//!   100 % and streaming; rows inserted afterwards arrive; the conninfo (derived: the
//!   publisher's unix socket, both on one host) works, and the password given appears in no
//!   answer, run parameter or log;
//! - a failure injected after the publication and the slot exist (the target table dropped
//!   while CREATE SUBSCRIPTION waits for its lock) is rolled back: no publication, slot or
//!   subscription of that stream is left, and the failed step is named;
//! - a fleet migration targeting the publisher of the stream's publication and its
//!   subscribers runs on the subscriber first; when the subscriber cannot take the change the
//!   publisher is skipped;
//! - remove (through the CLI) leaves nothing on either side;
//! - a viewer and a user are refused creating and removing.

use std::time::{Duration, Instant};

use lasect_e2e::Stack;
use lasect_testkit::{PgCluster, PgOptions, free_port};
use reqwest::Method;
use serde_json::{Value, json};

const AGENT_ID: &str = "e2e-streams";
/// Given as the stream's password (trust authentication ignores it).
const SECRET: &str = "Stream-Secret-7781";
const BOUND: Duration = Duration::from_secs(180);
const ROWS: i64 = 1_000_000;

async fn count(cluster: &PgCluster, sql: &str) -> i64 {
    cluster
        .connect("postgres")
        .await
        .expect("connect")
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Publications, slots (on the publisher) and subscriptions (on the subscriber) whose name
/// starts with `prefix`.
async fn leftovers(publisher: &PgCluster, subscriber: &PgCluster, prefix: &str) -> (i64, i64, i64) {
    let like = format!("{prefix}%");
    let p = publisher.connect("postgres").await.expect("connect");
    let s = subscriber.connect("postgres").await.expect("connect");
    let publications: i64 = p
        .query_one(
            "SELECT count(*) FROM pg_publication WHERE pubname LIKE $1",
            &[&like],
        )
        .await
        .expect("publications")
        .get(0);
    let slots: i64 = p
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE $1 OR slot_name LIKE 'pg\\_%\\_sync\\_%'",
            &[&like],
        )
        .await
        .expect("slots")
        .get(0);
    let subscriptions: i64 = s
        .query_one(
            "SELECT count(*) FROM pg_subscription WHERE subname LIKE $1",
            &[&like],
        )
        .await
        .expect("subscriptions")
        .get(0);
    (publications, slots, subscriptions)
}

fn problems(stream: &Value) -> Vec<(String, String)> {
    stream["problems"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                p["check"].as_str().unwrap_or("").to_owned(),
                p["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

async fn create(stack: &Stack, body: Value) -> (u16, Value) {
    stack
        .api(Method::POST, "api/v1/replication/streams", Some(body))
        .await
}

async fn stream(stack: &Stack, id: i64) -> Value {
    let (status, body) = stack
        .api(
            Method::GET,
            &format!("api/v1/replication/streams/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Starts a fleet migration and waits for its end.
async fn migrate(stack: &Stack, sql: &str, targets: &Value) -> Value {
    let (status, m) = stack
        .api(
            Method::POST,
            "api/v1/migrations",
            Some(json!({"sql": sql, "targets": targets})),
        )
        .await;
    assert_eq!(status, 201, "{m}");
    stack
        .wait_migration(m["id"].as_i64().expect("migration id"))
        .await
}

/// A migration's targets in the order they run: (instance id, status).
fn targets(m: &Value) -> Vec<(i64, &str)> {
    let mut t: Vec<&Value> = m["targets"].as_array().expect("targets").iter().collect();
    t.sort_by_key(|t| t["position"].as_i64());
    t.iter()
        .map(|t| {
            (
                t["instance_id"].as_i64().unwrap_or(0),
                t["status"].as_str().unwrap_or(""),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_validated_created_with_backfill_rolled_back_and_removed() {
    let stack = Stack::new(AGENT_ID).await;
    let publisher = PgCluster::start(PgOptions {
        logical: true,
        ..PgOptions::default()
    })
    .expect("publisher");
    let subscriber = PgCluster::start(PgOptions::default()).expect("subscriber");
    let replica_level = PgCluster::start(PgOptions::default()).expect("wal_level replica");
    publisher
        .connect("postgres")
        .await
        .expect("connect publisher")
        .batch_execute(&format!(
            "CREATE TABLE big (id bigint PRIMARY KEY, note text NOT NULL);
             INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, {ROWS}) g;
             CREATE TABLE nopk (v int);
             CREATE TABLE lonely (id int PRIMARY KEY);
             CREATE TABLE doomed (id int PRIMARY KEY);
             INSERT INTO doomed VALUES (1), (2);
             ANALYZE big;"
        ))
        .await
        .expect("publisher schema");
    // The subscriber's copy of `big` sleeps every 100,000 rows: the initial copy takes
    // seconds, so the agent's samples see it under way. ENABLE ALWAYS: apply and table-sync
    // workers run with session_replication_role = replica, where ordinary triggers do not fire.
    subscriber
        .connect("postgres")
        .await
        .expect("connect subscriber")
        .batch_execute(
            "CREATE TABLE big (id bigint PRIMARY KEY, note text NOT NULL);
             CREATE FUNCTION slow_copy() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.id % 100000 = 0 THEN PERFORM pg_sleep(0.6); END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER slow_copy BEFORE INSERT ON big FOR EACH ROW EXECUTE FUNCTION slow_copy();
             ALTER TABLE big ENABLE ALWAYS TRIGGER slow_copy;
             CREATE TABLE nopk (v int);
             CREATE TABLE doomed (id int PRIMARY KEY);",
        )
        .await
        .expect("subscriber schema");
    replica_level
        .connect("postgres")
        .await
        .expect("connect")
        .batch_execute("CREATE TABLE big (id bigint PRIMARY KEY)")
        .await
        .expect("replica-level schema");

    let (ingest, api) = stack.start_ingest_and_api(&stack.secrets_toml());
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 1\nhost = false\n\
             intervals = {{ subscription = 1, table = 1, replication_topology = 1, settings = 5 }}\n\
             [control]\nallow = [\"sql\", \"ddl\", \"replication\"]\n\
             [[instances]]\nname = \"publisher\"\ndsn = \"{}\"\n\
             [[instances]]\nname = \"subscriber\"\ndsn = \"{}\"\n\
             [[instances]]\nname = \"replica_level\"\ndsn = \"{}\"\n",
            publisher.dsn("postgres"),
            subscriber.dsn("postgres"),
            replica_level.dsn("postgres"),
        ),
    );
    let mut agent = stack.start_agent(&[]);
    let p = stack.instance_id("publisher").await;
    let s = stack.instance_id("subscriber").await;
    let r = stack.instance_id("replica_level").await;

    // The derived conninfo needs the publisher's identity and settings samples.
    let start = Instant::now();
    loop {
        let (_, topo) = stack
            .api(Method::GET, "api/v1/replication/topology", None)
            .await;
        let known = topo["nodes"].as_array().is_some_and(|n| {
            n.iter()
                .any(|n| n["instance_id"] == p && n["port"] == publisher.port())
        });
        let store = stack.store().await;
        let settings: i64 = store
            .query_one(
                "SELECT count(*) FROM metric_settings WHERE instance_id = $1 \
                 AND name = 'unix_socket_directories'",
                &[&p],
            )
            .await
            .expect("settings")
            .get(0);
        if known && settings > 0 {
            break;
        }
        assert!(start.elapsed() < BOUND, "publisher identity never sampled");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // --- Validation: every problem at once, nothing created.
    let (status, invalid) = create(
        &stack,
        json!({"from": p, "to": s, "tables": ["nopk", "public.lonely"]}),
    )
    .await;
    assert_eq!(status, 422, "{invalid}");
    assert_eq!(invalid["error"]["code"], "stream_invalid", "{invalid}");
    let invalid = &invalid["stream"];
    assert_eq!(invalid["status"], "invalid", "{invalid}");
    let found = problems(invalid);
    assert!(
        found
            .iter()
            .any(|(c, m)| c == "replica_identity" && m.contains("public.nopk")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(c, m)| c == "target_table_missing" && m.contains("public.lonely")),
        "{found:?}"
    );
    assert_eq!(
        leftovers(&publisher, &subscriber, "lasect_stream_").await,
        (0, 0, 0)
    );

    let (status, level) = create(&stack, json!({"from": r, "to": s, "tables": ["big"]})).await;
    assert_eq!(status, 422, "{level}");
    assert!(
        problems(&level["stream"])
            .iter()
            .any(|(c, m)| c == "wal_level" && m.contains("replica")),
        "{level}"
    );
    assert_eq!(
        count(
            &replica_level,
            "SELECT (SELECT count(*) FROM pg_publication) + (SELECT count(*) FROM pg_replication_slots)"
        )
        .await,
        0,
        "nothing created on the wal_level = replica server"
    );

    let closed = free_port();
    let (status, unreachable) = create(
        &stack,
        json!({"from": p, "to": s, "tables": ["big"],
               "conninfo": format!("host=127.0.0.1 port={closed} dbname=postgres user=postgres connect_timeout=3")}),
    )
    .await;
    assert_eq!(status, 422, "{unreachable}");
    assert!(
        problems(&unreachable["stream"])
            .iter()
            .any(|(c, _)| c == "publisher_unreachable"),
        "{unreachable}"
    );
    assert_eq!(
        leftovers(&publisher, &subscriber, "lasect_stream_").await,
        (0, 0, 0)
    );

    // A password inside the conninfo is refused before anything runs.
    let (status, body) = create(
        &stack,
        json!({"from": p, "to": s, "tables": ["big"],
               "conninfo": format!("host=127.0.0.1 port={} password={SECRET}", publisher.port())}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(!body.to_string().contains(SECRET), "{body}");

    // A dry run through the CLI: valid, nothing created.
    let out = stack.cli(&[
        "replication",
        "stream",
        "create",
        "--from",
        "publisher",
        "--to",
        "subscriber",
        "--tables",
        "big",
        "--dry-run",
    ]);
    assert!(out.contains("status validated"), "{out}");
    assert_eq!(
        leftovers(&publisher, &subscriber, "lasect_stream_").await,
        (0, 0, 0)
    );

    // --- Refusals: viewer and user may not create (nor, below, remove).
    let viewer = crate::support::users::with_role(&stack, "stream-viewer", "viewer").await;
    let user = crate::support::users::with_role(&stack, "stream-user", "user").await;
    for token in [&viewer, &user] {
        let (status, body) = stack
            .api_as(
                token,
                Method::POST,
                "api/v1/replication/streams",
                Some(json!({"from": p, "to": s, "tables": ["big"]})),
            )
            .await;
        assert_eq!(status, 403, "{body}");
    }

    // --- A stream of 1,000,000 rows: backfill under way, then streaming.
    let (status, created) = create(
        &stack,
        json!({"from": p, "to": s, "tables": ["big"], "user": "postgres", "password": SECRET}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "syncing", "{created}");
    assert_eq!(created["password_set"], true);
    let id = created["id"].as_i64().expect("stream id");
    let conninfo = created["conninfo"].as_str().expect("conninfo");
    assert!(
        conninfo.starts_with(&format!("host={}", publisher.socket_dir().display())),
        "the publisher's socket on the same host: {conninfo}"
    );
    assert_eq!(created["slot_name"], format!("lasect_stream_{id}"));

    let start = Instant::now();
    let mut under_way = None;
    let mut edge_under_way = None;
    let done = loop {
        let st = stream(&stack, id).await;
        let (_, topo) = stack
            .api(Method::GET, "api/v1/replication/topology", None)
            .await;
        if let Some(e) = topo["edges"].as_array().and_then(|edges| {
            edges.iter().find(|e| {
                e["from"] == format!("instance:{p}")
                    && e["to"] == format!("instance:{s}")
                    && e["backfill"]["tables"][0]["state"] == "data_copy"
            })
        }) {
            edge_under_way.get_or_insert(e.clone());
        }
        let b = &st["backfill"];
        let table = &b["tables"][0];
        if table["state"] == "data_copy"
            && table["percent"]
                .as_f64()
                .is_some_and(|x| x > 0.0 && x < 100.0)
            && table["eta_seconds"].is_f64()
        {
            under_way.get_or_insert(st.clone());
        }
        if b["state"] == "streaming" {
            break st;
        }
        assert!(start.elapsed() < BOUND, "backfill never finished: {st:#}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let under_way = under_way.expect("the copy was seen under way, with an ETA");
    // The topology's logical edge carries the same backfill while it copies.
    let edge = edge_under_way.expect("the topology edge showed the copy");
    assert_eq!(edge["state"], "initial_sync", "{edge:#}");
    assert!(
        edge["backfill"]["percent"]
            .as_f64()
            .is_some_and(|x| x < 100.0),
        "{edge:#}"
    );
    let t = &under_way["backfill"]["tables"][0];
    assert_eq!(
        (t["schema"].as_str(), t["table"].as_str()),
        (Some("public"), Some("big"))
    );
    assert!(
        t["rows_copied"].as_i64().is_some_and(|n| n > 0 && n < ROWS),
        "{t}"
    );
    assert!(
        t["publisher_rows"].as_i64().is_some_and(|n| n > ROWS / 2),
        "{t}"
    );
    assert!(
        t["rows_per_second"].as_f64().is_some_and(|r| r > 0.0),
        "{t}"
    );
    assert!(
        under_way["backfill"]["eta_seconds"].is_f64(),
        "{under_way:#}"
    );
    assert_eq!(done["backfill"]["percent"], 100.0, "{done:#}");
    assert_eq!(done["backfill"]["tables"][0]["state"], "ready");
    assert_eq!(count(&subscriber, "SELECT count(*) FROM big").await, ROWS);

    publisher
        .connect("postgres")
        .await
        .expect("connect")
        .batch_execute("INSERT INTO big VALUES (2000001, 'after'), (2000002, 'after')")
        .await
        .expect("insert after sync");
    let start = Instant::now();
    while count(&subscriber, "SELECT count(*) FROM big WHERE note = 'after'").await < 2 {
        assert!(
            start.elapsed() < BOUND,
            "rows inserted after the sync never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status_text = stack.cli(&["replication", "stream", "status", &id.to_string()]);
    assert!(status_text.contains("backfill: streaming"), "{status_text}");

    // --- A fleet migration by topology: the publisher of the stream's publication and its
    // subscribers, subscribers first. A subscriber that cannot take a change stops the chain
    // before the publisher gets it.
    let publication = format!("lasect_stream_{id}");
    let by_topology = json!({"role": "publisher", "publication": publication});
    let m = migrate(&stack, "ALTER TABLE big ADD COLUMN extra int", &by_topology).await;
    assert_eq!(m["status"], "succeeded", "{m:#}");
    assert_eq!(targets(&m), [(s, "succeeded"), (p, "succeeded")], "{m:#}");
    let column = "SELECT count(*) FROM information_schema.columns WHERE table_name = 'big' \
                  AND column_name = 'extra'";
    assert_eq!(
        (
            count(&subscriber, column).await,
            count(&publisher, column).await
        ),
        (1, 1)
    );
    subscriber
        .connect("postgres")
        .await
        .expect("connect")
        .batch_execute("ALTER TABLE big ADD COLUMN more int")
        .await
        .expect("a column the migration will collide with");
    let m = migrate(&stack, "ALTER TABLE big ADD COLUMN more int", &by_topology).await;
    assert_eq!(m["status"], "failed", "{m:#}");
    assert_eq!(targets(&m), [(s, "failed"), (p, "skipped")], "{m:#}");
    let more = "SELECT count(*) FROM information_schema.columns WHERE table_name = 'big' \
                AND column_name = 'more'";
    assert_eq!(
        count(&publisher, more).await,
        0,
        "the publisher was not changed"
    );

    // --- Rollback: the target table disappears while CREATE SUBSCRIPTION waits for it.
    let blocker = subscriber.connect("postgres").await.expect("connect");
    blocker
        .batch_execute("BEGIN; LOCK TABLE doomed IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let task = {
        let url = format!(
            "https://127.0.0.1:{}/api/v1/replication/streams",
            stack.api_port
        );
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(
                    &std::fs::read(stack.tls().join("ca.pem")).expect("ca"),
                )
                .expect("ca pem"),
            )
            .build()
            .expect("client");
        let token = stack.admin_token.clone();
        let body = json!({"from": p, "to": s, "tables": ["doomed"]});
        tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("post");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.expect("json"))
        })
    };
    let start = Instant::now();
    loop {
        let waiting = count(
            &subscriber,
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE NOT l.granted AND l.relation = 'doomed'::regclass \
               AND a.application_name LIKE 'lasect run %'",
        )
        .await;
        if waiting > 0 {
            break;
        }
        assert!(
            start.elapsed() < BOUND,
            "CREATE SUBSCRIPTION never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = stack.store().await;
    let second_id: i64 = second
        .query_one("SELECT max(id) FROM replication_streams", &[])
        .await
        .expect("stream id")
        .get(0);
    // The publication and the slot exist by now: the failure comes after them.
    assert_eq!(
        leftovers(
            &publisher,
            &subscriber,
            &format!("lasect_stream_{second_id}")
        )
        .await
        .0,
        1
    );
    blocker
        .batch_execute("DROP TABLE doomed; COMMIT")
        .await
        .expect("drop under the lock");
    let (status, failed) = task.await.expect("request task");
    assert_eq!(status, 422, "{failed}");
    assert_eq!(failed["error"]["code"], "stream_failed", "{failed}");
    let failed = &failed["stream"];
    assert_eq!(failed["status"], "failed", "{failed:#}");
    assert_eq!(failed["failed_step"], "subscribe", "{failed:#}");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("doomed")),
        "{failed:#}"
    );
    let steps: Vec<(&str, &str)> = failed["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or(""),
                s["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("validate_publisher", "succeeded"),
            ("validate_subscriber", "succeeded"),
            ("publish", "succeeded"),
            ("subscribe", "failed"),
            ("rollback_subscriber", "succeeded"),
            ("rollback_publisher", "succeeded"),
        ]
    );
    assert_eq!(
        leftovers(
            &publisher,
            &subscriber,
            &format!("lasect_stream_{second_id}")
        )
        .await,
        (0, 0, 0)
    );

    // Streams are shown to viewers of both instances only: an admin of other instances sees
    // neither the list entry nor the stream.
    let elsewhere = crate::support::users::signed_in(
        &stack,
        "stream-elsewhere",
        json!({"grants": [{"key": "team", "value": "elsewhere", "role": "admin"}]}),
    )
    .await;
    let (status, list) = stack
        .api_as(&elsewhere, Method::GET, "api/v1/replication/streams", None)
        .await;
    assert_eq!((status, &list["streams"]), (200, &json!([])), "{list}");
    let (status, body) = stack
        .api_as(
            &elsewhere,
            Method::GET,
            &format!("api/v1/replication/streams/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, list) = stack
        .api_as(&viewer, Method::GET, "api/v1/replication/streams", None)
        .await;
    assert_eq!(status, 200, "{list}");
    assert!(
        list["streams"]
            .as_array()
            .is_some_and(|l| l.iter().any(|s| s["id"] == id)),
        "{list}"
    );

    // --- Remove: refused to viewer and user, then nothing left on either side.
    for token in [&viewer, &user] {
        let (status, body) = stack
            .api_as(
                token,
                Method::DELETE,
                &format!("api/v1/replication/streams/{id}"),
                None,
            )
            .await;
        assert!(status == 403 || status == 404, "{status} {body}");
    }
    let out = stack.cli(&["replication", "stream", "remove", &id.to_string()]);
    assert!(out.contains("status removed"), "{out}");
    assert_eq!(
        leftovers(&publisher, &subscriber, "lasect_stream_").await,
        (0, 0, 0)
    );
    assert_eq!(
        count(&publisher, "SELECT count(*) FROM pg_replication_slots").await,
        0,
        "no slot at all on the publisher"
    );

    // The password: in no answer, run parameter, stored conninfo or log.
    let (_, all) = stack
        .api(Method::GET, "api/v1/replication/streams", None)
        .await;
    assert!(!all.to_string().contains(SECRET));
    assert!(!stream(&stack, id).await.to_string().contains(SECRET));
    let store = stack.store().await;
    let leaks: i64 = store
        .query_one(
            "SELECT (SELECT count(*) FROM runs WHERE params::text LIKE '%' || $1 || '%') + \
                    (SELECT count(*) FROM replication_streams WHERE conninfo LIKE '%' || $1 || '%') + \
                    (SELECT count(*) FROM audit_log WHERE coalesce(error, '') LIKE '%' || $1 || '%')",
            &[&SECRET],
        )
        .await
        .expect("leak check")
        .get(0);
    assert_eq!(leaks, 0);
    crate::support::logs::assert_not_logged(
        SECRET,
        &[("agent", &agent), ("ingest", &ingest), ("api", &api)],
    );

    // --- An agent that is offline fails its step at once instead of holding the operation
    // until the run's queue time runs out.
    agent.terminate(Duration::from_secs(10));
    let start = Instant::now();
    loop {
        let silent: bool = store
            .query_one(
                "SELECT last_seen < now() - interval '30 seconds' FROM agents WHERE id = $1",
                &[&AGENT_ID],
            )
            .await
            .expect("agent")
            .get(0);
        if silent {
            break;
        }
        assert!(
            start.elapsed() < BOUND,
            "the agent never counted as offline"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, offline) = create(&stack, json!({"from": p, "to": s, "tables": ["big"]})).await;
    assert_eq!(status, 422, "{offline}");
    let found = problems(&offline["stream"]);
    assert!(
        found
            .iter()
            .any(|(c, m)| c == "agent" && m.contains("offline")),
        "{found:?}"
    );
}

/// Test-sized copies of the default pack's subscription rules (migrations V37 and V38): the
/// same family, column, aggregation, `by`, `where` and comparison, with windows of seconds.
const SUBSCRIPTION_RULES: &str = r#"
rules:
  - name: subscription_copy_stalled
    severity: warning
    condition: {kind: threshold, family: subscription_copy, column: tuples_processed, agg: rate,
                by: [subname, schemaname, relname], window_secs: 4, op: "<=", threshold: 0}
  - name: subscription_sync_errors
    severity: warning
    condition: {kind: threshold, family: subscription, column: sync_error_count, agg: rate,
                by: [subname], window_secs: 8, op: ">", threshold: 0}
  - name: subscription_apply_errors
    severity: critical
    condition: {kind: threshold, family: subscription, column: apply_error_count, agg: rate,
                by: [subname], window_secs: 8, op: ">", threshold: 0}
  - name: subscription_worker_down
    severity: warning
    condition: {kind: threshold, family: subscription, column: apply_worker_running, agg: avg,
                by: [subname], where: [{column: enabled, op: eq, value: "true"}],
                window_secs: 4, op: "<", threshold: 0.5}
"#;

/// What [`SUBSCRIPTION_RULES`] keeps of each default rule: name, family, column, aggregation
/// and comparison.
const COPIED: [(&str, &str, &str, &str, &str); 4] = [
    (
        "subscription_copy_stalled",
        "subscription_copy",
        "tuples_processed",
        "rate",
        "<=",
    ),
    (
        "subscription_sync_errors",
        "subscription",
        "sync_error_count",
        "rate",
        ">",
    ),
    (
        "subscription_apply_errors",
        "subscription",
        "apply_error_count",
        "rate",
        ">",
    ),
    (
        "subscription_worker_down",
        "subscription",
        "apply_worker_running",
        "avg",
        "<",
    ),
];

/// The state of the newest alert of `rule` for subscription `subname`.
async fn alert_state(store: &tokio_postgres::Client, rule: &str, subname: &str) -> Option<String> {
    store
        .query_opt(
            "SELECT a.state FROM alert_instances a JOIN alert_rules r ON r.id = a.rule_id \
             WHERE r.name = $1 AND a.key_labels ->> 'subname' = $2 \
             ORDER BY a.since DESC, a.id DESC LIMIT 1",
            &[&rule, &subname],
        )
        .await
        .expect("alert state")
        .map(|r| r.get(0))
}

async fn wait_alert(store: &tokio_postgres::Client, rule: &str, subname: &str, want: &str) {
    let start = Instant::now();
    loop {
        let now = alert_state(store, rule, subname).await;
        if now.as_deref() == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < BOUND,
            "{rule} of {subname} not {want} within {BOUND:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until `sql` (one count) on `cluster` answers `want`.
async fn wait_count(cluster: &PgCluster, sql: &str, want: i64) {
    let start = Instant::now();
    loop {
        let n = count(cluster, sql).await;
        if n == want {
            return;
        }
        assert!(start.elapsed() < BOUND, "{sql}: {n}, not {want}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `--copy-schema` end to end, and the default pack's subscription rules driven for real:
///
/// - a table missing on the subscriber (serial primary key, an index, a default, NOT NULL and
///   a CHECK constraint) is reported missing without `--copy-schema`; with it (through the CLI)
///   the subscriber's agent creates it with all of those, the rows arrive, and so do rows
///   written afterwards;
/// - a copy stalled by an uncommitted row of the same key on the subscriber fires
///   `subscription_copy_stalled`; the row committed, each new copy fails on it
///   (`subscription_sync_errors`) and the stall ends; the row deleted, the copy completes and
///   the errors stop;
/// - a row the subscriber already has makes the apply worker fail on the publisher's insert of
///   the same key (`subscription_apply_errors`) until it is deleted;
/// - the publisher stopped, the enabled subscription's apply worker cannot run
///   (`subscription_worker_down`, the samples saying enabled and not running) until the
///   publisher is started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_schema_creates_the_table_and_subscription_rules_fire() {
    const CHAIN_ROWS: i64 = 200_000;
    const CONFLICT: i64 = 150_000;
    let stack = Stack::new("e2e-streams-schema").await;
    let publisher = PgCluster::start(PgOptions {
        logical: true,
        ..PgOptions::default()
    })
    .expect("publisher");
    let subscriber = PgCluster::start(PgOptions::default()).expect("subscriber");
    publisher
        .connect("postgres")
        .await
        .expect("connect publisher")
        .batch_execute(&format!(
            "CREATE TABLE shaped (id bigserial PRIMARY KEY, code text NOT NULL,
                 qty integer NOT NULL DEFAULT 7 CONSTRAINT qty_not_negative CHECK (qty >= 0),
                 note text);
             CREATE INDEX shaped_code ON shaped (code);
             INSERT INTO shaped (code, qty) SELECT 'c' || g, g % 5 FROM generate_series(1, 1000) g;
             CREATE TABLE chain (id bigint PRIMARY KEY, v text NOT NULL);
             INSERT INTO chain SELECT g, 'row ' || g FROM generate_series(1, {CHAIN_ROWS}) g;
             ANALYZE"
        ))
        .await
        .expect("publisher schema");
    let sub = subscriber
        .connect("postgres")
        .await
        .expect("connect subscriber");
    sub.batch_execute("CREATE TABLE chain (id bigint PRIMARY KEY, v text NOT NULL)")
        .await
        .expect("subscriber schema");

    let mut ingest = stack.spawn_ingest(&stack.secrets_toml());
    let mut api =
        lasect_testkit::ChildGuard::spawn(stack.api_command(lasect_e2e::ALERTS_EVERY_SECOND))
            .expect("spawn api");
    lasect_e2e::wait_listening(&mut ingest);
    lasect_e2e::wait_listening(&mut api);
    // The pack's replication rules (V37, V38) are there and run against the store's families; the
    // test then applies its test-sized copies over three of them.
    for name in [
        "subscription_copy_stalled",
        "subscription_apply_errors",
        "subscription_sync_errors",
        "subscription_worker_down",
        "standby_wal_receiver_down",
        "slot_invalidated",
    ] {
        let (status, tried) = stack
            .api(
                Method::POST,
                "api/v1/alerts/rules/test",
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(status, 200, "{name}: {tried}");
        let (_, rules) = stack.api(Method::GET, "api/v1/alerts/rules", None).await;
        let rule = rules["rules"]
            .as_array()
            .and_then(|l| l.iter().find(|r| r["rule"]["name"] == name))
            .unwrap_or_else(|| panic!("no rule {name}: {rules}"));
        assert_eq!(rule["source"], "default", "{rule}");
        // The copies below keep the default's condition but for its numbers.
        if let Some((_, family, column, agg, op)) = COPIED.iter().find(|c| c.0 == name) {
            let c = &rule["rule"]["condition"];
            assert_eq!(
                (&c["family"], &c["column"], &c["agg"], &c["op"]),
                (&json!(family), &json!(column), &json!(agg), &json!(op)),
                "{rule}"
            );
        }
        if name == "subscription_worker_down" {
            assert_eq!(
                rule["rule"]["condition"]["where"],
                json!([{"column": "enabled", "op": "eq", "value": "true"}]),
                "{rule}"
            );
        }
    }
    let rules = stack.path("rules.yaml");
    lasect_e2e::write(&rules, SUBSCRIPTION_RULES);
    stack.cli(&[
        "alert",
        "rule",
        "apply",
        "-f",
        rules.to_str().expect("path"),
    ]);
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 1\nhost = false\n\
             intervals = {{ subscription = 1, table = 1, replication_topology = 1, settings = 5 }}\n\
             [control]\nallow = [\"sql\", \"ddl\", \"replication\"]\n\
             [[instances]]\nname = \"publisher\"\ndsn = \"{}\"\n\
             [[instances]]\nname = \"subscriber\"\ndsn = \"{}\"\n",
            publisher.dsn("postgres"),
            subscriber.dsn("postgres"),
        ),
    );
    let _agent = stack.start_agent(&[]);
    let p = stack.instance_id("publisher").await;
    let s = stack.instance_id("subscriber").await;
    let store = stack.store().await;
    // The derived conninfo needs the publisher's identity and settings samples.
    let start = Instant::now();
    loop {
        let sampled: i64 = store
            .query_one(
                "SELECT (SELECT count(*) FROM metric_settings WHERE instance_id = $1 \
                         AND name = 'unix_socket_directories') \
                      * (SELECT count(*) FROM metric_replication_identity WHERE instance_id = $1)",
                &[&p],
            )
            .await
            .expect("samples")
            .get(0);
        if sampled > 0 {
            break;
        }
        assert!(start.elapsed() < BOUND, "publisher identity never sampled");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // --- Without --copy-schema: the missing table is reported, nothing is created.
    let (status, missing) = create(&stack, json!({"from": p, "to": s, "tables": ["shaped"]})).await;
    assert_eq!(status, 422, "{missing}");
    assert!(
        problems(&missing["stream"])
            .iter()
            .any(|(c, m)| c == "target_table_missing" && m.contains("public.shaped")),
        "{missing}"
    );
    let exists = "SELECT count(*) FROM pg_class WHERE relname = 'shaped'";
    assert_eq!(count(&subscriber, exists).await, 0);

    // --- With it (the CLI): the table is made from the publisher's definition.
    let out = stack.cli(&[
        "replication",
        "stream",
        "create",
        "--from",
        "publisher",
        "--to",
        "subscriber",
        "--tables",
        "shaped",
        "--copy-schema",
    ]);
    assert!(out.contains("status syncing"), "{out}");
    let (_, list) = stack
        .api(Method::GET, "api/v1/replication/streams", None)
        .await;
    let shaped = list["streams"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["status"] == "syncing"))
        .cloned()
        .expect("the stream");
    assert_eq!(shaped["copy_schema"], true, "{shaped}");
    assert_eq!(
        shaped["created_tables"],
        json!(["public.shaped"]),
        "{shaped}"
    );
    wait_count(&subscriber, "SELECT count(*) FROM shaped", 1000).await;
    let shape = [
        (
            "primary key",
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'shaped'::regclass AND contype = 'p'",
        ),
        (
            "check constraint",
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'shaped'::regclass \
             AND contype = 'c' AND conname = 'qty_not_negative' \
             AND pg_get_constraintdef(oid) = 'CHECK ((qty >= 0))'",
        ),
        (
            "index",
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'shaped' AND indexname = 'shaped_code' \
             AND indexdef LIKE '%USING btree (code)'",
        ),
        (
            "default and NOT NULL",
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'shaped' \
             AND column_name = 'qty' AND column_default = '7' AND is_nullable = 'NO'",
        ),
        (
            "NOT NULL",
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'shaped' \
             AND column_name = 'code' AND is_nullable = 'NO' AND column_default IS NULL",
        ),
        (
            "serial from its own sequence",
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'shaped' \
             AND column_name = 'id' AND column_default LIKE 'nextval(%shaped_id_seq%' \
             AND pg_get_serial_sequence('shaped', 'id') IS NOT NULL",
        ),
    ];
    for (what, sql) in shape {
        assert_eq!(count(&subscriber, sql).await, 1, "{what}: {sql}");
    }
    publisher
        .connect("postgres")
        .await
        .expect("connect")
        .batch_execute("INSERT INTO shaped (code) VALUES ('later')")
        .await
        .expect("insert after the copy");
    wait_count(
        &subscriber,
        "SELECT count(*) FROM shaped WHERE code = 'later' AND qty = 7",
        1,
    )
    .await;

    // --- A stalled copy: the subscriber holds an uncommitted row of a key the copy reaches.
    let blocker = subscriber.connect("postgres").await.expect("connect");
    blocker
        .batch_execute(&format!(
            "BEGIN; INSERT INTO chain VALUES ({CONFLICT}, 'the subscriber''s own')"
        ))
        .await
        .expect("uncommitted row");
    let (status, chain) = create(&stack, json!({"from": p, "to": s, "tables": ["chain"]})).await;
    assert_eq!(status, 201, "{chain}");
    let subname = chain["subscription"]
        .as_str()
        .expect("subscription")
        .to_owned();
    wait_alert(&store, "subscription_copy_stalled", &subname, "firing").await;
    let copied: i64 = store
        .query_one(
            "SELECT max(tuples_processed) FROM metric_subscription_copy \
             WHERE instance_id = $1 AND subname = $2 AND relname = 'chain'",
            &[&s, &subname],
        )
        .await
        .expect("copy samples")
        .get(0);
    assert!(
        copied > 0 && copied < CHAIN_ROWS,
        "stalled part way: {copied}"
    );
    // Committed: each new copy now fails on the row (sync errors), and none stalls.
    blocker.batch_execute("COMMIT").await.expect("commit");
    wait_alert(&store, "subscription_sync_errors", &subname, "firing").await;
    wait_alert(&store, "subscription_copy_stalled", &subname, "resolved").await;
    sub.batch_execute(&format!("DELETE FROM chain WHERE id = {CONFLICT}"))
        .await
        .expect("delete the row");
    wait_count(&subscriber, "SELECT count(*) FROM chain", CHAIN_ROWS).await;
    wait_alert(&store, "subscription_sync_errors", &subname, "resolved").await;

    // --- Apply errors: the subscriber already has the key the publisher inserts next.
    let next = CHAIN_ROWS + 1;
    sub.batch_execute(&format!(
        "INSERT INTO chain VALUES ({next}, 'the subscriber''s own')"
    ))
    .await
    .expect("subscriber row");
    publisher
        .connect("postgres")
        .await
        .expect("connect")
        .batch_execute(&format!(
            "INSERT INTO chain VALUES ({next}, 'the publisher''s')"
        ))
        .await
        .expect("publisher row");
    wait_alert(&store, "subscription_apply_errors", &subname, "firing").await;
    sub.batch_execute(&format!("DELETE FROM chain WHERE id = {next}"))
        .await
        .expect("delete the row");
    wait_count(
        &subscriber,
        &format!("SELECT count(*) FROM chain WHERE id = {next} AND v = 'the publisher''s'"),
        1,
    )
    .await;
    wait_alert(&store, "subscription_apply_errors", &subname, "resolved").await;

    // --- The publisher down: the subscription stays enabled, its apply worker cannot run.
    // The worker failing in a loop above may have fired the rule already: it ends first.
    let start = Instant::now();
    while alert_state(&store, "subscription_worker_down", &subname)
        .await
        .is_some_and(|state| state == "pending" || state == "firing")
    {
        assert!(
            start.elapsed() < BOUND,
            "subscription_worker_down never ended"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let sampled = |running: bool, after: f64| {
        format!(
            "SELECT count(*) FROM metric_subscription WHERE instance_id = {s} \
             AND subname = '{subname}' AND enabled AND apply_worker_running = {running} \
             AND time > to_timestamp({after})"
        )
    };
    wait_store(&store, &sampled(true, 0.0)).await;
    let stopped_at: f64 = store
        .query_one("SELECT extract(epoch FROM now())::float8", &[])
        .await
        .expect("now")
        .get(0);
    publisher.stop().expect("stop the publisher");
    wait_alert(&store, "subscription_worker_down", &subname, "firing").await;
    wait_store(&store, &sampled(false, stopped_at)).await;
    publisher.restart().expect("start the publisher again");
    wait_alert(&store, "subscription_worker_down", &subname, "resolved").await;
}

/// Waits until `sql` (one count) on the store is above 0.
async fn wait_store(store: &tokio_postgres::Client, sql: &str) {
    let start = Instant::now();
    loop {
        let n: i64 = store.query_one(sql, &[]).await.expect(sql).get(0);
        if n > 0 {
            return;
        }
        assert!(start.elapsed() < BOUND, "{sql}: never above 0");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
