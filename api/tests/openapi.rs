//! The OpenAPI document: valid OpenAPI 3.1 (checked with the `jsonschema` crate against the
//! official OAS 3.1 document schema in `fixtures/`, and every Schema Object against the JSON
//! Schema 2020-12 meta-schema), complete (every path of the router is documented), and true
//! (every documented route, called with good and bad parameters against a real store and
//! against a dead one, answers a documented status with a body of the documented shape).

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use lasect_api::server::store_pool;
use lasect_api::store_dsn::StoreDsn;
use lasect_api::{AppState, router};
use lasect_testkit::{PgCluster, PgOptions, free_port};
use serde_json::{Value, json};
use tower::ServiceExt;

/// A pool to a port nobody listens on: every store call fails as "unavailable".
fn dead_store_app() -> Router {
    let dsn = format!(
        "postgres://lasect@127.0.0.1:{}/lasect?connect_timeout=1",
        free_port()
    );
    let pool = store_pool(&StoreDsn::new(dsn), Duration::from_millis(300)).expect("lazy pool");
    // A well-formed token: checking it needs the store, which is gone.
    common::with_bearer(
        router(AppState::new(pool)),
        &lasect_pki::new_token(lasect_pki::API_TOKEN_PREFIX),
    )
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

async fn call(app: &Router, uri: &str) -> Answer {
    call_method(app, "GET", uri).await
}

/// Calls `uri`; methods other than GET send an empty JSON object as the body.
async fn call_method(app: &Router, method: &str, uri: &str) -> Answer {
    let builder = Request::builder().method(method).uri(uri);
    let request = if method == "GET" {
        builder.body(Body::empty())
    } else {
        builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
    }
    .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .expect("body")
        .to_vec();
    Answer {
        status,
        content_type,
        body,
    }
}

async fn document(app: &Router) -> Value {
    let answer = call(app, "/api/v1/openapi.json").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type, "application/json");
    serde_json::from_slice(&answer.body).expect("document is JSON")
}

/// Every Schema Object of the document (components and inline), by where it is.
fn schemas(doc: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    if let Some(components) = doc["components"]["schemas"].as_object() {
        for (name, schema) in components {
            out.push((format!("components/{name}"), schema.clone()));
        }
    }
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            for p in op["parameters"].as_array().into_iter().flatten() {
                out.push((
                    format!("{method} {path} param {}", p["name"]),
                    p["schema"].clone(),
                ));
            }
            for (status, response) in op["responses"].as_object().expect("responses") {
                for (ct, media) in response["content"].as_object().into_iter().flatten() {
                    out.push((
                        format!("{method} {path} {status} {ct}"),
                        media["schema"].clone(),
                    ));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn document_is_valid_openapi_3_1_and_covers_every_route() {
    let app = dead_store_app();
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");

    let oas: Value =
        serde_json::from_str(include_str!("fixtures/oas-3.1-schema.json")).expect("OAS schema");
    let validator = jsonschema::validator_for(&oas).expect("OAS 3.1 schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "not OpenAPI 3.1: {errors:#?}");
    // The document schema leaves Schema Objects open; check them as JSON Schema 2020-12.
    for (at, schema) in schemas(&doc) {
        if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
            panic!("{at}: not a JSON Schema 2020-12: {e}");
        }
    }
    // A broken document is caught (the check is not vacuous).
    let mut broken = doc.clone();
    broken["openapi"] = json!("3.0.3");
    assert!(!validator.is_valid(&broken));
    let mut broken = doc.clone();
    broken["paths"]["/api/v1/health"]["get"]["responses"] = json!("none");
    assert!(!validator.is_valid(&broken));

    // Every error answer refers to the one error shape.
    let error_schema = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error_schema["required"], json!(["error"]));
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            for (status, response) in op["responses"].as_object().expect("responses") {
                if status.starts_with('4') || (status.starts_with('5') && path != "/api/v1/health")
                {
                    // CheckFailed is ErrorBody plus the agent's check report, StreamFailed
                    // ErrorBody plus the replication stream that failed.
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert!(
                        schema == "#/components/schemas/ErrorBody"
                            || schema == "#/components/schemas/CheckFailed"
                            || schema == "#/components/schemas/StreamFailed",
                        "{method} {path} {status}: {schema}"
                    );
                }
            }
        }
    }

    // Two answer types of one schema name would leave one of them in the document for both
    // routes (the rule test once documented the channel test's answer): each names its own.
    for (path, has) in [
        ("/api/v1/alerts/rules/test", "values"),
        ("/api/v1/alerts/channels/{id}/test", "ok"),
    ] {
        let answer = &doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"];
        let name = answer
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .unwrap_or_else(|| panic!("{path}: 200 answer {answer}"));
        assert!(
            doc["components"]["schemas"][name]["properties"][has].is_object(),
            "{path}: its answer {name} has no {has}"
        );
    }

    // Every path the router serves is documented. The router's Debug output lists its paths.
    let listing = format!("{app:?}");
    let served: BTreeSet<String> = listing
        .split('"')
        .filter(|s| s.starts_with('/'))
        // The fallback router's own two entries (axum adds them for `.fallback`).
        .filter(|s| *s != "/" && !s.contains("__private__axum_fallback"))
        .map(str::to_owned)
        .collect();
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    assert!(served.len() >= 8, "router paths not found in {listing}");
    assert_eq!(served, documented, "router paths vs documented paths");
}

/// Validates `body` against the schema documented for `status` of `op`; returns false when
/// the status is not documented.
fn check_answer(doc: &Value, what: &str, op: &Value, answer: &Answer) {
    let status = answer.status.as_u16().to_string();
    let Some(response) = op["responses"].get(&status) else {
        panic!(
            "{what}: status {status} is not documented; body {}",
            String::from_utf8_lossy(&answer.body)
        );
    };
    let Some(content) = response["content"].as_object() else {
        assert!(
            answer.body.is_empty(),
            "{what}: body where none is documented"
        );
        return;
    };
    let (documented_type, media) = content.iter().next().expect("one content type");
    assert!(
        answer.content_type.starts_with(documented_type.as_str()),
        "{what}: content type {} is not {documented_type}",
        answer.content_type
    );
    if documented_type != "application/json" {
        return;
    }
    let body: Value =
        serde_json::from_slice(&answer.body).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
    let mut schema = media["schema"].clone();
    schema["components"] = doc["components"].clone();
    schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    let validator = jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("{what}: schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}\nbody: {body}");
}

/// Good and bad URIs for a documented path.
fn uris(path: &str) -> Vec<String> {
    let fill = |id: &str, family: &str| path.replace("{id}", id).replace("{family}", family);
    // Checks wait for an agent (none here): ask for no wait, which answers the documented 202.
    if path.ends_with("/test")
        || path.ends_with("/refresh")
        || path.ends_with("/rows")
        || path.ends_with("/extensions")
    {
        let path = path.replace("{schema}", "public").replace("{table}", "t");
        let fill = |id: &str, family: &str| path.replace("{id}", id).replace("{family}", family);
        return vec![format!("{}?wait=0", fill("1", "")), fill("abc", "")];
    }
    let mut out = vec![fill("1", "database")];
    if path.contains("{id}") {
        out.push(fill("abc", "database"));
        out.push(fill("999", "database"));
    }
    if path.contains("{family}") {
        out.push(fill("1", "host_cpu"));
        out.push(fill("1", "nope"));
        out.push(format!("{}?step=0s", fill("1", "database")));
        out.push(format!("{}?from=soon", fill("1", "wal")));
    }
    if path.ends_with("/top") {
        out.push(format!("{}?by=calls&limit=5", fill("1", "")));
        out.push(format!("{}?by=fastest", fill("1", "")));
    }
    out
}

async fn walk(doc: &Value, app: &Router, every_uri: bool) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    // DELETEs last: removing instance 1 first would turn the other calls into 404s.
    let mut ops: Vec<(&String, String, &Value)> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            ops.push((path, method.to_uppercase(), op));
        }
    }
    ops.sort_by_key(|(_, method, _)| method == "DELETE");
    for (path, method, op) in ops {
        {
            // Against a dead store every call waits for the pool: one URI per route is enough.
            let uris = uris(path);
            let take = if every_uri { uris.len() } else { 1 };
            for uri in uris.into_iter().take(take) {
                let answer = call_method(app, &method, &uri).await;
                check_answer(doc, &format!("{method} {uri}"), op, &answer);
                seen.insert(format!("{path} {}", answer.status.as_u16()));
            }
        }
    }
    seen
}

#[tokio::test]
async fn every_documented_route_answers_in_the_documented_shapes() {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let dsn = pg.store_dsn().await.expect("migrated store");
    let pool = store_pool(&StoreDsn::new(dsn), Duration::from_secs(10)).expect("pool");
    sqlx::raw_sql(
        "INSERT INTO agents (id) VALUES ('db-01');
         INSERT INTO instances (name, agent_id, labels) VALUES ('main', 'db-01', '{\"env\":\"prod\"}');
         INSERT INTO metric_database (time, instance_id, datid, datname, numbackends, xact_commit)
         VALUES (now() - interval '2 minutes', 1, 5, 'app', 3, 10),
                (now() - interval '1 minute', 1, 5, 'app', 4, 70);
         INSERT INTO metric_host_cpu (time, agent_id, cpu_count, usage_percent, load1, load5, load15)
         VALUES (now() - interval '1 minute', 'db-01', 4, 12.5, 1, 1, 1);
         INSERT INTO metric_statement (time, instance_id, queryid, dbid, userid, toplevel,
             since_reset, calls, rows, total_exec_time_ms)
         VALUES (now() - interval '1 minute', 1, 42, 5, 10, true, false, 3, 3, 1.5);
         INSERT INTO statement_texts VALUES (1, 42, 'SELECT 1', now());",
    )
    .execute(&pool)
    .await
    .expect("seed");
    // Token 1 belongs to someone else: the walk calls `DELETE /api/v1/tokens/1`, which must not
    // revoke the walker's own token.
    common::user(&pool, "other", Some(lasect_api::auth::Role::Viewer), &[]).await;
    let app = common::admin_app(&pool).await;
    let doc = document(&app).await;
    let seen = walk(&doc, &app, true).await;
    for must in [
        "/api/v1/health 200",
        "/api/v1/instances 200",
        "/api/v1/instances/{id}/samples/{family} 200",
        "/api/v1/instances/{id}/samples/{family} 400",
        "/api/v1/instances/{id}/samples/{family} 404",
        "/api/v1/instances/{id}/metrics/{family} 200",
        "/api/v1/instances/{id}/metrics/{family} 400",
        "/api/v1/instances/{id}/metrics/{family} 404",
        "/api/v1/instances/{id}/statements/top 200",
        "/api/v1/instances/{id}/statements/top 400",
        "/api/v1/live 400",
        "/api/v1/openapi.json 200",
        "/metrics 200",
    ] {
        assert!(seen.contains(must), "{must} not exercised: {seen:?}");
    }

    // The same walk with the store gone: 503s, in the documented shapes, no internals.
    let dead = dead_store_app();
    let seen = walk(&doc, &dead, false).await;
    for must in [
        "/api/v1/health 503",
        "/api/v1/instances 503",
        "/api/v1/instances/{id}/metrics/{family} 503",
        "/api/v1/instances/{id}/statements/top 503",
    ] {
        assert!(seen.contains(must), "{must} not exercised: {seen:?}");
    }
    let answer = call(&dead, "/api/v1/instances/1/statements/top").await;
    let text = String::from_utf8_lossy(&answer.body);
    assert!(
        !text.contains("127.0.0.1") && !text.to_lowercase().contains("connect"),
        "{text}"
    );

    // /metrics counted the walk by route template and status, and unknown paths as such.
    assert_eq!(
        call(&app, "/api/v1/nope").await.status,
        StatusCode::NOT_FOUND
    );
    let metrics = call(&app, "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(
            "lasect_api_requests_total{route=\"/api/v1/instances/{id}/metrics/{family}\",method=\"GET\",status=\"400\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "lasect_api_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("lasect_api_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("lasect_api_live_clients 0"), "{text}");
}
