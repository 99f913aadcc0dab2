//! The schema explorer, data transfer and extensions through the real binaries: snapshots
//! with classified changes, the foreign-key graph, keyset pages, CSV export/import (with the
//! nasty inputs), pg_dump and extensions, each executed by the agent.

use std::time::Duration;

use lasect_e2e::{Stack, wait_listening};
use lasect_testkit::{PgCluster, PgOptions};
use reqwest::Method;
use serde_json::{Value, json};

const AGENT_ID: &str = "explorer-agent";

async fn snapshot(stack: &Stack, id: i64) -> Value {
    let (status, run) = stack
        .api(
            Method::POST,
            &format!("api/v1/instances/{id}/schema/snapshots"),
            Some(json!({})),
        )
        .await;
    let run = stack
        .wait_run(crate::support::created_run(status, &run))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    run
}

async fn import(stack: &Stack, id: i64, table: &str, csv: &[u8]) -> Value {
    let ca = std::fs::read(stack.tls().join("ca.pem")).expect("ca");
    let client = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).expect("pem"))
        .build()
        .expect("client");
    let answer = client
        .post(format!(
            "https://127.0.0.1:{}/api/v1/instances/{id}/import?table={table}",
            stack.api_port
        ))
        .bearer_auth(&stack.admin_token)
        .header("content-type", "text/csv")
        .body(csv.to_vec())
        .send()
        .await
        .expect("import");
    assert_eq!(answer.status().as_u16(), 202);
    let run: Value = answer.json().await.expect("json");
    stack.wait_run(run["id"].as_i64().expect("id")).await
}

async fn count(db: &tokio_postgres::Client, table: &str) -> i64 {
    db.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_explorer_data_transfer_and_extensions() {
    let stack = Stack::new(AGENT_ID).await;
    let monitored = PgCluster::start(PgOptions::default()).expect("monitored cluster");
    let db = monitored.connect("postgres").await.expect("connect");
    db.batch_execute(
        "CREATE TABLE customers (id int PRIMARY KEY, name text);
         CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers (id), note text);
         INSERT INTO customers VALUES (1, 'a');
         INSERT INTO orders VALUES (1, 1, 'x'), (2, 1, 'y'), (3, 1, 'z');
         CREATE TABLE csv_src (id int NOT NULL, v text);
         INSERT INTO csv_src VALUES (1, E'multi\\nline'), (2, 'q\"uote, comma'), (3, NULL);
         CREATE TABLE csv_dst (id int NOT NULL, v text);",
    )
    .await
    .expect("seed");
    let mut api = stack.spawn_api();
    wait_listening(&mut api);
    let mut ingest = stack.spawn_ingest(&stack.secrets_toml());
    wait_listening(&mut ingest);
    let instance = lasect_e2e::instance_toml("monitored", &monitored, "postgres").await;
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 2\n[control]\n{}\n{instance}",
            lasect_e2e::ALLOW_ALL
        ),
    );
    let mut agent = stack.start_agent(&[]);
    agent
        .wait_for_line("Control stream open", Duration::from_secs(60))
        .expect("control stream");
    let store = stack.store().await;
    let id: i64 = loop {
        if let Some(r) = store
            .query_opt("SELECT id FROM instances WHERE name = 'monitored'", &[])
            .await
            .expect("instances")
        {
            break r.get(0);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Snapshots: add a column, drop a column → two changes, classified.
    let out = stack.cli(&["schema", "show", "--instance", "monitored", "--refresh"]);
    assert!(out.contains("table public.orders"), "{out}");
    let out = stack.cli(&[
        "schema",
        "show",
        "--instance",
        "monitored",
        "--table",
        "public.orders",
    ]);
    assert!(
        out.contains("customer_id integer") && out.contains("FOREIGN KEY"),
        "{out}"
    );
    db.batch_execute("ALTER TABLE orders ADD COLUMN extra int")
        .await
        .expect("add");
    snapshot(&stack, id).await;
    db.batch_execute("ALTER TABLE orders DROP COLUMN note")
        .await
        .expect("drop");
    snapshot(&stack, id).await;
    snapshot(&stack, id).await; // unchanged: no new change
    let (_, changes) = stack
        .api(
            Method::GET,
            &format!("api/v1/instances/{id}/schema/changes"),
            None,
        )
        .await;
    let changes = changes["changes"].as_array().expect("changes").clone();
    assert_eq!(changes.len(), 2, "{changes:?}");
    let dropped = &changes[0];
    assert_eq!(
        (
            dropped["object_name"].as_str(),
            dropped["change"].as_str(),
            dropped["classification"].as_str()
        ),
        (
            Some("public.orders.note"),
            Some("dropped"),
            Some("breaking")
        )
    );
    let added = &changes[1];
    assert_eq!(
        (
            added["object_name"].as_str(),
            added["change"].as_str(),
            added["classification"].as_str()
        ),
        (
            Some("public.orders.extra"),
            Some("added"),
            Some("non_breaking")
        )
    );
    let out = stack.cli(&["schema", "changes", "--instance", "monitored"]);
    assert!(
        out.contains("BREAKING") && out.contains("public.orders.note"),
        "{out}"
    );
    let (_, graph) = stack
        .api(
            Method::GET,
            &format!("api/v1/instances/{id}/schema/graph"),
            None,
        )
        .await;
    assert!(
        graph["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .any(|e| e["from"] == "public.orders" && e["to"] == "public.customers"),
        "{graph}"
    );

    // Keyset pages walk every row once.
    let (status, page) = stack
        .api(
            Method::GET,
            &format!("api/v1/instances/{id}/tables/public/orders/rows?limit=2"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["rows"].as_array().map(Vec::len), Some(2), "{page}");
    assert_eq!(page["key"], json!(["id"]));
    let after = page["next_after"].to_string();
    let (_, page) = stack
        .api(
            Method::GET,
            &format!(
                "api/v1/instances/{id}/tables/public/orders/rows?limit=2&after={}",
                after
                    .replace('"', "%22")
                    .replace('[', "%5B")
                    .replace(']', "%5D")
            ),
            None,
        )
        .await;
    assert_eq!(page["rows"], json!([["3", "1", null]]), "{page}");
    assert!(page["next_after"].is_null());

    // Hostile identifiers, a composite key, and a table without any key (ctid): every row
    // exactly once, page after page.
    db.batch_execute(
        "CREATE TABLE \"we\"\"ird tbl ü\" (a int, \"b c\" text, v text, PRIMARY KEY (a, \"b c\"));
         INSERT INTO \"we\"\"ird tbl ü\" SELECT g % 3, 'k' || g, 'v' || g FROM generate_series(1, 25) g;
         CREATE TABLE nokey (v text);
         INSERT INTO nokey SELECT 'n' || g FROM generate_series(1, 7) g;",
    )
    .await
    .expect("seed keys");
    for (table, total, key) in [
        ("we\"ird tbl ü", 25, json!(["a", "b c"])),
        ("nokey", 7, json!(["ctid"])),
    ] {
        let encoded: String = table
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let mut seen = Vec::new();
        let mut after = Value::Null;
        loop {
            let mut uri = format!("api/v1/instances/{id}/tables/public/{encoded}/rows?limit=4");
            if !after.is_null() {
                let a: String = after
                    .to_string()
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect();
                uri.push_str(&format!("&after={a}"));
            }
            let (status, page) = stack.api(Method::GET, &uri, None).await;
            assert_eq!(status, 200, "{table}: {page}");
            assert_eq!(page["key"], key, "{page}");
            for row in page["rows"].as_array().expect("rows") {
                seen.push(row.to_string());
            }
            after = page["next_after"].clone();
            if after.is_null() {
                break;
            }
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            (seen.len(), unique.len()),
            (total, total),
            "{table}: {seen:?}"
        );
    }

    // Export then import round-trips multi-line, quoted and NULL values.
    let file = stack.path("export.csv");
    let out = stack.cli(&[
        "data",
        "export",
        "--instance",
        "monitored",
        "--table",
        "public.csv_src",
        "--out",
        file.to_str().expect("path"),
    ]);
    assert!(out.contains("wrote"), "{out}");
    let csv = std::fs::read(&file).expect("csv");
    assert!(
        csv.starts_with(b"id,v\n"),
        "{}",
        String::from_utf8_lossy(&csv)
    );
    let run = import(&stack, id, "csv_dst", &csv).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["summary"]["rows_imported"], 3, "{run}");
    let same: bool = db
        .query_one("SELECT (SELECT array_agg(t ORDER BY id)::text FROM csv_src t) = (SELECT array_agg(t ORDER BY id)::text FROM csv_dst t)", &[])
        .await
        .expect("compare")
        .get(0);
    assert!(same, "the import differs from the export");

    // A query export; an attempt to break out of the COPY fails and runs nothing.
    let out = stack.cli(&[
        "data",
        "export",
        "--instance",
        "monitored",
        "--query",
        "SELECT id FROM orders ORDER BY id",
    ]);
    assert_eq!(out, "id\n1\n2\n3\n");
    // In /tmp: the server's OS user could write there.
    let marker = std::path::PathBuf::from(format!("/tmp/lasect-pwned-{}", std::process::id()));
    let escape = format!("SELECT 1) TO PROGRAM 'touch {}' --", marker.display());
    let (status, run) = stack
        .api(
            Method::POST,
            &format!("api/v1/instances/{id}/export"),
            Some(json!({"sql": escape})),
        )
        .await;
    let run = stack
        .wait_run(crate::support::created_run(status, &run))
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(!marker.exists(), "the export ran a program");

    // Bad CSVs: a clear per-row report and nothing half-applied.
    let before = count(&db, "csv_dst").await;
    let run = import(&stack, id, "csv_dst", b"id,v\n10,a\n11,b,extra\n12\n").await;
    assert_eq!(run["status"], "failed", "{run}");
    let lines: Vec<u64> = run["error_detail"]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["line"].as_u64())
        .collect();
    assert_eq!(lines, [3, 4], "{run}");
    let run = import(&stack, id, "csv_dst", b"id,v\n10,ok\n11,\xff\xfe\n").await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error_detail"]["errors"][0]["line"], 3, "{run}");
    assert!(
        run["error"].as_str().unwrap_or("").contains("UTF-8"),
        "{run}"
    );
    let run = import(&stack, id, "csv_dst", b"id,v\n10,ok\nnot-a-number,x\n").await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error_detail"]["errors"][0]["line"], 3, "{run}");
    let run = import(&stack, id, "csv_dst", b"id,nope\n1,x\n").await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(
        count(&db, "csv_dst").await,
        before,
        "a failed import wrote rows"
    );

    // pg_dump of one table, run by the agent.
    let file = stack.path("dump.sql");
    stack.cli(&[
        "data",
        "dump",
        "--instance",
        "monitored",
        "--table",
        "public.orders",
        "--out",
        file.to_str().expect("path"),
    ]);
    let dump = std::fs::read_to_string(&file).expect("dump");
    assert!(dump.contains("CREATE TABLE public.orders"), "{dump}");
    assert!(
        !dump.contains("CREATE TABLE public.customers"),
        "only the table asked for"
    );

    // Extensions: enable, see it installed, disable.
    let out = stack.cli(&["extension", "enable", "pg_trgm", "--instance", "monitored"]);
    assert!(out.contains("installed version 1."), "{out}");
    let (_, list) = stack
        .api(
            Method::GET,
            &format!("api/v1/instances/{id}/extensions"),
            None,
        )
        .await;
    let trgm = list["extensions"]
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["name"] == "pg_trgm")
        .cloned()
        .expect("pg_trgm");
    assert!(trgm["installed_version"].is_string(), "{trgm}");
    let out = stack.cli(&["extension", "disable", "pg_trgm", "--instance", "monitored"]);
    assert!(out.contains("installed version none"), "{out}");
    let out = stack
        .cli_command(&[
            "extension",
            "enable",
            "no_such_ext",
            "--instance",
            "monitored",
        ])
        .env("LASECT_TOKEN", &stack.admin_token)
        .output()
        .expect("cli");
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not available"));
}
