//! Alerts through the real router on a real store: rule validation, roles, apply and its
//! diff, states driven by inserted samples (`for`, hysteresis), the dead-man's switch,
//! silences, and one evaluation per tick across evaluators.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use common::fixture::{Fixture, fixture};
use common::http::req;
use lasect_api::alerts::evaluator::tick;
use lasect_api::alerts::rule::{Catalog, compile};
use lasect_api::alerts::store;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common;

const TICK: Duration = Duration::from_secs(1);

/// The default pack off, so only the rules of a test change states.
async fn quiet(pool: &PgPool) {
    sqlx::query("UPDATE alert_rules SET enabled = false WHERE source = 'default'")
        .execute(pool)
        .await
        .expect("disable the default pack");
}

fn threshold_rule(name: &str) -> Value {
    json!({
        "name": name,
        "severity": "warning",
        "scope": {"instance_id": 1},
        "condition": {
            "kind": "threshold", "family": "activity", "column": "connection_use_percent",
            "agg": "last", "window_secs": 60, "op": ">", "threshold": 80
        },
        "for_secs": 60,
        "hysteresis": 10,
        "labels": {"team": "db"},
        "annotations": {"summary": "{{ instance }} at {{ value | percent }}"}
    })
}

async fn state_of(pool: &PgPool, rule: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT a.state FROM alert_instances a JOIN alert_rules r ON r.id = a.rule_id \
         WHERE r.name = $1",
    )
    .bind(rule)
    .fetch_optional(pool)
    .await
    .expect("state")
}

async fn transitions(pool: &PgPool, rule: &str) -> Vec<(String, String, bool)> {
    sqlx::query_as(
        "SELECT from_state, to_state, silenced FROM alert_events WHERE rule_name = $1 ORDER BY id",
    )
    .bind(rule)
    .fetch_all(pool)
    .await
    .expect("events")
}

async fn evaluate(pool: &PgPool, at: DateTime<Utc>) {
    let report = tick(pool, TICK, Some(at), "test").await.expect("tick");
    assert!(report.evaluated, "the tick at {at} was taken");
    assert_eq!(report.errors, 0, "{report:?}");
}

async fn post(f: &Fixture, token: &str, uri: &str, body: Value) -> (StatusCode, Value) {
    req("POST", uri).token(token).json(body).send(&f.app).await
}

#[tokio::test]
async fn every_default_rule_compiles_and_evaluates_without_error() {
    let f = fixture().await;
    let catalog = Catalog::load_pool(&f.pool).await.expect("catalog");
    let rules = store::load_all(&f.pool).await.expect("rules");
    assert!(rules.len() >= 17, "the default pack: {}", rules.len());
    for rule in rules {
        let rule = rule.expect("readable");
        assert_eq!(rule.source, "default");
        compile(&rule.def, &catalog).unwrap_or_else(|e| panic!("{}: {e}", rule.def.name));
    }
    // Every family the pack reads has rows, so every statement really runs.
    let now = Utc::now();
    common::insert_activity(&f.pool, 1, now, 10.0).await;
    let report = tick(&f.pool, TICK, Some(now), "test").await.expect("tick");
    assert!(report.evaluated);
    assert_eq!(report.errors, 0, "{report:?}");
    let errors: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT name, last_error FROM alert_rules WHERE last_error IS NOT NULL")
            .fetch_all(&f.pool)
            .await
            .expect("errors");
    assert!(errors.is_empty(), "{errors:?}");
    // Event rules of the pack: a failing collector and a corrupted index in the log fire;
    // an ordinary error does not.
    sqlx::raw_sql(
        "INSERT INTO metric_collector_event (time, instance_id, collector, kind, message, suppressed) \
             VALUES (now() - interval '1 minute', 2, 'statement', 'error', 'no pg_stat_statements', 0);
         INSERT INTO metric_log (time, instance_id, severity, sqlstate, message, source) VALUES
             (now() - interval '1 minute', 1, 'ERROR', 'XX002', 'index \"i\" contains unexpected zero page', 'jsonlog'),
             (now() - interval '1 minute', 3, 'ERROR', '23505', 'duplicate key', 'jsonlog');
         INSERT INTO runs (kind, instance_id, agent_id, requested_by, status, timeout_ms, max_rows, \
                           max_bytes, expires_at, finished_at) VALUES
             ('migration', 2, 'db-01', 'user:admin', 'failed', 1000, 1, 1, now(), now() - interval '2 minutes'),
             ('sql', 3, 'db-01', 'user:admin', 'failed', 1000, 1, 1, now(), now() - interval '2 minutes'),
             ('dump_sql', 3, 'db-01', 'user:admin', 'succeeded', 1000, 1, 1, now(), now() - interval '2 minutes');
         INSERT INTO schema_snapshots (instance_id, database, digest, snapshot) VALUES
             (1, 'app', 'a', '{}'), (1, 'app', 'b', '{}');
         INSERT INTO schema_changes (instance_id, database, detected_at, from_snapshot, to_snapshot, \
                                     object_kind, object_name, change, classification) VALUES
             (1, 'app', now() - interval '5 minutes', 1, 2, 'column', 'public.t.c', 'dropped', 'breaking'),
             (3, 'app', now() - interval '5 minutes', 1, 2, 'column', 'public.t.d', 'added', 'non_breaking');",
    )
    .execute(&f.pool)
    .await
    .expect("events");
    let report = tick(&f.pool, TICK, Some(now + TimeDelta::seconds(15)), "test")
        .await
        .expect("tick");
    assert_eq!(report.errors, 0, "{report:?}");
    let fired: Vec<(String, Option<i64>, Value)> = sqlx::query_as(
        "SELECT r.name, a.instance_id, a.key_labels FROM alert_instances a \
         JOIN alert_rules r ON r.id = a.rule_id \
         WHERE a.state = 'firing' AND r.name IN ('collector_failing', 'log_corruption', 'log_panic', \
               'runs_failed', 'schema_breaking_change') \
         ORDER BY r.name",
    )
    .fetch_all(&f.pool)
    .await
    .expect("fired");
    assert_eq!(
        fired,
        [
            (
                "collector_failing".to_owned(),
                Some(2),
                json!({"collector": "statement"})
            ),
            ("log_corruption".to_owned(), Some(1), json!({})),
            (
                "runs_failed".to_owned(),
                Some(2),
                json!({"kind": "migration"})
            ),
            (
                "schema_breaking_change".to_owned(),
                Some(1),
                json!({"database": "app"})
            )
        ]
    );
}

#[tokio::test]
async fn bad_rules_are_refused_naming_the_field() {
    let f = fixture().await;
    let cases: &[(&str, Value, StatusCode, &str)] = &[
        (
            "condition.family",
            json!({"family": "nope"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown family `nope`",
        ),
        (
            "condition.column",
            json!({"column": "nope"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no column `nope`",
        ),
        (
            "text column",
            json!({"family": "activity_sessions", "column": "state"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "condition.column: column `state` of family `activity_sessions` is text",
        ),
        (
            "by",
            json!({"by": ["nope"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "condition.by[0]",
        ),
        (
            "where",
            json!({"where": [{"column": "x", "op": "eq", "value": "1"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "condition.where[0].column",
        ),
        (
            "missing op",
            json!({"op": null}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "condition.op: is required",
        ),
        (
            "window range",
            json!({"window_secs": 0}),
            StatusCode::BAD_REQUEST,
            "condition.window_secs",
        ),
        (
            "events only",
            json!({"family": "runs", "column": "status"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "only a condition of kind events reads it",
        ),
    ];
    for (what, change, status, message) in cases {
        let mut rule = threshold_rule("bad");
        for (k, v) in change.as_object().expect("object") {
            rule["condition"][k] = v.clone();
        }
        let (got, body) = post(&f, &f.admin, "/api/v1/alerts/rules", rule).await;
        assert_eq!(got, *status, "{what}: {body}");
        let text = body["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{what}: {text}");
    }
    let mut rule = threshold_rule("bad");
    rule["scope"] = json!({"selector": "env=prod, tier"});
    let (status, body) = post(&f, &f.admin, "/api/v1/alerts/rules", rule).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"]["message"],
        "scope.selector: position 15: expected = or != after `tier`"
    );
    let mut rule = threshold_rule("bad");
    rule["annotations"]["summary"] = json!("at {{ valu }}");
    let (status, body) = post(&f, &f.admin, "/api/v1/alerts/rules", rule).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let text = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("annotations.summary: position 4: unknown name `valu`"),
        "{text}"
    );
    let mut rule = threshold_rule("Bad Name");
    rule["condition"]["threshold"] = json!(1);
    let (status, body) = post(&f, &f.admin, "/api/v1/alerts/rules", rule).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = post(
        &f,
        &f.admin,
        "/api/v1/alerts/rules",
        json!({"name": "x", "severity": "loud"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // In a set, the message names the rule too.
    let mut broken = threshold_rule("second");
    broken["condition"]["column"] = json!("nope");
    let (status, body) = post(
        &f,
        &f.admin,
        "/api/v1/alerts/rules/apply",
        json!({"rules": [threshold_rule("first"), broken]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let text = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("rules[1] (second).condition.column:"),
        "{text}"
    );
    assert_eq!(state_of(&f.pool, "first").await, None);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM alert_rules WHERE name = 'first'")
        .fetch_one(&f.pool)
        .await
        .expect("count");
    assert_eq!(n, 0, "a refused set writes nothing");
}

#[tokio::test]
async fn roles_decide_who_reads_silences_and_writes() {
    let f = fixture().await;
    let (status, body) = post(&f, &f.admin, "/api/v1/alerts/rules", threshold_rule("r1")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().expect("id");
    for token in [&f.viewer, &f.scoped] {
        let (status, _) = req("GET", "/api/v1/alerts/rules")
            .token(token)
            .send(&f.app)
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = req("GET", "/api/v1/alerts").token(token).send(&f.app).await;
        assert_eq!(status, StatusCode::OK);
        for (method, uri, body) in [
            (
                "POST",
                "/api/v1/alerts/rules".to_owned(),
                threshold_rule("r2"),
            ),
            (
                "PUT",
                format!("/api/v1/alerts/rules/{id}"),
                threshold_rule("r1"),
            ),
            ("DELETE", format!("/api/v1/alerts/rules/{id}"), json!({})),
            (
                "POST",
                "/api/v1/alerts/rules/apply".to_owned(),
                json!({"rules": []}),
            ),
            (
                "POST",
                "/api/v1/alerts/rules/test".to_owned(),
                json!({"name": "r1"}),
            ),
            (
                "POST",
                "/api/v1/alerts/silences".to_owned(),
                json!({"matchers": "alertname=r1", "duration_secs": 600, "comment": "c"}),
            ),
            ("DELETE", "/api/v1/alerts/silences/1".to_owned(), json!({})),
            ("POST", "/api/v1/alerts/1/ack".to_owned(), json!({})),
        ] {
            let (status, body) = req(method, &uri).token(token).json(body).send(&f.app).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}: {body}");
        }
    }
    // A default-pack rule is disabled, not deleted.
    let default_id: i64 =
        sqlx::query_scalar("SELECT id FROM alert_rules WHERE name = 'agent_silent'")
            .fetch_one(&f.pool)
            .await
            .expect("id");
    let (status, _) = req("DELETE", &format!("/api/v1/alerts/rules/{default_id}"))
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Writes are audited.
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'POST /api/v1/alerts/rules' AND actor = 'admin'",
    )
    .fetch_one(&f.pool)
    .await
    .expect("audit");
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn apply_is_idempotent_and_a_dry_run_shows_the_diff() {
    let f = fixture().await;
    let (status, export) = req("GET", "/api/v1/alerts/rules/export")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{export}");
    let pack = export["rules"].as_array().expect("rules").clone();
    let (status, body) = post(
        &f,
        &f.admin,
        "/api/v1/alerts/rules/apply",
        json!({"rules": pack}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["diff"]["unchanged"], pack.len());
    assert_eq!(body["diff"]["created"], json!([]));

    let mut set = pack.clone();
    set.push(threshold_rule("mine"));
    let (_, body) = post(
        &f,
        &f.admin,
        "/api/v1/alerts/rules/apply",
        json!({"rules": set, "dry_run": true}),
    )
    .await;
    assert_eq!(body["dry_run"], true);
    assert_eq!(body["diff"]["created"], json!(["mine"]));
    let (_, list) = req("GET", "/api/v1/alerts/rules")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert!(
        !list["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .any(|r| r["rule"]["name"] == "mine"),
        "a dry run writes nothing"
    );
    for want_created in [json!(["mine"]), json!([])] {
        let (_, body) = post(
            &f,
            &f.admin,
            "/api/v1/alerts/rules/apply",
            json!({"rules": set}),
        )
        .await;
        assert_eq!(body["diff"]["created"], want_created, "{body}");
        assert_eq!(body["diff"]["updated"], json!([]));
    }
    // A change is an update naming the fields; a default rule listed disabled stays, off.
    let last = set.len() - 1;
    set[last]["condition"]["threshold"] = json!(90);
    set[last]["severity"] = json!("critical");
    set[0]["enabled"] = json!(false);
    let first = set[0]["name"].clone();
    let (_, body) = post(
        &f,
        &f.admin,
        "/api/v1/alerts/rules/apply",
        json!({"rules": set}),
    )
    .await;
    assert_eq!(
        body["diff"]["updated"],
        json!([{"name": first, "fields": ["enabled"]}, {"name": "mine", "fields": ["severity", "condition"]}])
    );
    // The set without the user's rule deletes it; default rules missing from a set stay.
    let (_, body) = post(
        &f,
        &f.admin,
        "/api/v1/alerts/rules/apply",
        json!({"rules": [set[0].clone()]}),
    )
    .await;
    assert_eq!(body["diff"]["deleted"], json!(["mine"]), "{body}");
    let (_, list) = req("GET", "/api/v1/alerts/rules")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(list["rules"].as_array().map(Vec::len), Some(pack.len()));
}

#[tokio::test]
async fn for_and_hysteresis_drive_the_states() {
    let f = fixture().await;
    quiet(&f.pool).await;
    let (status, body) = post(&f, &f.admin, "/api/v1/alerts/rules", threshold_rule("busy")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let t0 = Utc::now() - TimeDelta::minutes(10);
    let steps: &[(i64, f64, &str)] = &[
        (0, 85.0, "pending"),
        (30, 75.0, "pending"), // under 80 but above the release point 70
        (60, 82.0, "firing"),  // held for 60 s
        (90, 72.0, "firing"),  // hysteresis again
        (120, 65.0, "resolved"),
        (150, 79.0, "resolved"), // the full threshold applies again
        (180, 81.0, "pending"),
        (210, 50.0, "inactive"),
    ];
    for (s, percent, want) in steps {
        let at = t0 + TimeDelta::seconds(*s);
        common::insert_activity(&f.pool, 1, at, *percent).await;
        // Another instance out of the rule's scope never alerts.
        common::insert_activity(&f.pool, 2, at, 99.0).await;
        evaluate(&f.pool, at).await;
        assert_eq!(
            state_of(&f.pool, "busy").await.as_deref(),
            Some(*want),
            "t0+{s}s"
        );
    }
    let events = transitions(&f.pool, "busy").await;
    let pairs: Vec<(&str, &str)> = events
        .iter()
        .map(|(a, b, _)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("inactive", "pending"),
            ("pending", "firing"),
            ("firing", "resolved"),
            ("resolved", "pending"),
            ("pending", "inactive")
        ]
    );
    let (annotations, labels): (Value, Value) = sqlx::query_as(
        "SELECT annotations, labels FROM alert_events WHERE rule_name = 'busy' AND to_state = 'firing'",
    )
    .fetch_one(&f.pool)
    .await
    .expect("firing event");
    assert_eq!(annotations["summary"], "prod at 82.0%");
    // Every transition carries the value that made it, the resolution too.
    let values: Vec<Option<f64>> =
        sqlx::query_scalar("SELECT value FROM alert_events WHERE rule_name = 'busy' ORDER BY id")
            .fetch_all(&f.pool)
            .await
            .expect("values");
    assert_eq!(
        values,
        [Some(85.0), Some(82.0), Some(65.0), Some(81.0), Some(50.0)]
    );
    assert_eq!(labels["team"], "db");
    assert_eq!(labels["env"], "prod");
    // History by rule and instance, through the API.
    let (status, body) = req("GET", "/api/v1/alerts/history?rule=busy&instance_id=1")
        .token(&f.viewer)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"].as_array().map(Vec::len), Some(5));
    assert_eq!(body["events"][0]["to_state"], "inactive");
    // Query parameters are exactly as strict as the document.
    let long = "r".repeat(64);
    for uri in [
        format!("/api/v1/alerts/history?rule={long}"),
        format!("/api/v1/alerts?rule={long}"),
        "/api/v1/alerts?instance_id=0".to_owned(),
        format!("/api/v1/alerts/history?since={}", "1".repeat(65)),
        "/api/v1/alerts?state=burning".to_owned(),
    ] {
        let (status, body) = req("GET", &uri).token(&f.viewer).send(&f.app).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
    }
}

#[tokio::test]
async fn a_silent_agent_fires_and_resolves_and_silences_mark_it() {
    let f = fixture().await;
    quiet(&f.pool).await;
    sqlx::query("UPDATE alert_rules SET enabled = true WHERE name = 'agent_silent'")
        .execute(&f.pool)
        .await
        .expect("enable");
    let (status, silence) = post(
        &f,
        &f.viewer,
        "/api/v1/alerts/silences",
        json!({"matchers": "alertname=agent_silent", "duration_secs": 600, "comment": "c"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{silence}");
    let user = common::user(&f.pool, "oncall", Some(lasect_api::auth::Role::User), &[]).await;
    let (status, silence) = post(
        &f,
        &user,
        "/api/v1/alerts/silences",
        json!({"matchers": "alertname=agent_silent, agent=db-01", "duration_secs": 600, "comment": "maintenance"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{silence}");
    // A maintenance window planned ahead silences nothing yet.
    let (status, window) = post(
        &f,
        &user,
        "/api/v1/alerts/silences",
        json!({"matchers": "alertname=agent_silent", "duration_secs": 3600,
               "starts_in_secs": 3600, "comment": "tonight's upgrade"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{window}");
    assert_eq!(window["active"], false);
    let (status, body) = post(
        &f,
        &user,
        "/api/v1/alerts/silences",
        json!({"matchers": "agent=", "duration_secs": 600, "comment": "c"}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "an empty value is a matcher: {body}"
    );
    let (status, body) = post(
        &f,
        &user,
        "/api/v1/alerts/silences",
        json!({"matchers": "agent", "duration_secs": 600, "comment": "c"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("position 6")
    );

    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&f.pool)
        .await
        .expect("now");
    sqlx::query("UPDATE agents SET last_seen = $1 WHERE id = 'db-01'")
        .bind(now - TimeDelta::minutes(10))
        .execute(&f.pool)
        .await
        .expect("silent agent");
    evaluate(&f.pool, now).await;
    assert_eq!(
        state_of(&f.pool, "agent_silent").await.as_deref(),
        Some("firing")
    );
    let (_, body) = req("GET", "/api/v1/alerts?state=firing")
        .token(&f.viewer)
        .send(&f.app)
        .await;
    let alert = &body["alerts"][0];
    assert_eq!(alert["rule"], "agent_silent", "{body}");
    assert_eq!(alert["agent_id"], "db-01");
    assert_eq!(alert["silenced"], true);
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("10m"),
        "{alert}"
    );
    // Alerts of an agent need a global role.
    let (_, body) = req("GET", "/api/v1/alerts")
        .token(&f.scoped)
        .send(&f.app)
        .await;
    assert_eq!(body["alerts"], json!([]));
    // Acknowledged by a user, until it resolves.
    let id = alert["id"].as_i64().expect("id");
    let (status, body) = post(&f, &user, &format!("/api/v1/alerts/{id}/ack"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["acknowledged_by"], "oncall");
    // The silence removed, the alert is no longer silenced.
    let silence_id = silence["id"].as_i64().expect("id");
    let (status, _) = req("DELETE", &format!("/api/v1/alerts/silences/{silence_id}"))
        .token(&user)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = req("GET", "/api/v1/alerts")
        .token(&f.viewer)
        .send(&f.app)
        .await;
    assert_eq!(body["alerts"][0]["silenced"], false);
    // The agent is back: resolved, acknowledgement gone, recorded with the silence as it was.
    sqlx::query("UPDATE agents SET last_seen = $1 WHERE id = 'db-01'")
        .bind(now + TimeDelta::seconds(30))
        .execute(&f.pool)
        .await
        .expect("agent back");
    evaluate(&f.pool, now + TimeDelta::seconds(30)).await;
    assert_eq!(
        state_of(&f.pool, "agent_silent").await.as_deref(),
        Some("resolved")
    );
    assert_eq!(
        transitions(&f.pool, "agent_silent").await,
        [
            ("inactive".to_owned(), "firing".to_owned(), true),
            ("firing".to_owned(), "resolved".to_owned(), false)
        ]
    );
    let (status, _) = post(&f, &user, &format!("/api/v1/alerts/{id}/ack"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn two_evaluators_make_one_round_per_tick() {
    let f = fixture().await;
    quiet(&f.pool).await;
    let (status, _) = post(&f, &f.admin, "/api/v1/alerts/rules", {
        let mut r = threshold_rule("once");
        r["for_secs"] = json!(0);
        r
    })
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let at = Utc::now();
    common::insert_activity(&f.pool, 1, at, 95.0).await;
    let interval = Duration::from_secs(15);
    let (a, b) = tokio::join!(
        tick(&f.pool, interval, Some(at), "a"),
        tick(&f.pool, interval, Some(at), "b")
    );
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert!(
        a.evaluated != b.evaluated,
        "exactly one evaluates: {a:?} {b:?}"
    );
    assert_eq!(a.transitions + b.transitions, 1);
    // Within the interval, nobody evaluates again; after it, one does.
    let again = tick(&f.pool, interval, Some(at + TimeDelta::seconds(5)), "b")
        .await
        .expect("tick");
    assert!(!again.evaluated);
    let later = tick(&f.pool, interval, Some(at + TimeDelta::seconds(15)), "b")
        .await
        .expect("tick");
    assert!(later.evaluated);
    assert_eq!(transitions(&f.pool, "once").await.len(), 1);
}

#[tokio::test]
async fn test_shows_what_would_fire_and_metrics_are_served() {
    let f = fixture().await;
    let now = Utc::now();
    common::insert_activity(&f.pool, 1, now, 95.0).await;
    common::insert_activity(&f.pool, 2, now, 20.0).await;
    let mut rule = threshold_rule("probe");
    rule["scope"] = json!({"selector": "env!=dev"});
    rule["for_secs"] = json!(0);
    let (status, body) = post(
        &f,
        &f.admin,
        "/api/v1/alerts/rules/test",
        json!({"rule": rule}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let values = body["values"].as_array().expect("values");
    assert_eq!(values.len(), 2, "{body}");
    assert_eq!(values[0]["instance"], "prod");
    assert_eq!(values[0]["holds"], true);
    assert_eq!(values[0]["would_be"], "firing");
    assert_eq!(values[1]["holds"], false);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM alert_rules WHERE name = 'probe'")
        .fetch_one(&f.pool)
        .await
        .expect("count");
    assert_eq!(n, 0, "a test stores nothing");
    // A forecast: free space of /data falls 1 GB an hour from 10 GB; the default rule
    // (24 h ahead below 0) holds, a steady /wal does not.
    for h in 0..6i64 {
        sqlx::query(
            "INSERT INTO metric_host_filesystem (time, instance_id, mount_point, roles, \
             total_bytes, used_bytes, free_bytes, total_inodes, used_inodes, free_inodes) \
             VALUES ($1, 1, '/data', 'data', 20e9, 20e9 - $2, $2, 1, 1, 0), \
                    ($1, 1, '/wal', 'wal', 20e9, 10e9, 10e9, 1, 1, 0)",
        )
        .bind(now - TimeDelta::hours(5 - h))
        .bind(10e9 - 1e9 * h as f64)
        .execute(&f.pool)
        .await
        .expect("filesystem");
    }
    let (status, body) = post(
        &f,
        &f.admin,
        "/api/v1/alerts/rules/test",
        json!({"name": "filesystem_full_forecast"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let values = body["values"].as_array().expect("values");
    assert_eq!(values.len(), 2, "{body}");
    assert_eq!(values[0]["key_labels"], json!({"mount_point": "/data"}));
    assert_eq!(values[0]["holds"], true);
    // 5 GB now, minus 24 GB in a day.
    let predicted = values[0]["value"].as_f64().expect("value");
    assert!((predicted - -19e9).abs() < 1e6, "{predicted}");
    assert_eq!(values[1]["holds"], false);
    // A host family is keyed by the agent; the scope reaches it through its instances.
    sqlx::query(
        "INSERT INTO metric_host_cpu (time, agent_id, cpu_count, usage_percent, load1, load5, load15) \
         VALUES ($1, 'db-01', 4, 97.5, 1, 1, 1)",
    )
    .bind(now)
    .execute(&f.pool)
    .await
    .expect("cpu");
    let cpu = json!({"rule": {"name": "cpu", "severity": "info", "scope": {"selector": "env=prod"},
        "condition": {"kind": "threshold", "family": "host_cpu", "column": "usage_percent",
                      "agg": "max", "window_secs": 60, "op": ">=", "threshold": 95}}});
    let (status, body) = post(&f, &f.admin, "/api/v1/alerts/rules/test", cpu).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["values"][0]["agent_id"], "db-01", "{body}");
    assert_eq!(body["values"][0]["instance_id"], Value::Null);
    assert_eq!(body["values"][0]["value"], 97.5);
    let (status, body) = post(
        &f,
        &f.admin,
        "/api/v1/alerts/rules/test",
        json!({"name": "nope"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let answer = common::http::call(
        &f.app,
        "GET",
        "/metrics",
        Some(&f.admin),
        None,
        common::http::LOCAL,
    )
    .await;
    assert!(
        answer.text.contains("lasect_api_alert_rule_errors_total"),
        "{}",
        answer.text
    );
}

#[test]
fn the_evaluation_interval_is_bounded_in_the_config() {
    use lasect_api::config::{ApiConfig, ConfigError};
    let parse = |text: &str| {
        ApiConfig::from_toml(
            &format!("store_dsn = \"host=/tmp dbname=lasect\"\n{text}"),
            std::path::Path::new("api.toml"),
        )
        .expect("parses")
    };
    let config = parse("");
    assert!(config.alerts.enabled);
    assert_eq!(config.alerts.evaluation_interval_secs, 15);
    for bad in [0, 3601] {
        let config = parse(&format!(
            "[tls]\nallow_plaintext = true\n[alerts]\nevaluation_interval_secs = {bad}\n"
        ));
        match config.validate() {
            Err(ConfigError::Invalid(fields)) => {
                assert_eq!(fields.len(), 1, "{fields:?}");
                assert_eq!(fields[0].field, "alerts.evaluation_interval_secs");
                assert!(fields[0].message.contains(&bad.to_string()));
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    let config = parse(
        "[tls]\nallow_plaintext = true\n[alerts]\nenabled = false\nevaluation_interval_secs = 1\n",
    );
    config.validate().expect("valid");
    assert!(!config.alerts.enabled);
    assert!(
        ApiConfig::from_toml("[alerts]\ninterval = 5\n", std::path::Path::new("api.toml")).is_err(),
        "unknown keys are refused"
    );
}

#[tokio::test]
async fn old_history_and_long_ended_alerts_are_deleted() {
    let f = fixture().await;
    quiet(&f.pool).await;
    let (status, _) = post(&f, &f.admin, "/api/v1/alerts/rules", {
        let mut r = threshold_rule("old");
        r["for_secs"] = json!(0);
        r
    })
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let now = Utc::now();
    common::insert_activity(&f.pool, 1, now, 95.0).await;
    evaluate(&f.pool, now).await;
    common::insert_activity(&f.pool, 1, now + TimeDelta::seconds(30), 5.0).await;
    evaluate(&f.pool, now + TimeDelta::seconds(30)).await;
    assert_eq!(state_of(&f.pool, "old").await.as_deref(), Some("resolved"));
    // Nothing is old yet.
    assert_eq!(
        store::apply_retention(&f.pool).await.expect("retention"),
        (0, 0)
    );
    sqlx::raw_sql(
        "UPDATE alert_instances SET since = now() - interval '8 days';
         UPDATE alert_events SET at = now() - interval '91 days' WHERE to_state = 'firing';",
    )
    .execute(&f.pool)
    .await
    .expect("age");
    assert_eq!(
        store::apply_retention(&f.pool).await.expect("retention"),
        (1, 1)
    );
    assert_eq!(state_of(&f.pool, "old").await, None);
    assert_eq!(
        transitions(&f.pool, "old").await.len(),
        1,
        "the resolution stays"
    );
}
