//! Alert state changes on the live WebSocket, over a real HTTP server and a real store: an
//! evaluation round's changes (pending, firing, resolved) reach every client subscribed to
//! alerts who may see the instance, and a viewer by label never gets another instance's.

use crate::common;
use crate::common::live::{Ws, connect, next, serve};

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use futures::SinkExt;
use lasect_api::alerts::evaluator::tick;
use lasect_api::auth::Role;
use lasect_api::{AppState, router};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

async fn subscribe_alerts(ws: &mut Ws) {
    ws.send(Message::text(
        json!({"type": "subscribe_alerts"}).to_string(),
    ))
    .await
    .expect("send");
    let reply = next(ws).await;
    assert_eq!(reply["type"], "subscribed_alerts", "{reply}");
    assert_eq!(reply["alerts"], true, "{reply}");
}

/// (rule, instance, from, to) of the next alert message.
async fn next_change(ws: &mut Ws) -> (String, i64, String, String) {
    let m = next(ws).await;
    assert_eq!(m["type"], "alert", "{m}");
    let e = &m["event"];
    (
        e["rule"].as_str().expect("rule").to_owned(),
        e["instance_id"].as_i64().expect("instance"),
        e["from_state"].as_str().expect("from").to_owned(),
        e["to_state"].as_str().expect("to").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_reach_subscribed_clients_who_may_see_the_instance() {
    let (_pg, pool) = common::migrated_store().await;
    sqlx::raw_sql(
        "SELECT lasect_ensure_partitions(current_date - 1, current_date + 1);
         INSERT INTO agents (id) VALUES ('db-01');
         INSERT INTO instances (name, agent_id, labels) VALUES
             ('prod', 'db-01', '{\"env\": \"prod\"}'),
             ('staging', 'db-01', '{\"env\": \"staging\"}');
         UPDATE alert_rules SET enabled = false WHERE source = 'default';",
    )
    .execute(&pool)
    .await
    .expect("seed");
    let admin = common::user(&pool, "admin", Some(Role::Admin), &[]).await;
    let prod_viewer = common::user(&pool, "pat", None, &[("env", "prod", Role::Viewer)]).await;
    let app = router(AppState::new(pool.clone()));
    // Pending for 15 s, then firing: every state is seen.
    for instance in [1, 2] {
        let (status, answer) = common::http::req("POST", "/api/v1/alerts/rules")
            .token(&admin)
            .json(json!({
                "name": format!("conn_{instance}"),
                "severity": "warning",
                "scope": {"instance_id": instance},
                "for_secs": 15,
                "condition": {
                    "kind": "threshold", "family": "activity",
                    "column": "connection_use_percent", "agg": "last", "window_secs": 60,
                    "op": ">", "threshold": 80
                }
            }))
            .send(&app)
            .await;
        assert_eq!(status, axum::http::StatusCode::CREATED, "{answer}");
    }
    let (port, _stop) = serve(app);

    let mut everyone = connect(port, Some(&admin)).await;
    let mut prod_only = connect(port, Some(&prod_viewer)).await;
    let mut not_subscribed = connect(port, Some(&admin)).await;
    subscribe_alerts(&mut everyone).await;
    subscribe_alerts(&mut prod_only).await;

    let mut at = Utc::now() - TimeDelta::minutes(10);
    for percent in [90.0, 95.0, 50.0] {
        at += TimeDelta::seconds(20);
        for instance in [1, 2] {
            common::insert_activity(&pool, instance, at, percent).await;
        }
        let report = tick(&pool, Duration::from_secs(1), Some(at), "test")
            .await
            .expect("tick");
        assert!(report.evaluated && report.errors == 0, "{report:?}");
    }

    let want = |i: i64| {
        [
            ("inactive", "pending"),
            ("pending", "firing"),
            ("firing", "resolved"),
        ]
        .map(|(f, t)| (format!("conn_{i}"), i, f.to_owned(), t.to_owned()))
    };
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(next_change(&mut everyone).await);
    }
    for i in [1, 2] {
        let mine: Vec<_> = got.iter().filter(|c| c.1 == i).cloned().collect();
        assert_eq!(mine, want(i), "{got:?}");
    }
    // The prod viewer gets instance 1's three changes and nothing of staging's in between.
    let mut prod = Vec::new();
    for _ in 0..3 {
        prod.push(next_change(&mut prod_only).await);
    }
    assert_eq!(prod, want(1));

    // Nothing was pushed to a client that never subscribed to alerts: the reply to its first
    // message is the first thing it reads, after all the rounds above.
    not_subscribed
        .send(Message::text(
            json!({"type": "unsubscribe_alerts"}).to_string(),
        ))
        .await
        .expect("send");
    let reply = next(&mut not_subscribed).await;
    assert_eq!(reply["type"], "subscribed_alerts", "{reply}");
    assert_eq!(reply["alerts"], false, "{reply}");
    // And a third round's changes: the prod viewer's next message is again about prod.
    at += TimeDelta::seconds(20);
    for instance in [2, 1] {
        common::insert_activity(&pool, instance, at, 99.0).await;
    }
    tick(&pool, Duration::from_secs(1), Some(at), "test")
        .await
        .expect("tick");
    assert_eq!(
        next_change(&mut prod_only).await,
        (
            "conn_1".to_owned(),
            1,
            "resolved".to_owned(),
            "pending".to_owned()
        )
    );
}
