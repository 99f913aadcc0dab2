//! Alert notifications end to end on a real store, with receivers that are real servers on
//! local sockets: a webhook receiver (axum) that verifies signatures and can be "down", the
//! Slack message shape, a real `prometheus-alertmanager`, two notifiers on one store, and the
//! channel API (secrets never returned, URLs checked, roles).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use chrono::{DateTime, TimeDelta, Utc};
use common::fixture::{Fixture, SECRET, fixture};
use common::http::req;
use hmac::{Hmac, KeyInit, Mac};
use lasect_api::alerts::evaluator::tick;
use lasect_api::auth::jwt::JwtKeys;
use lasect_api::auth::{AuthConfig, AuthState};
use lasect_api::notify::outbox;
use lasect_api::{AppState, router};
use lasect_pki::secrets::{KeyFile, Keyring};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::PgPool;

use crate::common;

const WEBHOOK_SECRET: &str = "a webhook secret of some length";

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Answer 503 and record nothing.
    down: Arc<AtomicBool>,
}

impl Receiver {
    fn taken(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }
}

async fn receive(
    State(r): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if r.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    r.got.lock().expect("lock").push(Received {
        path: uri.path().to_owned(),
        headers,
        body: body.to_vec(),
    });
    StatusCode::OK
}

/// A receiver on a free local port; its base URL.
async fn start_receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = Router::new().fallback(receive).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, format!("http://{addr}"))
}

struct Setup {
    f: Fixture,
    app: Router,
    keys: KeyFile,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn keyring(&self) -> Arc<Keyring> {
        self.keys.keyring().expect("keyring")
    }
}

/// The fixture's store behind a router that has a secrets key file; the default rule pack
/// off so only the test's rules change states.
async fn setup() -> Setup {
    let f = fixture().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secrets.keys");
    let keys = KeyFile::open_or_create(&path).expect("key file");
    let state = AppState::with_auth(
        f.pool.clone(),
        AuthState::new(JwtKeys::from_secret(SECRET), AuthConfig::default()),
    )
    .with_secrets(KeyFile::open(&path).expect("key file"));
    sqlx::query("UPDATE alert_rules SET enabled = false WHERE source = 'default'")
        .execute(&f.pool)
        .await
        .expect("disable the default pack");
    Setup {
        app: router(state),
        f,
        keys,
        _dir: dir,
    }
}

async fn post(s: &Setup, token: &str, uri: &str, body: Value) -> (StatusCode, Value) {
    req("POST", uri).token(token).json(body).send(&s.app).await
}

async fn get(s: &Setup, token: &str, uri: &str) -> (StatusCode, Value) {
    req("GET", uri).token(token).send(&s.app).await
}

async fn add_channel(s: &Setup, body: Value) -> i64 {
    let (status, answer) = post(s, &s.f.admin, "/api/v1/alerts/channels", body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["id"].as_i64().expect("id")
}

async fn add_route(s: &Setup, body: Value) {
    let (status, answer) = post(s, &s.f.admin, "/api/v1/alerts/routes", body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

/// A rule over instance `instance`'s connection use that fires above 80 % at once.
async fn add_rule(s: &Setup, name: &str, instance: i64, severity: &str) {
    let (status, answer) = post(
        s,
        &s.f.admin,
        "/api/v1/alerts/rules",
        json!({
            "name": name,
            "severity": severity,
            "scope": {"instance_id": instance},
            "condition": {
                "kind": "threshold", "family": "activity", "column": "connection_use_percent",
                "agg": "last", "window_secs": 60, "op": ">", "threshold": 80
            },
            "labels": {"team": "db"},
            "annotations": {
                "summary": "{{ instance }} at {{ value | percent }}",
                "runbook": "find <who> & why"
            }
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

/// Evaluation rounds at fake times, 10 s apart from a start an hour ago.
struct Clock {
    at: DateTime<Utc>,
}

impl Clock {
    fn new() -> Self {
        Clock {
            at: Utc::now() - TimeDelta::hours(1),
        }
    }

    /// Sets connection use of `instances` to `percent` and evaluates.
    async fn round(&mut self, pool: &PgPool, instances: &[i64], percent: f64) {
        self.at += TimeDelta::seconds(10);
        for i in instances {
            common::insert_activity(pool, *i, self.at, percent).await;
        }
        let report = tick(pool, Duration::from_secs(1), Some(self.at), "test")
            .await
            .expect("tick");
        assert!(report.evaluated && report.errors == 0, "{report:?}");
    }
}

/// Retries are due now: the test does not wait for the backoff.
async fn make_due(pool: &PgPool) {
    sqlx::query("UPDATE alert_deliveries SET next_attempt_at = now() WHERE state = 'pending'")
        .execute(pool)
        .await
        .expect("make due");
}

async fn pending(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM alert_deliveries WHERE state = 'pending'")
        .fetch_one(pool)
        .await
        .expect("count")
}

/// Checks the signature as a receiver would (and that another key fails); the body as JSON.
fn verify(r: &Received) -> Value {
    verify_with(r, WEBHOOK_SECRET)
}

fn verify_with(r: &Received, key: &str) -> Value {
    assert!(signed_with(r, key), "the signature verifies");
    assert!(!signed_with(r, "another secret"));
    serde_json::from_slice(&r.body).expect("JSON body")
}

/// Whether `r` carries a valid signature under `key`.
fn signed_with(r: &Received, key: &str) -> bool {
    let ts = r.headers["x-lasect-timestamp"].to_str().expect("ascii");
    let sig = r.headers["x-lasect-signature"].to_str().expect("ascii");
    let hex = sig.strip_prefix("v1=").expect("v1=");
    let tag: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("key");
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&r.body);
    mac.verify_slice(&tag).is_ok()
}

#[tokio::test]
async fn webhook_is_signed_survives_a_receiver_down_and_keeps_order_once() {
    let s = setup().await;
    let (hook, base) = start_receiver().await;
    let channel = add_channel(
        &s,
        json!({"name": "ops-hook", "kind": "webhook", "url": format!("{base}/hook"),
               "secret": WEBHOOK_SECRET, "insecure_http": true}),
    )
    .await;
    add_route(
        &s,
        json!({"channel": "ops-hook", "min_severity": "warning", "matchers": "team=db"}),
    )
    .await;
    add_rule(&s, "conn_high", 1, "warning").await;
    // Below the route's severity: never sent.
    add_rule(&s, "conn_info", 2, "info").await;
    let keyring = s.keyring();
    let pool = &s.f.pool;

    // Down while the alert fires, resolves and fires again.
    hook.down.store(true, Ordering::SeqCst);
    let mut clock = Clock::new();
    for percent in [90.0, 50.0, 95.0] {
        clock.round(pool, &[1, 2], percent).await;
        outbox::enqueue(pool).await.expect("enqueue");
        make_due(pool).await;
        outbox::deliver_due(pool, Some(&keyring))
            .await
            .expect("deliver");
    }
    assert!(hook.taken().is_empty());
    assert_eq!(pending(pool).await, 3);
    // In order per alert: only the oldest was tried.
    let tried: Vec<(String, i32)> = sqlx::query_as(
        "SELECT kind, attempts FROM alert_deliveries WHERE channel_id = $1 ORDER BY id",
    )
    .bind(channel)
    .fetch_all(pool)
    .await
    .expect("deliveries");
    assert_eq!(tried[0], ("firing".to_owned(), 3), "{tried:?}");
    assert!(tried[1..].iter().all(|(_, a)| *a == 0), "{tried:?}");

    // Up: each notification arrives once, in order, and passes again change nothing.
    hook.down.store(false, Ordering::SeqCst);
    for _ in 0..3 {
        make_due(pool).await;
        outbox::enqueue(pool).await.expect("enqueue");
        outbox::deliver_due(pool, Some(&keyring))
            .await
            .expect("deliver");
    }
    let got = hook.taken();
    let bodies: Vec<Value> = got.iter().map(verify).collect();
    let kinds: Vec<&str> = bodies
        .iter()
        .map(|b| b["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["firing", "resolved", "firing"], "{bodies:?}");
    let keys: Vec<&str> = got
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().expect("ascii"))
        .collect();
    for (k, b) in keys.iter().zip(&bodies) {
        assert_eq!(*k, b["idempotency_key"]);
    }
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 3);
    let first = &bodies[0];
    assert_eq!(first["version"], 1);
    assert_eq!(first["rule"], "conn_high");
    assert_eq!(first["severity"], "warning");
    assert_eq!(first["state"], "firing");
    assert_eq!(first["value"], 90.0);
    assert_eq!(first["labels"]["team"], "db");
    assert!(
        first["annotations"]["summary"]
            .as_str()
            .expect("summary")
            .contains("90"),
        "{first}"
    );
    assert_eq!(
        first["links"]["history"],
        "/api/v1/alerts/history?rule=conn_high&instance=1"
    );
    assert_eq!(bodies[1]["state"], "resolved");
    assert!(bodies[1]["ends_at"].is_string());
    assert!(got.iter().all(|r| r.path == "/hook"));

    // History: every attempt of every notification.
    let (status, history) = get(
        &s,
        &s.f.viewer,
        &format!("/api/v1/alerts/deliveries?channel_id={channel}&since=2h"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let list = history["deliveries"].as_array().expect("list");
    assert_eq!(list.len(), 3);
    let oldest = &list[2];
    assert_eq!(oldest["state"], "delivered");
    let attempts = oldest["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 4, "{oldest}");
    assert_eq!(attempts[0]["ok"], false);
    assert_eq!(attempts[0]["status"], 503);
    assert_eq!(attempts[3]["ok"], true);
    let (status, _) = get(&s, &s.f.scoped, "/api/v1/alerts/deliveries").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Repeats: a firing alert is told again once the route's interval (4 h) has passed,
    // once however many passes run.
    sqlx::query("UPDATE alert_deliveries SET created_at = now() - interval '5 hours'")
        .execute(pool)
        .await
        .expect("age");
    outbox::enqueue(pool).await.expect("enqueue");
    outbox::enqueue(pool).await.expect("enqueue twice");
    outbox::deliver_due(pool, Some(&keyring))
        .await
        .expect("deliver");
    let got = hook.taken();
    assert_eq!(got.len(), 4);
    assert_eq!(verify(&got[3])["kind"], "repeat");
    // Acknowledged: no more repeats.
    let alert = bodies[0]["alert_id"].as_i64().expect("alert id");
    let (status, answer) = post(
        &s,
        &s.f.admin,
        &format!("/api/v1/alerts/{alert}/ack"),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    sqlx::query("UPDATE alert_deliveries SET created_at = now() - interval '5 hours'")
        .execute(pool)
        .await
        .expect("age");
    outbox::enqueue(pool).await.expect("enqueue");
    assert_eq!(pending(pool).await, 0);

    // Give up: a receiver gone for longer than the channel allows.
    hook.down.store(true, Ordering::SeqCst);
    clock.round(pool, &[1], 10.0).await;
    outbox::enqueue(pool).await.expect("enqueue");
    sqlx::query("UPDATE alert_deliveries SET give_up_at = now() WHERE state = 'pending'")
        .execute(pool)
        .await
        .expect("give up now");
    outbox::deliver_due(pool, Some(&keyring))
        .await
        .expect("deliver");
    let (state, error): (String, Option<String>) = sqlx::query_as(
        "SELECT state, last_error FROM alert_deliveries WHERE kind = 'resolved' \
         ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .expect("last");
    assert_eq!(state, "failed");
    assert!(error.expect("error").contains("503"));

    // Retention: finished deliveries older than the history go, with their attempts.
    sqlx::query(
        "UPDATE alert_deliveries SET finished_at = now() - interval '100 days' \
         WHERE state = 'delivered'",
    )
    .execute(pool)
    .await
    .expect("age");
    assert_eq!(outbox::apply_retention(pool).await.expect("retention"), 4);
    let left: Vec<String> = sqlx::query_scalar("SELECT state FROM alert_deliveries")
        .fetch_all(pool)
        .await
        .expect("left");
    assert_eq!(left, ["failed"]);
}

#[tokio::test]
async fn two_notifiers_send_each_notification_once_slack_and_alertmanager_shapes() {
    let s = setup().await;
    let (hook, base) = start_receiver().await;
    add_channel(
        &s,
        json!({"name": "hook", "kind": "webhook", "url": format!("{base}/hook"),
               "secret": WEBHOOK_SECRET, "insecure_http": true}),
    )
    .await;
    let slack_url = format!("{base}/services/T0TEST/B0TEST/slack-hook-secret-9f2c");
    let slack = add_channel(
        &s,
        json!({"name": "slack", "kind": "slack", "url": slack_url, "insecure_http": true}),
    )
    .await;
    add_route(&s, json!({"channel": "hook", "repeat_secs": 0})).await;
    add_route(&s, json!({"channel": "slack", "repeat_secs": 0})).await;
    // The Slack URL is the secret: never shown.
    let (_, shown) = get(&s, &s.f.viewer, &format!("/api/v1/alerts/channels/{slack}")).await;
    assert!(
        !shown.to_string().contains("slack-hook-secret-9f2c"),
        "{shown}"
    );
    assert_eq!(shown["has_secret"], true);

    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let instance = i64::try_from(i).expect("small") + 1;
        add_rule(&s, &format!("conn_{name}"), instance, "critical").await;
    }
    let pool = &s.f.pool;
    let mut clock = Clock::new();
    for percent in [90.0, 10.0, 90.0, 10.0] {
        clock.round(pool, &[1, 2, 3], percent).await;
    }
    // Two notifiers, each with its own connections (as two API processes), at once.
    let worker = |pool: PgPool, keyring: Arc<Keyring>| async move {
        for _ in 0..3 {
            outbox::enqueue(&pool).await.expect("enqueue");
            outbox::deliver_due(&pool, Some(&keyring))
                .await
                .expect("deliver");
        }
    };
    let other = PgPool::connect_with((*pool.connect_options()).clone())
        .await
        .expect("second pool");
    let (a, b) = tokio::join!(
        tokio::spawn(worker(pool.clone(), s.keyring())),
        tokio::spawn(worker(other, s.keyring())),
    );
    a.expect("worker a");
    b.expect("worker b");
    outbox::deliver_due(pool, Some(&s.keyring()))
        .await
        .expect("deliver");

    let got = hook.taken();
    let hooks: Vec<Value> = got
        .iter()
        .filter(|r| r.path == "/hook")
        .map(verify)
        .collect();
    // 3 alerts x (firing, resolved) x 2 = 12 notices, each once.
    assert_eq!(hooks.len(), 12, "{hooks:?}");
    let keys: BTreeSet<&str> = hooks
        .iter()
        .map(|h| h["idempotency_key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys.len(), 12);
    let mut per_alert: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for h in &hooks {
        per_alert
            .entry(h["rule"].as_str().expect("rule").to_owned())
            .or_default()
            .push(h["kind"].as_str().expect("kind").to_owned());
    }
    assert_eq!(per_alert.len(), 3);
    for kinds in per_alert.values() {
        assert_eq!(kinds, &["firing", "resolved", "firing", "resolved"]);
    }

    let slacks: Vec<Value> = got
        .iter()
        .filter(|r| r.path.starts_with("/services/"))
        .map(|r| serde_json::from_slice(&r.body).expect("JSON"))
        .collect();
    assert_eq!(slacks.len(), 12);
    let m = &slacks[0];
    assert!(
        m["text"]
            .as_str()
            .expect("text")
            .starts_with("[FIRING] conn_"),
        "{m}"
    );
    let blocks = m["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(blocks[1]["type"], "section");
    assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
    // Slack mrkdwn: `<`, `>` and `&` escaped.
    assert_eq!(
        blocks[2]["elements"][0]["text"],
        "find &lt;who&gt; &amp; why"
    );

    // Alertmanager: a real one takes the alert.
    let am = Alertmanager::start();
    add_channel(
        &s,
        json!({"name": "am", "kind": "alertmanager", "url": am.url, "insecure_http": true,
               "links_base_url": "https://lasect.example.com/"}),
    )
    .await;
    add_route(&s, json!({"channel": "am", "matchers": "alertname=conn_a"})).await;
    am.wait_ready().await;
    clock.round(pool, &[1, 2, 3], 90.0).await;
    outbox::enqueue(pool).await.expect("enqueue");
    outbox::deliver_due(pool, Some(&s.keyring()))
        .await
        .expect("deliver");
    let undelivered: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT kind, last_error FROM alert_deliveries WHERE state <> 'delivered'")
            .fetch_all(pool)
            .await
            .expect("undelivered");
    assert!(undelivered.is_empty(), "{undelivered:?}");
    let alerts: Value = reqwest::get(format!("{}/api/v2/alerts", am.url))
        .await
        .expect("query alertmanager")
        .json()
        .await
        .expect("JSON");
    let alerts = alerts.as_array().expect("alerts");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["labels"]["alertname"], "conn_a");
    assert_eq!(alerts[0]["labels"]["severity"], "critical");
    assert_eq!(alerts[0]["labels"]["team"], "db");
    assert_eq!(alerts[0]["status"]["state"], "active");
    assert!(alerts[0]["annotations"]["summary"].is_string());
    assert_eq!(
        alerts[0]["generatorURL"],
        "https://lasect.example.com/api/v1/alerts?rule=conn_a&state=all"
    );
}

#[tokio::test]
async fn channel_api_checks_urls_roles_and_never_returns_secrets() {
    let s = setup().await;
    let (hook, base) = start_receiver().await;
    let good = json!({"name": "h", "kind": "webhook", "url": format!("{base}/x"),
                      "secret": WEBHOOK_SECRET, "insecure_http": true});
    // Roles: a viewer cannot add, a user with label grants only cannot even read.
    let (status, _) = post(&s, &s.f.viewer, "/api/v1/alerts/channels", good.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get(&s, &s.f.scoped, "/api/v1/alerts/channels").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = post(
        &s,
        &s.f.viewer,
        "/api/v1/alerts/routes",
        json!({"channel": "h"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let bad = |url: &str, insecure: bool| {
        json!({"name": "bad", "kind": "webhook", "url": url, "secret": WEBHOOK_SECRET,
               "insecure_http": insecure})
    };
    for (body, want) in [
        (bad("ftp://example.com/x", true), "http:// or https://"),
        (bad("file:///etc/passwd", true), "http:// or https://"),
        (bad("http://example.com/x", false), "insecure_http"),
        (bad("https://user:pw@example.com/x", false), "password"),
        (bad("no url", false), "does not parse"),
        (
            json!({"name": "bad", "kind": "webhook", "url": "https://example.com/"}),
            "secret",
        ),
        (
            json!({"name": "bad", "kind": "alertmanager", "url": "https://example.com/",
                   "secret": WEBHOOK_SECRET}),
            "secret",
        ),
    ] {
        let (status, answer) = post(&s, &s.f.admin, "/api/v1/alerts/channels", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        let message = answer["error"]["message"].as_str().expect("message");
        assert!(message.contains(want), "{answer}");
        assert!(!message.contains(WEBHOOK_SECRET), "{answer}");
    }
    let (status, _) = post(
        &s,
        &s.f.admin,
        "/api/v1/alerts/channels",
        json!({"name": "Bad Name", "kind": "webhook", "url": "https://example.com/",
               "secret": WEBHOOK_SECRET}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, answer) = post(
        &s,
        &s.f.admin,
        "/api/v1/alerts/routes",
        json!({"channel": "nope"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");

    let (status, created) = post(&s, &s.f.admin, "/api/v1/alerts/channels", good.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().expect("id");
    let (status, _) = post(&s, &s.f.admin, "/api/v1/alerts/channels", good).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, answer) = post(
        &s,
        &s.f.admin,
        "/api/v1/alerts/routes",
        json!({"channel": "h", "matchers": "env=prod,="}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .expect("message")
            .contains("position"),
        "{answer}"
    );

    // Stored encrypted, never returned.
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT secret_ciphertext FROM alert_channels WHERE id = $1")
            .bind(id)
            .fetch_one(&s.f.pool)
            .await
            .expect("ciphertext");
    assert!(
        !stored
            .windows(WEBHOOK_SECRET.len())
            .any(|w| w == WEBHOOK_SECRET.as_bytes())
    );
    assert!(!created.to_string().contains(WEBHOOK_SECRET));
    for token in [&s.f.admin, &s.f.viewer] {
        for uri in [
            "/api/v1/alerts/channels".to_owned(),
            format!("/api/v1/alerts/channels/{id}"),
        ] {
            let (status, answer) = get(&s, token, &uri).await;
            assert_eq!(status, StatusCode::OK);
            assert!(!answer.to_string().contains(WEBHOOK_SECRET), "{answer}");
        }
    }

    // Test: sent now, signed, the receiver's answer returned; a viewer may not.
    let uri = format!("/api/v1/alerts/channels/{id}/test");
    let (status, _) = post(&s, &s.f.viewer, &uri, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = req("POST", &uri).token(&s.f.admin).send(&s.app).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["status"], 200);
    let got = hook.taken();
    assert_eq!(got.len(), 1);
    assert_eq!(verify(&got[0])["kind"], "test");
    hook.down.store(true, Ordering::SeqCst);
    let (_, answer) = req("POST", &uri).token(&s.f.admin).send(&s.app).await;
    assert_eq!(answer["ok"], false);
    assert_eq!(answer["status"], 503);

    // A Slack URL is the secret: an unreachable one does not show in the error either.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let slack = add_channel(
        &s,
        json!({"name": "slack-down", "kind": "slack", "insecure_http": true,
               "url": format!("http://127.0.0.1:{closed}/services/T1/B1/SLACKSECRET")}),
    )
    .await;
    let (status, answer) = req("POST", &format!("/api/v1/alerts/channels/{slack}/test"))
        .token(&s.f.admin)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ok"], false, "{answer}");
    assert!(!answer.to_string().contains("SLACKSECRET"), "{answer}");
    let (_, history) = get(&s, &s.f.admin, "/api/v1/alerts/deliveries").await;
    assert!(!history.to_string().contains("SLACKSECRET"), "{history}");

    let (status, _) = req("DELETE", &format!("/api/v1/alerts/channels/{id}"))
        .token(&s.f.admin)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = get(&s, &s.f.viewer, &format!("/api/v1/alerts/channels/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn patch(s: &Setup, token: &str, uri: &str, body: Value) -> (StatusCode, Value) {
    req("PATCH", uri).token(token).json(body).send(&s.app).await
}

/// Deliveries enqueued for `channel` so far.
async fn enqueued(pool: &PgPool, channel: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM alert_deliveries WHERE channel_id = $1")
        .bind(channel)
        .fetch_one(pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn channel_edit_renames_disables_and_replaces_the_secret_admin_only_audited() {
    const NEW_SECRET: &str = "the replacement signing key";
    let s = setup().await;
    let pool = &s.f.pool;
    let (hook, base) = start_receiver().await;
    let id = add_channel(
        &s,
        json!({"name": "edit-me", "kind": "webhook", "url": format!("{base}/old"),
               "secret": WEBHOOK_SECRET, "insecure_http": true}),
    )
    .await;
    add_channel(
        &s,
        json!({"name": "taken", "kind": "alertmanager", "url": "https://am.example.com/"}),
    )
    .await;
    add_route(&s, json!({"channel": "edit-me"})).await;
    add_rule(&s, "conn_edit", 1, "warning").await;
    let uri = format!("/api/v1/alerts/channels/{id}");

    // Refusals: roles, then bodies. Nothing changes.
    for token in [&s.f.viewer, &s.f.scoped] {
        let (status, _) = patch(&s, token, &uri, json!({"enabled": false})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    for (body, want) in [
        (json!({"name": "Bad Name"}), StatusCode::BAD_REQUEST),
        (json!({"colour": "red"}), StatusCode::BAD_REQUEST),
        (json!({"timeout_secs": 0}), StatusCode::BAD_REQUEST),
        (json!({"name": "taken"}), StatusCode::CONFLICT),
        (
            json!({"insecure_http": false}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"url": "ftp://example.com/"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"secret": "short"}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"email_from": "a@example.com"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, answer) = patch(&s, &s.f.admin, &uri, body.clone()).await;
        assert_eq!(status, want, "{body} -> {answer}");
    }
    let (status, _) = patch(&s, &s.f.admin, "/api/v1/alerts/channels/999999", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, unchanged) = get(&s, &s.f.admin, &uri).await;
    assert_eq!(unchanged["name"], "edit-me");
    assert_eq!(unchanged["enabled"], true);

    // Disabled: a firing alert enqueues nothing for it.
    let (status, answer) = patch(&s, &s.f.admin, &uri, json!({"enabled": false})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["enabled"], false);
    let mut clock = Clock::new();
    clock.round(pool, &[1], 90.0).await;
    outbox::enqueue(pool).await.expect("enqueue");
    assert_eq!(enqueued(pool, id).await, 0);

    // Renamed, moved and re-keyed in one edit, then on again: the resolution goes out to the
    // new URL signed with the new key, and the old key no longer verifies.
    let (status, answer) = patch(
        &s,
        &s.f.admin,
        &uri,
        json!({"name": "edited", "url": format!("{base}/new"), "secret": NEW_SECRET,
               "enabled": true, "timeout_secs": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["name"], "edited");
    assert_eq!(answer["url"], format!("{base}/new"));
    assert_eq!(answer["enabled"], true);
    assert_eq!(answer["has_secret"], true);
    assert_eq!(answer["timeout_secs"], 5);
    assert!(!answer.to_string().contains(NEW_SECRET), "{answer}");
    let (_, listed) = get(&s, &s.f.viewer, "/api/v1/alerts/channels").await;
    assert!(!listed.to_string().contains(NEW_SECRET), "{listed}");
    let (status, answer) = req("POST", &format!("{uri}/test"))
        .token(&s.f.admin)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ok"], true, "{answer}");
    let got = hook.taken();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/new");
    assert_eq!(verify_with(&got[0], NEW_SECRET)["kind"], "test");
    assert!(
        !signed_with(&got[0], WEBHOOK_SECRET),
        "the old key no longer verifies"
    );

    // A rename alone keeps the secret.
    let (status, answer) = patch(&s, &s.f.admin, &uri, json!({"name": "edited-again"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["has_secret"], true);
    let (_, answer) = req("POST", &format!("{uri}/test"))
        .token(&s.f.admin)
        .send(&s.app)
        .await;
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(verify_with(&hook.taken()[1], NEW_SECRET)["kind"], "test");

    // Slack: a new URL is a new secret; the shown URL never holds its path.
    let slack = add_channel(
        &s,
        json!({"name": "slack-edit", "kind": "slack", "insecure_http": true,
               "url": format!("{base}/services/T1/B1/OLDSLACKPATH")}),
    )
    .await;
    let (status, answer) = patch(
        &s,
        &s.f.admin,
        &format!("/api/v1/alerts/channels/{slack}"),
        json!({"url": format!("{base}/services/T2/B2/NEWSLACKPATH")}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(!answer.to_string().contains("SLACKPATH"), "{answer}");
    let (_, answer) = req("POST", &format!("/api/v1/alerts/channels/{slack}/test"))
        .token(&s.f.admin)
        .send(&s.app)
        .await;
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(
        hook.taken().last().expect("slack test").path,
        "/services/T2/B2/NEWSLACKPATH"
    );

    // Audited, refusals included; no secret in the audit log.
    let audit: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT actor, outcome, coalesce(error, '') FROM audit_log \
         WHERE action = 'PATCH /api/v1/alerts/channels/{id}' ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("audit");
    assert!(
        audit.iter().any(|(a, o, _)| a == "admin" && o == "success"),
        "{audit:?}"
    );
    assert!(
        audit.iter().any(|(a, o, _)| a == "viewer" && o == "denied"),
        "{audit:?}"
    );
    let everything: String =
        sqlx::query_scalar("SELECT coalesce(string_agg(audit_log::text, ' '), '') FROM audit_log")
            .fetch_one(pool)
            .await
            .expect("audit text");
    for secret in [NEW_SECRET, WEBHOOK_SECRET, "NEWSLACKPATH", "OLDSLACKPATH"] {
        assert!(!everything.contains(secret), "{secret} in the audit log");
    }
}

#[tokio::test]
async fn route_edit_changes_what_a_channel_gets_admin_only() {
    let s = setup().await;
    let pool = &s.f.pool;
    let (_hook, base) = start_receiver().await;
    let channel = add_channel(
        &s,
        json!({"name": "routed", "kind": "webhook", "url": format!("{base}/r"),
               "secret": WEBHOOK_SECRET, "insecure_http": true}),
    )
    .await;
    let (status, route) = post(
        &s,
        &s.f.admin,
        "/api/v1/alerts/routes",
        json!({"channel": "routed", "min_severity": "critical"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{route}");
    let uri = format!("/api/v1/alerts/routes/{}", route["id"]);
    add_rule(&s, "conn_routed", 1, "warning").await;

    for token in [&s.f.viewer, &s.f.scoped] {
        let (status, _) = patch(&s, token, &uri, json!({"min_severity": "info"})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    for (body, want, needle) in [
        (
            json!({"matchers": "team=db,="}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "position",
        ),
        (
            json!({"repeat_secs": 30}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "repeat_secs",
        ),
        (json!({"repeat_secs": 700_000}), StatusCode::BAD_REQUEST, ""),
        (json!({"channel": "other"}), StatusCode::BAD_REQUEST, ""),
        (json!({"min_severity": "page"}), StatusCode::BAD_REQUEST, ""),
    ] {
        let (status, answer) = patch(&s, &s.f.admin, &uri, body.clone()).await;
        assert_eq!(status, want, "{body} -> {answer}");
        assert!(answer.to_string().contains(needle), "{body} -> {answer}");
    }
    let (status, _) = patch(&s, &s.f.admin, "/api/v1/alerts/routes/999999", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Critical only: the warning fires and the channel gets nothing.
    let mut clock = Clock::new();
    clock.round(pool, &[1], 90.0).await;
    outbox::enqueue(pool).await.expect("enqueue");
    assert_eq!(enqueued(pool, channel).await, 0);
    // Warnings of team db, repeated hourly: the next state change goes out.
    let (status, answer) = patch(
        &s,
        &s.f.admin,
        &uri,
        json!({"min_severity": "warning", "matchers": "team=db", "repeat_secs": 3600}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["min_severity"], "warning");
    assert_eq!(answer["matchers"], "team=db");
    assert_eq!(answer["repeat_secs"], 3600);
    assert_eq!(answer["send_resolved"], true);
    clock.round(pool, &[1], 50.0).await;
    outbox::enqueue(pool).await.expect("enqueue");
    assert_eq!(
        enqueued(pool, channel).await,
        0,
        "resolved of an alert it was not told of"
    );
    clock.round(pool, &[1], 95.0).await;
    outbox::enqueue(pool).await.expect("enqueue");
    assert_eq!(enqueued(pool, channel).await, 1);
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'PATCH /api/v1/alerts/routes/{id}' \
         AND actor = 'admin' AND outcome = 'success'",
    )
    .fetch_one(pool)
    .await
    .expect("audit");
    assert_eq!(audited, 1);
}

/// `prometheus-alertmanager` (scripts/deps.sh --test installs it) on a free port, killed on
/// drop.
struct Alertmanager {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    fn start() -> Alertmanager {
        let bin = ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("prometheus-alertmanager is installed (scripts/deps.sh --test)");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: none\nreceivers:\n  - name: none\n",
        )
        .expect("config");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = std::process::Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start alertmanager");
        Alertmanager {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// Waits for `/-/ready` (a condition, not a fixed sleep).
    async fn wait_ready(&self) {
        for _ in 0..600 {
            if let Ok(r) = reqwest::get(format!("{}/-/ready", self.url)).await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("alertmanager did not become ready");
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the in-test SMTP server saw.
#[derive(Debug, Default, Clone)]
struct Mail {
    /// Commands other than STARTTLS, EHLO and QUIT sent before TLS (must stay empty).
    in_clear: Vec<String>,
    auth: Option<String>,
    rcpt: Vec<String>,
    data: String,
}

/// A small ESMTP server on a real socket: offers only STARTTLS until TLS is up (with a
/// certificate of a test CA), then AUTH PLAIN, and keeps every message.
async fn start_smtp(ca: &lasect_pki::CertificateAuthority) -> (u16, Arc<Mutex<Vec<Mail>>>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let issued = ca
        .issue_server(
            "127.0.0.1",
            &["127.0.0.1".to_owned()],
            Duration::from_secs(3600),
        )
        .expect("server certificate");
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("certificate");
    let key =
        PrivateKeyDer::from_pem_slice(issued.key_pem.expose_secret().as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let kept = mails.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let kept = kept.clone();
            tokio::spawn(async move {
                if let Some(mail) = smtp_session(tcp, acceptor).await {
                    kept.lock().expect("lock").push(mail);
                }
            });
        }
    });
    (port, mails)
}

async fn smtp_session(
    tcp: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
) -> Option<Mail> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut mail = Mail::default();
    let mut clear = BufReader::new(tcp);
    clear
        .get_mut()
        .write_all(b"220 test ESMTP\r\n")
        .await
        .ok()?;
    loop {
        let mut line = String::new();
        if clear.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let verb = line.trim_end().to_ascii_uppercase();
        let answer: &[u8] = if verb.starts_with("EHLO") {
            b"250-test\r\n250 STARTTLS\r\n"
        } else if verb == "STARTTLS" {
            clear.get_mut().write_all(b"220 go ahead\r\n").await.ok()?;
            break;
        } else if verb == "QUIT" {
            return None;
        } else {
            mail.in_clear.push(line.trim_end().to_owned());
            b"530 issue STARTTLS first\r\n"
        };
        clear.get_mut().write_all(answer).await.ok()?;
    }
    let tls = acceptor.accept(clear.into_inner()).await.ok()?;
    let mut s = BufReader::new(tls);
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await.ok()? == 0 {
            return Some(mail);
        }
        let text = line.trim_end().to_owned();
        let verb = text.to_ascii_uppercase();
        let answer: &[u8] = if verb.starts_with("EHLO") {
            b"250-test\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"
        } else if verb.starts_with("AUTH PLAIN ") {
            mail.auth = Some(text[11..].to_owned());
            b"235 authenticated\r\n"
        } else if verb.starts_with("MAIL FROM") {
            b"250 ok\r\n"
        } else if verb.starts_with("RCPT TO") {
            mail.rcpt.push(text[8..].to_owned());
            b"250 ok\r\n"
        } else if verb == "DATA" {
            s.get_mut().write_all(b"354 go\r\n").await.ok()?;
            loop {
                let mut l = String::new();
                if s.read_line(&mut l).await.ok()? == 0 {
                    return None;
                }
                if l == ".\r\n" {
                    break;
                }
                mail.data.push_str(&l);
            }
            b"250 queued\r\n"
        } else if verb == "QUIT" {
            s.get_mut().write_all(b"221 bye\r\n").await.ok()?;
            return Some(mail);
        } else {
            b"250 ok\r\n"
        };
        s.get_mut().write_all(answer).await.ok()?;
    }
}

#[tokio::test]
async fn email_goes_over_starttls_with_plain_and_html_bodies() {
    use base64::Engine;
    let s = setup().await;
    let ca = lasect_pki::CertificateAuthority::generate("lasect test mail CA").expect("CA");
    let (port, mails) = start_smtp(&ca).await;
    let url = format!("smtp://127.0.0.1:{port}");
    // Bad settings: clear 422s.
    for (body, want) in [
        (
            json!({"name": "m", "kind": "email", "url": "https://mail.example.com",
                   "email_from": "a@example.com", "email_to": ["b@example.com"]}),
            "smtp://",
        ),
        (
            json!({"name": "m", "kind": "email", "url": url,
                   "email_from": "not an address", "email_to": ["b@example.com"]}),
            "email_from",
        ),
        (
            json!({"name": "m", "kind": "email", "url": url, "email_from": "a@example.com"}),
            "email_to",
        ),
        (
            json!({"name": "m", "kind": "webhook", "url": "https://example.com/",
                   "secret": WEBHOOK_SECRET, "email_from": "a@example.com"}),
            "email channels",
        ),
    ] {
        let (status, answer) = post(&s, &s.f.admin, "/api/v1/alerts/channels", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .expect("message")
                .contains(want),
            "{answer}"
        );
    }
    let id = add_channel(
        &s,
        json!({"name": "mail", "kind": "email", "url": url,
               "email_from": "Lasect <lasect@example.com>", "email_to": ["dba@example.com"],
               "smtp_username": "lasect", "secret": "smtp password 1", "ca_pem": ca.cert_pem()}),
    )
    .await;
    let (_, shown) = get(&s, &s.f.viewer, &format!("/api/v1/alerts/channels/{id}")).await;
    assert!(!shown.to_string().contains("smtp password 1"), "{shown}");
    assert_eq!(shown["email_to"], json!(["dba@example.com"]));
    add_route(&s, json!({"channel": "mail"})).await;
    add_rule(&s, "conn_mail", 1, "critical").await;
    let pool = &s.f.pool;
    Clock::new().round(pool, &[1], 97.0).await;
    outbox::enqueue(pool).await.expect("enqueue");
    outbox::deliver_due(pool, Some(&s.keyring()))
        .await
        .expect("deliver");
    let state: (String, Option<String>) =
        sqlx::query_as("SELECT state, last_error FROM alert_deliveries WHERE channel_id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .expect("delivery");
    assert_eq!(state.0, "delivered", "{state:?}");
    let mails = mails.lock().expect("lock").clone();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert!(mail.in_clear.is_empty(), "{mail:?}");
    let auth = base64::engine::general_purpose::STANDARD
        .decode(mail.auth.as_deref().expect("AUTH PLAIN"))
        .expect("base64");
    assert_eq!(auth, b"\0lasect\0smtp password 1");
    assert_eq!(mail.rcpt, ["<dba@example.com>"]);
    assert!(
        mail.data.contains("Subject: [FIRING] conn_mail (critical)"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("multipart/alternative"), "{}", mail.data);
    assert!(mail.data.contains("text/plain"), "{}", mail.data);
    assert!(mail.data.contains("text/html"), "{}", mail.data);
    // The runbook's `<who> & why` is escaped in the HTML part.
    assert!(
        mail.data.contains("find &lt;who&gt; &amp; why"),
        "{}",
        mail.data
    );

    // A server whose certificate the channel's CA did not sign: nothing is sent.
    let other = lasect_pki::CertificateAuthority::generate("another CA").expect("CA");
    let (port2, mails2) = start_smtp(&other).await;
    let id2 = add_channel(
        &s,
        json!({"name": "mail2", "kind": "email", "url": format!("smtp://127.0.0.1:{port2}"),
               "email_from": "lasect@example.com", "email_to": ["dba@example.com"],
               "smtp_username": "lasect", "secret": "smtp password 2", "ca_pem": ca.cert_pem()}),
    )
    .await;
    let (_, answer) = req("POST", &format!("/api/v1/alerts/channels/{id2}/test"))
        .token(&s.f.admin)
        .send(&s.app)
        .await;
    assert_eq!(answer["ok"], false, "{answer}");
    assert!(
        mails2
            .lock()
            .expect("lock")
            .iter()
            .all(|m| m.auth.is_none() && m.data.is_empty())
    );
}
