//! Two reads the console makes: the series of one key (`…/metrics/{family}?key=`, the
//! statement page and the waits chart) and a run's file as a browser download
//! (`/runs/{id}/download` with its `Content-Disposition`), against a real migrated store.

use crate::common;

use axum::Router;
use axum::http::StatusCode;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

/// A query id past JavaScript's safe integers (2^53): the console sends it as a string.
const BIG_QUERYID: i64 = -4_017_525_958_712_309_384;

async fn get(app: &Router, uri: &str) -> common::http::Answer {
    common::http::call(app, "GET", uri, None, None, common::http::LOCAL).await
}

fn url_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        .replace('+', "%2B")
}

/// Percent-encodes every byte but letters and digits.
fn url(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn insert_statement(pool: &PgPool, time: DateTime<Utc>, queryid: i64, dbid: i64, calls: i64) {
    sqlx::query(
        "INSERT INTO metric_statement (time, instance_id, queryid, dbid, userid, toplevel,
             since_reset, calls)
         VALUES ($1, 1, $2, $3, 10, true, false, $4)",
    )
    .bind(time)
    .bind(queryid)
    .bind(dbid)
    .bind(calls)
    .execute(pool)
    .await
    .expect("insert metric_statement");
}

/// (key, calls summed over the points) of every series of an answer, sorted.
fn calls_by_series(body: &Value) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = body["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|s| {
            let calls = s["points"]
                .as_array()
                .expect("points")
                .iter()
                .filter_map(|p| p["calls"].as_f64())
                .sum();
            (s["key"].to_string(), calls)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test]
async fn a_key_filter_keeps_the_series_of_that_key() {
    let (_pg, pool) = common::migrated_store().await;
    let base = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("trunc")
        - TimeDelta::minutes(10);
    sqlx::query("SELECT lasect_ensure_partitions(($1::timestamptz AT TIME ZONE 'UTC')::date - 1, ($1::timestamptz AT TIME ZONE 'UTC')::date + 1)")
        .bind(base)
        .execute(&pool)
        .await
        .expect("partitions");
    sqlx::raw_sql(
        "INSERT INTO agents (id) VALUES ('db-01');
         INSERT INTO instances (name, agent_id) VALUES ('main', 'db-01');",
    )
    .execute(&pool)
    .await
    .expect("seed");
    let at = |secs: i64| base + TimeDelta::seconds(secs);
    insert_statement(&pool, at(30), BIG_QUERYID, 5, 3).await;
    insert_statement(&pool, at(90), BIG_QUERYID, 5, 4).await;
    insert_statement(&pool, at(30), BIG_QUERYID, 6, 100).await;
    // Differs from the big id only past 2^53: a filter through a float would take it too.
    insert_statement(&pool, at(30), BIG_QUERYID + 1, 5, 1000).await;
    insert_statement(&pool, at(30), 7, 5, 20).await;
    sqlx::query(
        "INSERT INTO metric_wait (time, instance_id, wait_event_type, wait_event, queryid, count,
             samples, avg_sessions)
         VALUES ($1, 1, 'Lock', 'relation', NULL, 10, 10, 1), ($1, 1, 'Lock', 'relation', 7, 20, 10, 2),
                ($1, 1, 'CPU', 'CPU', NULL, 5, 10, 0.5)",
    )
    .bind(at(30))
    .execute(&pool)
    .await
    .expect("insert metric_wait");
    let app = common::admin_app(&pool).await;
    let range = format!(
        "from={}&to={}&step=1h",
        url_ts(base - TimeDelta::minutes(5)),
        url_ts(base + TimeDelta::minutes(5))
    );
    let series = |family: &str, key: Option<&str>| {
        let mut uri = format!("/api/v1/instances/1/metrics/{family}?{range}");
        if let Some(key) = key {
            uri.push_str(&format!("&key={}", url(key)));
        }
        uri
    };

    let all = get(&app, &series("statement", None)).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(calls_by_series(&all.body).len(), 4, "{}", all.text);

    // The query id as a string (as the console sends it) and as a JSON number: the same two
    // series (one per database), nothing of the neighbouring id.
    let want = vec![
        (
            json!({"dbid": 5, "queryid": BIG_QUERYID, "toplevel": true, "userid": 10}),
            7.0,
        ),
        (
            json!({"dbid": 6, "queryid": BIG_QUERYID, "toplevel": true, "userid": 10}),
            100.0,
        ),
    ];
    for key in [
        format!(r#"{{"queryid":"{BIG_QUERYID}"}}"#),
        format!(r#"{{"queryid":{BIG_QUERYID}}}"#),
    ] {
        let one = get(&app, &series("statement", Some(&key))).await;
        assert_eq!(one.status, StatusCode::OK, "{key}: {}", one.text);
        let got: Vec<(Value, f64)> = calls_by_series(&one.body)
            .into_iter()
            .map(|(k, c)| (serde_json::from_str(&k).expect("key"), c))
            .collect();
        assert_eq!(got, want, "{key}: {}", one.text);
    }
    // Two key columns at once.
    let one = get(
        &app,
        &series(
            "statement",
            Some(&format!(r#"{{"queryid":"{BIG_QUERYID}","dbid":6}}"#)),
        ),
    )
    .await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text);
    assert_eq!(calls_by_series(&one.body).len(), 1, "{}", one.text);
    assert_eq!(calls_by_series(&one.body)[0].1, 100.0, "{}", one.text);
    // A key nobody has: no series, not an error.
    let none = get(&app, &series("statement", Some(r#"{"queryid":"1"}"#))).await;
    assert_eq!(none.status, StatusCode::OK, "{}", none.text);
    assert_eq!(none.body["series"], Value::Array(vec![]), "{}", none.text);

    // `null` is a missing value: the lock waits without a query id only.
    let waits = get(
        &app,
        &series("wait", Some(r#"{"wait_event_type":"Lock","queryid":null}"#)),
    )
    .await;
    assert_eq!(waits.status, StatusCode::OK, "{}", waits.text);
    let list = waits.body["series"].as_array().expect("series");
    assert_eq!(list.len(), 1, "{}", waits.text);
    assert_eq!(list[0]["key"]["wait_event"], "relation", "{}", waits.text);
    assert_eq!(list[0]["key"]["queryid"], Value::Null, "{}", waits.text);
    assert_eq!(list[0]["points"][0]["avg_sessions"], 1.0, "{}", waits.text);

    // Well-formed requests the family cannot serve: 422 naming the key columns.
    for (family, key, says) in [
        ("statement", r#"{"calls":"1"}"#, "queryid"),
        ("statement", r#"{"queryid":"seven"}"#, "64-bit integer"),
        ("database", r#"{"datname":7}"#, "a string"),
        ("database", "datname=postgres", "JSON object"),
        ("host_cpu", r#"{"cpu":"0"}"#, "no key columns"),
    ] {
        let refused = get(&app, &series(family, Some(key))).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{family} {key}: {}",
            refused.text
        );
        assert_eq!(
            refused.body["error"]["code"], "invalid_key",
            "{}",
            refused.text
        );
        assert!(
            refused.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{family} {key}: {}",
            refused.text
        );
    }
}

#[tokio::test]
async fn a_run_file_comes_as_an_attachment_with_its_name() {
    let (_pg, pool) = common::migrated_store().await;
    sqlx::raw_sql(
        "INSERT INTO agents (id) VALUES ('db-01');
         INSERT INTO instances (name, agent_id) VALUES ('main', 'db-01');",
    )
    .execute(&pool)
    .await
    .expect("seed");
    let app = common::admin_app(&pool).await;
    for (kind, params, content_type, extension) in [
        (
            "export_csv",
            r#"{"sql": "SELECT 1"}"#,
            "text/csv; charset=utf-8",
            "csv",
        ),
        (
            "dump_sql",
            r#"{"schema_only": true}"#,
            "application/sql",
            "sql",
        ),
        ("schema_snapshot", "{}", "application/json", "json"),
    ] {
        let bytes = format!("id,name\r\n1,<b>{kind}</b>\r\n").into_bytes();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO runs (kind, instance_id, agent_id, params, requested_by, timeout_ms, \
             max_rows, max_bytes, expires_at, status, finished_at, pages) \
             VALUES ($1, 1, 'db-01', $2::jsonb, 'user:admin', 1000, 10, 1000, now(), 'succeeded', now(), 1) \
             RETURNING id",
        )
        .bind(kind)
        .bind(params)
        .fetch_one(&pool)
        .await
        .expect("insert run");
        sqlx::query(
            "INSERT INTO run_results (run_id, page, rows, bytes, data) VALUES ($1, 0, 1, $2, $3)",
        )
        .bind(id)
        .bind(bytes.len() as i64)
        .bind(zstd::bulk::compress(&bytes, 3).expect("compress"))
        .execute(&pool)
        .await
        .expect("page");
        let answer = get(&app, &format!("/api/v1/runs/{id}/download")).await;
        assert_eq!(answer.status, StatusCode::OK, "{kind}: {}", answer.text);
        assert_eq!(answer.bytes, bytes, "{kind}");
        let header = |name: &str| {
            answer
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("content-type"), content_type, "{kind}");
        assert_eq!(
            header("content-disposition"),
            format!("attachment; filename=\"run-{id}.{extension}\""),
            "{kind}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{kind}");
        assert_eq!(header("cache-control"), "no-store", "{kind}");
    }
}
