//! The console's pages beyond the fleet and the instance (`console/src/pages`), driven in the
//! same browser test and on the same stack as `console.rs` (`console/tests/pages.mjs`), while
//! the agent is still running (SQL, EXPLAIN, snapshots and rows are runs it executes):
//!
//! - the statements page lists a statement the test ran on the monitored cluster, and its page
//!   shows its text and charts, and its auto_explain plan (the session ran it with auto_explain
//!   in JSON) as a plan tree;
//! - a SQL run with a bound parameter returns exactly the rows of the test schema, with their
//!   types, and exports them as CSV; EXPLAIN ANALYZE shows a plan tree with a costly node; a
//!   long statement is cancelled from the editor; a write is refused without "Allow writes" and
//!   applied with it, and a second snapshot shows the changes marked breaking / non-breaking;
//!   a user is offered SQL but no write;
//! - a snapshot taken from the schema page draws the foreign-key diagram with the test
//!   schema's tables and keys, and a table's rows come in keyset pages;
//! - runs, a dry-run fleet migration with its per-instance report, agents, an enrollment token
//!   created, a user created, an API token created, and the audit log naming the user's and
//!   the token's creation;
//! - a viewer sees no run button, no admin page in the menu, and the API's refusal (403) when it
//!   opens the audit log anyway.
//!
//! Screenshots of each page: `target/console-shots/`.

use std::path::Path;
use std::time::{Duration, Instant};

use lasect_e2e::Stack;
use lasect_testkit::PgCluster;
use reqwest::Method;
use serde_json::{Value, json};

const BOUND: Duration = Duration::from_secs(60);
/// A word of the statement the statements page must list (in a column alias, so it survives
/// pg_stat_statements' normalization).
pub const MARKER: &str = "console_pages_marker";
/// The test schema: customers ← orders ← order_lines → products, and a table with no key.
const SHOP: &str = "CREATE SCHEMA shop;
     CREATE TABLE shop.customers (id int PRIMARY KEY, name text NOT NULL);
     CREATE TABLE shop.products (id int PRIMARY KEY, title text NOT NULL, price numeric(10,2));
     CREATE TABLE shop.orders (id int PRIMARY KEY,
         customer_id int NOT NULL REFERENCES shop.customers, placed_at date NOT NULL);
     CREATE TABLE shop.order_lines (order_id int REFERENCES shop.orders,
         product_id int REFERENCES shop.products, quantity int NOT NULL,
         PRIMARY KEY (order_id, product_id));
     CREATE TABLE shop.notes (body text);
     INSERT INTO shop.customers SELECT i, 'customer ' || i FROM generate_series(1, 120) i;
     INSERT INTO shop.products VALUES (1, 'kettle', 24.50), (2, 'teapot', 31.00);
     INSERT INTO shop.orders SELECT i, 1 + i % 120, date '2026-01-01' + i FROM generate_series(1, 2000) i;
     INSERT INTO shop.order_lines SELECT i, 1 + i % 2, 1 + i % 5 FROM generate_series(1, 2000) i;
     ANALYZE;";

/// The monitored cluster's side: pg_stat_statements and the test schema (run before the agent
/// starts, so its first statement round is the baseline the marker is counted from).
pub async fn prepare(monitored: &PgCluster) {
    let client = monitored.connect("postgres").await.expect("connect");
    client
        .batch_execute(&format!("CREATE EXTENSION pg_stat_statements; {SHOP}"))
        .await
        .expect("test schema");
}

/// Runs the marker statement, auto_explained in JSON, until the API lists it with its text
/// among the instance's top statements and has a plan of it.
async fn marker_listed(stack: &Stack, monitored: &PgCluster, id: i64) {
    let client = monitored.connect("postgres").await.expect("connect");
    // This session only: every statement's plan, in JSON (log_verbose: with its own query id
    // from PostgreSQL 16 on).
    client
        .batch_execute(
            "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; \
             SET auto_explain.log_format = json; SET auto_explain.log_verbose = on;",
        )
        .await
        .expect("auto_explain for the marker's session");
    let start = Instant::now();
    loop {
        // The simple protocol: before PostgreSQL 16 only the log line's query id links a plan
        // to its statement (auto_explain prints none), and the simple protocol's is the one
        // the server reports reliably. pg_stat_statements normalizes the constant to `$1`.
        for i in 1..=5 {
            client
                .batch_execute(&format!(
                    "SELECT count(*) AS {MARKER} FROM shop.orders WHERE customer_id = {i}"
                ))
                .await
                .expect("marker query");
        }
        let (status, top) = stack
            .api(
                Method::GET,
                &format!("/api/v1/instances/{id}/statements/top?limit=1000"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{top}");
        let listed = top["statements"].as_array().and_then(|l| {
            l.iter()
                .find(|s| s["query"].as_str().is_some_and(|q| q.contains(MARKER)))
        });
        if let Some(queryid) = listed.and_then(|s| s["queryid"].as_i64()) {
            let (status, plans) = stack
                .api(
                    Method::GET,
                    &format!("/api/v1/instances/{id}/statements/{queryid}/plans"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{plans}");
            if plans["plans"].as_array().is_some_and(|p| !p.is_empty()) {
                return;
            }
        }
        assert!(
            start.elapsed() < BOUND,
            "the marker statement is not listed after {BOUND:?}: {top}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Drives `console/tests/pages.mjs` and checks what it saw against the store's truth.
pub async fn scenario(
    stack: &Stack,
    monitored: &PgCluster,
    id: i64,
    console_dir: &Path,
    chromium: &Path,
    viewer: (&str, &str),
) {
    marker_listed(stack, monitored, id).await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-shots");
    let mut script = crate::support::browser::console_script(
        stack,
        console_dir,
        "tests/pages.mjs",
        chromium,
        &shots,
    );
    script
        .env("VIEWER_USER", viewer.0)
        .env("VIEWER_PASSWORD", viewer.1)
        .env("INSTANCE_ID", id.to_string())
        .env("MARKER", MARKER);
    let output = script.output().expect("run node");
    let facts = crate::support::browser::facts(&output, "the pages script");

    // Statements: the marker's row, and its page with the same text.
    let row = facts["statementRow"].as_str().expect("statement row");
    assert!(row.contains(MARKER), "{row}");
    assert!(
        facts["statementText"]
            .as_str()
            .is_some_and(|t| t.contains(MARKER) && t.contains("$1")),
        "{facts}"
    );

    // Its auto_explain plan: a tree of the count over orders.
    assert!(
        facts["statementPlans"].as_u64().is_some_and(|n| n >= 1),
        "{facts}"
    );
    let plan_nodes: Vec<&str> = facts["statementPlanNodes"]
        .as_array()
        .expect("statement plan nodes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(plan_nodes.first(), Some(&"Aggregate"), "{facts}");
    assert!(plan_nodes.len() >= 2, "{facts}");

    assert_eq!(facts["handedOver"], facts["statementText"], "{facts}");

    // SQL: `id <= $1` with $1 = 3 over customers: exactly three rows, in order, typed.
    assert_eq!(
        facts["sqlColumns"],
        json!([["id", "int4"], ["name", "text"]]),
        "{facts}"
    );
    assert_eq!(
        facts["sqlRows"],
        json!([
            ["1", "customer 1"],
            ["2", "customer 2"],
            ["3", "customer 3"]
        ]),
        "{facts}"
    );
    assert_eq!(
        facts["csv"],
        "id,name\r\n1,customer 1\r\n2,customer 2\r\n3,customer 3\r\n"
    );
    // EXPLAIN ANALYZE of a join: a tree with the scans of both tables, one node marked.
    let nodes: Vec<&str> = facts["planNodes"]
        .as_array()
        .expect("plan nodes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(nodes.len() >= 3, "a tree, not one node: {nodes:?}");
    assert!(
        nodes.iter().any(|n| n.contains("Join")),
        "a join node: {nodes:?}"
    );
    assert!(
        facts["hotNodes"].as_u64().is_some_and(|n| n >= 1),
        "{facts}"
    );

    // A long statement cancelled from the editor ends cancelled.
    assert!(
        facts["cancelledRun"]
            .as_str()
            .is_some_and(|t| t.contains("cancelled")),
        "{facts}"
    );

    // Writes: refused without "Allow writes", applied with it, and the second snapshot's
    // changes marked as the store classified them.
    assert!(
        facts["readOnlyError"]
            .as_str()
            .is_some_and(|t| t.contains("read-only transaction")),
        "{facts}"
    );
    let changes = facts["schemaChanges"].as_array().expect("changes");
    for (object, change, impact) in [
        ("column shop.products.price", "dropped", "breaking"),
        ("column shop.notes.author", "added", "non-breaking"),
    ] {
        assert!(
            changes.contains(&json!([object, change, impact])),
            "{object} {change} {impact} in {changes:?}"
        );
    }

    // Schema: the diagram holds the tables and keys of the snapshot the page asked for.
    let tables: Vec<&str> = facts["diagramTables"]
        .as_array()
        .expect("tables")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in [
        "shop.customers",
        "shop.orders",
        "shop.order_lines",
        "shop.products",
        "shop.notes",
    ] {
        assert!(tables.contains(&t), "{t} drawn: {tables:?}");
    }
    let mut edges: Vec<String> = facts["diagramEdges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect();
    edges.sort();
    assert_eq!(
        edges,
        [
            "shop.order_lines->shop.orders",
            "shop.order_lines->shop.products",
            "shop.orders->shop.customers",
        ],
        "{facts}"
    );
    // Keyset pages of customers: 50, then the next 50 starting after the first page's last.
    assert_eq!(facts["rowsPage1"], json!(["1", "50"]), "{facts}");
    assert_eq!(facts["rowsPage2"], json!(["51", "100"]), "{facts}");

    // Runs, migration, agents, users, tokens, audit.
    for kind in ["sql", "explain", "schema_snapshot", "table_data"] {
        assert!(
            facts["runKinds"]
                .as_array()
                .is_some_and(|k| k.iter().any(|x| x == kind)),
            "{kind} in the runs list: {facts}"
        );
    }
    assert_eq!(facts["migrationStatus"], "succeeded", "{facts}");
    assert!(
        facts["migrationTitle"]
            .as_str()
            .is_some_and(|t| t.starts_with("add-probe-table") && t.contains("dry run")),
        "{facts}"
    );
    assert_eq!(facts["migrationTarget"], "succeeded", "{facts}");
    assert!(
        facts["enrollmentToken"]
            .as_str()
            .is_some_and(|t| t.starts_with("lset_")),
        "{facts}"
    );
    assert!(
        facts["apiToken"].as_str().is_some_and(|t| t.len() > 20),
        "{facts}"
    );
    let (_, users) = stack.api(Method::GET, "/api/v1/users", None).await;
    assert!(
        users["users"].as_array().is_some_and(|u| u.iter().any(|u| {
            u["username"] == "pages-operator"
                && u["role"] == "user"
                && u["grants"] == json!([{"key": "team", "value": "dba", "role": "admin"}])
        })),
        "the user the page created, with the role by label it added: {users}"
    );
    let (_, tokens) = stack
        .api(Method::GET, "/api/v1/agents/enrollment-tokens", None)
        .await;
    assert!(
        tokens["tokens"]
            .as_array()
            .and_then(|t| t.first())
            .is_some_and(|t| t["state"] == "revoked"),
        "the enrollment token the page revoked: {tokens}"
    );
    let (_, api_tokens) = stack.api(Method::GET, "/api/v1/tokens", None).await;
    assert!(
        api_tokens["tokens"].as_array().is_some_and(|t| t
            .iter()
            .any(|t| t["name"] == "deploy pipeline" && t["revoked_at"].is_string())),
        "the API token the page revoked: {api_tokens}"
    );
    // The audit log names the route (the gate records method and route, not the body).
    let audit = facts["auditRows"].as_array().expect("audit rows");
    for action in [
        "POST /api/v1/users",
        "POST /api/v1/agents/enrollment-tokens",
        "POST /api/v1/tokens",
    ] {
        assert!(
            audit
                .iter()
                .any(|r| r.as_str().is_some_and(|r| r.contains(action)
                    && r.contains("admin")
                    && r.contains("success"))),
            "the audit page shows {action} by admin: {audit:?}"
        );
    }

    // A user runs SQL but is offered no write.
    assert_eq!(
        facts["operatorButtons"],
        json!(["Run", "Explain", "Explain analyze"]),
        "{facts}"
    );
    assert_eq!(facts["operatorWriteBoxes"], 0, "{facts}");

    // The viewer.
    assert_eq!(facts["viewerRunButtons"], json!([]), "{facts}");
    assert!(
        facts["viewerNotice"]
            .as_str()
            .is_some_and(|t| t.contains("needs the user role")),
        "{facts}"
    );
    let nav: Vec<&str> = facts["viewerNav"]
        .as_array()
        .expect("viewer nav")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for admin_only in ["Migrations", "Agents", "Users", "Audit"] {
        assert!(!nav.contains(&admin_only), "{admin_only} in {nav:?}");
    }
    assert!(
        facts["viewerAuditError"]
            .as_str()
            .is_some_and(|t| t.starts_with("Not allowed for your role:")),
        "{facts}"
    );
    for page in [
        "statements",
        "statement",
        "sql",
        "sql-explain",
        "sql-narrow",
        "sql-cancelled",
        "sql-write",
        "sql-operator",
        "schema",
        "schema-fk",
        "schema-changes",
        "runs",
        "run",
        "migrations",
        "migration",
        "agents",
        "users",
        "tokens",
        "audit",
        "sql-viewer",
        "audit-viewer",
    ] {
        assert!(
            shots.join(format!("{page}.png")).is_file(),
            "screenshot of {page}"
        );
    }
}
