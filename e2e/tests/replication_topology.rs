//! The replication topology end to end (issue 21, R1) over the real binaries: a primary
//! (wal_level = logical) with a streaming replica on a physical slot and a replica of that
//! replica (cascade), a watched subscriber whose conninfo holds a password, and an unwatched
//! subscriber; one `lasect-agent` watches the primary, both replicas and the watched
//! subscriber.
//!
//! - `GET /api/v1/replication/topology`: the physical edge primary → replica with its lag
//!   fields and slot, and replica → cascade, all in one cluster (same system identifier); the
//!   logical edge primary → subscriber with its slot, publication, tables and their sync
//!   state; the unwatched subscriber as an external node fed by the primary;
//! - the conninfo's password appears nowhere: not in the API's answers, not in any metric
//!   table, not in the logs of the agent, ingest or the API;
//! - a user granted viewer on the subscriber's label sees the subscriber and its publisher as
//!   an external node, never the primary or the replica; a user without any role is refused,
//!   and so is a bad label filter;
//! - `lasect replication topology`: the tree, and the same JSON with `--output json`.

use std::time::{Duration, Instant};

use lasect_e2e::Stack;
use lasect_testkit::{PgCluster, PgOptions, REPLICA_APPLICATION_NAME};
use reqwest::Method;
use serde_json::{Value, json};

const AGENT_ID: &str = "e2e-topology";
/// In the watched subscription's conninfo (trust authentication ignores it).
const SECRET: &str = "Topo-Secret-4242";
const BOUND: Duration = Duration::from_secs(120);

fn edges(t: &Value) -> &[Value] {
    t["edges"].as_array().map(Vec::as_slice).unwrap_or_default()
}

fn nodes(t: &Value) -> &[Value] {
    t["nodes"].as_array().map(Vec::as_slice).unwrap_or_default()
}

fn node<'a>(t: &'a Value, id: &str) -> Option<&'a Value> {
    nodes(t).iter().find(|n| n["id"] == id)
}

/// Polls the topology as `token` until `done` accepts it, within [`BOUND`].
async fn wait_topology(stack: &Stack, token: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (status, body) = stack
            .api_as(token, Method::GET, "api/v1/replication/topology", None)
            .await;
        assert_eq!(status, 200, "{body}");
        if done(&body) {
            return body;
        }
        assert!(start.elapsed() < BOUND, "topology never complete: {body:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn physical_and_logical_edges_external_nodes_and_scoping() {
    let stack = Stack::new(AGENT_ID).await;
    // A base backup taken from a standby (the cascade) needs full-page writes on the primary.
    let primary = PgCluster::start(PgOptions {
        logical: true,
        settings: vec![("full_page_writes".into(), "on".into())],
        ..PgOptions::default()
    })
    .expect("primary");
    let table = "CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL)";
    primary
        .connect("postgres")
        .await
        .expect("connect primary")
        .batch_execute(&format!(
            "{table}; INSERT INTO orders VALUES (1, 'paid'), (2, 'open');
             CREATE PUBLICATION pub_orders FOR TABLE orders;"
        ))
        .await
        .expect("primary schema");
    let replica = primary
        .start_replica(Some("replica_slot"))
        .expect("replica");
    let cascade = replica.start_replica(None).expect("cascaded replica");
    let subscriber = PgCluster::start(PgOptions::default()).expect("subscriber");
    let outsider = PgCluster::start(PgOptions::default()).expect("outsider");
    for c in [&subscriber, &outsider] {
        c.connect("postgres")
            .await
            .expect("connect")
            .batch_execute(table)
            .await
            .expect("subscriber table");
    }
    subscriber
        .connect("postgres")
        .await
        .expect("connect subscriber")
        .batch_execute(&format!(
            "CREATE SUBSCRIPTION sub_orders CONNECTION \
             'host=127.0.0.1 port={} user=postgres dbname=postgres password={SECRET}' \
             PUBLICATION pub_orders",
            primary.port()
        ))
        .await
        .expect("subscribe with a password");
    outsider
        .subscribe(&primary, "postgres", "pub_orders", "sub_outside")
        .await
        .expect("unwatched subscription");

    let (ingest, api) = stack.start_ingest_and_api("");
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 1\nhost = false\n\
             intervals = {{ replication = 1, replication_slot = 1, standby = 1, subscription = 1, replication_topology = 1 }}\n\
             [[instances]]\nname = \"primary\"\ndsn = \"{}\"\n\
             [[instances]]\nname = \"replica\"\ndsn = \"{}\"\n\
             [[instances]]\nname = \"subscriber\"\ndsn = \"{}\"\n\
             [[instances]]\nname = \"cascade\"\ndsn = \"{}\"\n",
            primary.dsn("postgres"),
            replica.dsn("postgres"),
            subscriber.dsn("postgres"),
            cascade.dsn("postgres"),
        ),
    );
    let agent = stack.start_agent(&[]);
    let p = format!("instance:{}", stack.instance_id("primary").await);
    let r = format!("instance:{}", stack.instance_id("replica").await);
    let s = format!("instance:{}", stack.instance_id("subscriber").await);
    let c = format!("instance:{}", stack.instance_id("cascade").await);
    let outside = "external:127.0.0.1/sub_outside";

    let topo = wait_topology(&stack, &stack.admin_token, |t| {
        let physical = edges(t).iter().any(|e| {
            e["from"] == p.as_str()
                && e["to"] == r.as_str()
                && e["state"] == "streaming"
                && e["replay_lag_bytes"].is_i64()
        });
        let logical = edges(t).iter().any(|e| {
            e["from"] == p.as_str()
                && e["to"] == s.as_str()
                && e["state"] == "streaming"
                && e["slot_active"] == true
        });
        let external = edges(t)
            .iter()
            .any(|e| e["from"] == p.as_str() && e["to"] == outside);
        let cascaded = edges(t)
            .iter()
            .any(|e| e["from"] == r.as_str() && e["to"] == c.as_str() && e["state"] == "streaming");
        physical && logical && external && cascaded
    })
    .await;

    // Nodes: one cluster for the primary and its replica, another for the subscriber.
    let (pn, rn, sn) = (
        node(&topo, &p).expect("primary node"),
        node(&topo, &r).expect("replica node"),
        node(&topo, &s).expect("subscriber node"),
    );
    assert_eq!(pn["role"], "primary", "{pn}");
    assert_eq!(rn["role"], "standby", "{rn}");
    assert!(pn["system_identifier"].is_string(), "{pn}");
    assert_eq!(pn["system_identifier"], rn["system_identifier"]);
    assert_ne!(pn["system_identifier"], sn["system_identifier"]);
    assert_eq!(pn["timeline_id"], 1, "{pn}");
    assert_eq!(pn["port"], primary.port(), "{pn}");

    let physical = edges(&topo)
        .iter()
        .find(|e| e["from"] == p.as_str() && e["to"] == r.as_str())
        .expect("physical edge");
    assert_eq!(physical["kind"], "physical", "{physical}");
    assert_eq!(
        physical["application_name"], REPLICA_APPLICATION_NAME,
        "{physical}"
    );
    assert_eq!(physical["slot_name"], "replica_slot", "{physical}");
    assert_eq!(physical["slot_active"], true, "{physical}");
    for lag in [
        "sent_lag_bytes",
        "write_lag_bytes",
        "flush_lag_bytes",
        "replay_lag_bytes",
        "slot_retained_bytes",
    ] {
        assert!(
            physical[lag].as_i64().is_some_and(|b| b >= 0),
            "{lag}: {physical}"
        );
    }
    assert!(physical["last_message_age_seconds"].is_f64(), "{physical}");
    // The cascade hangs off the replica, not the primary, in the same cluster.
    let from_replica: Vec<&Value> = edges(&topo)
        .iter()
        .filter(|e| e["from"] == r.as_str())
        .collect();
    assert_eq!(from_replica.len(), 1, "{topo:#}");
    assert_eq!(from_replica[0]["to"], c.as_str(), "{topo:#}");
    assert_eq!(from_replica[0]["kind"], "physical");
    assert!(from_replica[0]["replay_lag_bytes"].is_i64(), "{topo:#}");
    assert!(
        !edges(&topo)
            .iter()
            .any(|e| e["from"] == p.as_str() && e["to"] == c.as_str())
    );
    assert_eq!(
        node(&topo, &c).expect("cascade node")["system_identifier"],
        pn["system_identifier"]
    );

    let logical = edges(&topo)
        .iter()
        .find(|e| e["from"] == p.as_str() && e["to"] == s.as_str())
        .expect("logical edge");
    assert_eq!(logical["kind"], "logical", "{logical}");
    assert_eq!(logical["subscription"], "sub_orders", "{logical}");
    assert_eq!(logical["publications"], json!(["pub_orders"]), "{logical}");
    assert_eq!(logical["publisher_database"], "postgres", "{logical}");
    assert_eq!(logical["slot_name"], "sub_orders", "{logical}");
    assert!(logical["slot_retained_bytes"].is_i64(), "{logical}");
    assert!(logical["received_lsn"].is_i64(), "{logical}");
    assert!(logical["apply_lag_bytes"].is_i64(), "{logical}");
    assert!(logical["last_message_at"].is_string(), "{logical}");
    assert_eq!(
        logical["tables"],
        json!([{"schema": "public", "table": "orders", "state": "ready"}]),
        "{logical}"
    );
    assert_eq!(
        logical["published_tables"],
        json!(["public.orders"]),
        "{logical}"
    );
    // The walsender of the watched subscription is that edge, not an external node.
    assert_eq!(
        edges(&topo)
            .iter()
            .filter(|e| e["subscription"] == "sub_orders" || e["application_name"] == "sub_orders")
            .count(),
        1,
        "{topo:#}"
    );

    // The unwatched subscriber: an external node fed by the primary, with its slot.
    let ext = node(&topo, outside).expect("external node");
    assert_eq!(ext["kind"], "external", "{ext}");
    assert!(ext["instance_id"].is_null(), "{ext}");
    let ext_edge = edges(&topo)
        .iter()
        .find(|e| e["to"] == outside)
        .expect("external edge");
    assert_eq!(ext_edge["kind"], "logical", "{ext_edge}");
    assert_eq!(ext_edge["slot_name"], "sub_outside", "{ext_edge}");

    // The label filter: the subscriber's label keeps its edge and its publisher only.
    let store = stack.store().await;
    store
        .execute(
            "UPDATE instances SET labels = '{\"team\": \"logical\"}' WHERE name = 'subscriber'",
            &[],
        )
        .await
        .expect("label the subscriber");
    let (status, filtered) = stack
        .api(
            Method::GET,
            "api/v1/replication/topology?label=team%3Dlogical",
            None,
        )
        .await;
    assert_eq!(status, 200, "{filtered}");
    let ids: Vec<&str> = nodes(&filtered)
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{filtered:#}");
    assert!(
        ids.contains(&p.as_str()) && ids.contains(&s.as_str()),
        "{ids:?}"
    );
    assert_eq!(edges(&filtered).len(), 1, "{filtered:#}");
    let (status, body) = stack
        .api(Method::GET, "api/v1/replication/topology?label=team", None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query", "{body}");

    // A label-scoped viewer: the subscriber, and its publisher as a server it does not see.
    let lena = crate::support::users::signed_in(
        &stack,
        "lena",
        json!({"grants": [{"key": "team", "value": "logical", "role": "viewer"}]}),
    )
    .await;
    let scoped = wait_topology(&stack, &lena, |t| !edges(t).is_empty()).await;
    let scoped_ids: Vec<&str> = nodes(&scoped)
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    let publisher_seen = format!("external:127.0.0.1:{}", primary.port());
    assert_eq!(
        scoped_ids,
        vec![publisher_seen.as_str(), s.as_str()],
        "{scoped:#}"
    );
    let only = &edges(&scoped)[0];
    assert_eq!(only["from"], publisher_seen.as_str(), "{only}");
    assert_eq!(only["subscription"], "sub_orders", "{only}");
    assert!(
        only["slot_retained_bytes"].is_null(),
        "the primary's slots are not hers"
    );
    // No role at all: refused; no token: refused.
    let nobody = crate::support::users::signed_in(&stack, "nobody", json!({"grants": []})).await;
    let (status, body) = stack
        .api_as(&nobody, Method::GET, "api/v1/replication/topology", None)
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = stack
        .api_as("", Method::GET, "api/v1/replication/topology", None)
        .await;
    assert_eq!(status, 401);

    // The CLI: a tree, and the API's JSON.
    let text = stack.cli(&["replication", "topology"]);
    let first = text.lines().next().unwrap_or("");
    assert!(first.starts_with("primary (primary)"), "{text}");
    assert!(
        text.contains("└─ replica (standby)") && text.contains("physical streaming"),
        "{text}"
    );
    assert!(text.contains("\n    └─ cascade (standby)"), "{text}");
    assert!(
        text.contains("└─ subscriber (primary)") && text.contains("subscription sub_orders"),
        "{text}"
    );
    assert!(text.contains("[not watched]"), "{text}");
    let json: Value = serde_json::from_str(&stack.cli(&[
        "replication",
        "topology",
        "--label",
        "team=logical",
        "--output",
        "json",
    ]))
    .expect("json");
    assert_eq!(nodes(&json).len(), 2, "{json:#}");

    // The password: nowhere in the answers, the store's metric tables or the logs.
    assert!(!topo.to_string().contains(SECRET));
    assert!(!scoped.to_string().contains(SECRET));
    assert!(!text.contains(SECRET));
    let tables: Vec<String> = store
        .query("SELECT table_name FROM metric_families ORDER BY 1", &[])
        .await
        .expect("families")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in &tables {
        let n: i64 = store
            .query_one(
                &format!("SELECT count(*) FROM {t} x WHERE x::text LIKE '%' || $1 || '%'"),
                &[&SECRET],
            )
            .await
            .expect("search")
            .get(0);
        assert_eq!(n, 0, "{t} holds the conninfo's password");
    }
    crate::support::logs::assert_not_logged(
        SECRET,
        &[("agent", &agent), ("ingest", &ingest), ("api", &api)],
    );
}
