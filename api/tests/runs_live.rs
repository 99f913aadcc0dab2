//! Runs on the live WebSocket, over a real HTTP server and a real store: the status changes
//! and progress a run goes through, written with the statements ingest and the API execute
//! ([`Transition`], [`lasect_runs::progress_sql`]) and announced by the store's status trigger
//! and the progress statement, reach the clients subscribed to runs who may
//! see the run, with its error only for those who may read its details; a client who cannot
//! view the instance gets nothing of it; a bad subscription gets an error that says why.

use crate::common;
use crate::common::live::{Ws, connect, next, serve};

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use lasect_api::auth::Role;
use lasect_api::{AppState, router};
use lasect_runs::Transition;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A bound on waiting for the close, not a measurement.
const PATIENCE: Duration = Duration::from_secs(30);

async fn send(ws: &mut Ws, message: Value) {
    ws.send(Message::text(message.to_string()))
        .await
        .expect("send");
}

async fn subscribe_runs(ws: &mut Ws, message: Value) -> Value {
    send(ws, message).await;
    let reply = next(ws).await;
    assert_eq!(reply["type"], "subscribed_runs", "{reply}");
    assert_eq!(reply["runs"], true, "{reply}");
    reply
}

/// The next `run` message's run.
async fn next_run(ws: &mut Ws) -> Value {
    let m = next(ws).await;
    assert_eq!(m["type"], "run", "{m}");
    m["run"].clone()
}

/// (id, status, change) of a pushed run.
fn summary(run: &Value) -> (i64, String, String) {
    (
        run["id"].as_i64().expect("id"),
        run["status"].as_str().expect("status").to_owned(),
        run["change"].as_str().expect("change").to_owned(),
    )
}

async fn queued_run(pool: &PgPool, instance: i64, agent: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO runs (kind, instance_id, agent_id, params, requested_by, timeout_ms, \
         max_rows, max_bytes, expires_at) \
         VALUES ('backup', $1, $2, '{\"stanza\": \"main\", \"type\": \"full\"}', 'user:root', \
                 600000, 10, 1000, now() + interval '1 hour') RETURNING id",
    )
    .bind(instance)
    .bind(agent)
    .fetch_one(pool)
    .await
    .expect("queue a run")
}

/// Ingest claims the agent's queued runs (as dispatched).
async fn claim(pool: &PgPool, agent: &str) {
    sqlx::query(Transition::Claim.sql())
        .bind(vec![agent.to_owned()])
        .bind("ingest-test")
        .execute(pool)
        .await
        .expect("claim");
}

async fn close_reason(ws: &mut Ws) -> (CloseCode, String) {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code, frame.reason.to_string()),
            Some(Ok(Message::Close(None))) => panic!("closed without a reason"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("closed without a frame: {e}"),
            None => panic!("closed without a frame"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_changes_reach_subscribers_who_may_see_the_run() {
    let (_pg, pool) = common::migrated_store().await;
    sqlx::raw_sql(
        "INSERT INTO agents (id) VALUES ('db-01'), ('db-02');
         INSERT INTO instances (name, agent_id, labels) VALUES
             ('prod', 'db-01', '{\"env\": \"prod\"}'),
             ('staging', 'db-02', '{\"env\": \"staging\"}');",
    )
    .execute(&pool)
    .await
    .expect("seed");
    let admin = common::user(&pool, "root", Some(Role::Admin), &[]).await;
    let prod_viewer = common::user(&pool, "pat", None, &[("env", "prod", Role::Viewer)]).await;
    let staging_viewer =
        common::user(&pool, "sam", None, &[("env", "staging", Role::Viewer)]).await;
    let (port, _stop) = serve(router(AppState::new(pool.clone())));

    let backup = queued_run(&pool, 1, "db-01").await;
    let staged = queued_run(&pool, 2, "db-02").await;
    let mut everyone = connect(port, Some(&admin)).await;
    let mut prod_only = connect(port, Some(&prod_viewer)).await;
    let mut staging_only = connect(port, Some(&staging_viewer)).await;
    let mut one_run = connect(port, Some(&admin)).await;
    let reply = subscribe_runs(&mut everyone, json!({"type": "subscribe_runs"})).await;
    assert_eq!(
        reply["filter"],
        json!({"instances": [], "runs": [], "kinds": []})
    );
    subscribe_runs(&mut prod_only, json!({"type": "subscribe_runs"})).await;
    subscribe_runs(
        &mut staging_only,
        json!({"type": "subscribe_runs", "kinds": ["backup"]}),
    )
    .await;
    subscribe_runs(
        &mut one_run,
        json!({"type": "subscribe_runs", "runs": [staged], "instances": [2]}),
    )
    .await;

    // The prod backup's life, as ingest writes it.
    claim(&pool, "db-01").await;
    let started = sqlx::query(Transition::Start.sql())
        .bind(backup)
        .bind("db-01")
        .bind(None::<i32>)
        .execute(&pool)
        .await
        .expect("start");
    assert_eq!(started.rows_affected(), 1);
    let reported = sqlx::query(lasect_runs::progress_sql())
        .bind(backup)
        .bind("db-01")
        .bind(json!({"stage": "copy", "percent": 42.5, "bytes_done": 420, "bytes_total": 1000}))
        .execute(&pool)
        .await
        .expect("progress");
    assert_eq!(reported.rows_affected(), 1);
    sqlx::query(Transition::Finish.sql())
        .bind(backup)
        .bind("db-01")
        .bind("failed")
        .bind(0_i64)
        .bind(0_i64)
        .bind(false)
        .bind(0_i32)
        .bind(Some("pgbackrest: archive-push of s3cret-host failed"))
        .bind(None::<Value>)
        .bind(None::<Value>)
        .bind(3600_i64)
        .fetch_all(&pool)
        .await
        .expect("finish");
    // Then the staging run is claimed and a queued prod run cancelled through the API's
    // statement.
    let cancelled = queued_run(&pool, 1, "db-01").await;
    claim(&pool, "db-02").await;
    sqlx::query(Transition::Cancel.sql())
        .bind(cancelled)
        .execute(&pool)
        .await
        .expect("cancel");
    // And one whose agent never took it expires (the store's function, not a statement here).
    let expired = queued_run(&pool, 1, "db-01").await;
    sqlx::query("UPDATE runs SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(expired)
        .execute(&pool)
        .await
        .expect("past its queue timeout");
    sqlx::query(Transition::Expire.sql())
        .execute(&pool)
        .await
        .expect("expire");

    let life = |id| {
        vec![
            (id, "dispatched".to_owned(), "status".to_owned()),
            (id, "running".to_owned(), "status".to_owned()),
            (id, "running".to_owned(), "progress".to_owned()),
            (id, "failed".to_owned(), "status".to_owned()),
        ]
    };
    let mut admin_saw = Vec::new();
    for _ in 0..9 {
        admin_saw.push(next_run(&mut everyone).await);
    }
    // In the order of the commits; a run created after the subscription is announced too
    // (V40).
    let mut want = life(backup);
    want.push((cancelled, "queued".to_owned(), "status".to_owned()));
    want.push((staged, "dispatched".to_owned(), "status".to_owned()));
    want.push((cancelled, "cancelled".to_owned(), "status".to_owned()));
    want.push((expired, "queued".to_owned(), "status".to_owned()));
    want.push((expired, "expired".to_owned(), "status".to_owned()));
    let got: Vec<_> = admin_saw.iter().map(summary).collect();
    assert_eq!(got, want, "{admin_saw:?}");
    let progress = &admin_saw[2];
    assert_eq!(
        progress["progress"],
        json!({"stage": "copy", "percent": 42.5, "bytes_done": 420, "bytes_total": 1000}),
        "{progress}"
    );
    assert_eq!(progress["kind"], "backup");
    assert_eq!(progress["instance_id"], 1);
    assert_eq!(progress["instance_name"], "prod");
    assert!(progress["at"].is_string(), "{progress}");
    assert_eq!(
        admin_saw[3]["error"], "pgbackrest: archive-push of s3cret-host failed",
        "an admin reads the run's error, as in GET /api/v1/runs/{{id}}"
    );

    // The prod viewer follows the prod runs' metadata (the progress too), never their error,
    // and nothing of staging: its next message after the failure is the new prod run.
    let mut viewer_saw = Vec::new();
    for _ in 0..8 {
        viewer_saw.push(next_run(&mut prod_only).await);
    }
    let got: Vec<_> = viewer_saw.iter().map(summary).collect();
    let mut want = life(backup);
    want.push((cancelled, "queued".to_owned(), "status".to_owned()));
    want.push((cancelled, "cancelled".to_owned(), "status".to_owned()));
    want.push((expired, "queued".to_owned(), "status".to_owned()));
    want.push((expired, "expired".to_owned(), "status".to_owned()));
    assert_eq!(got, want, "{viewer_saw:?}");
    assert_eq!(viewer_saw[2]["progress"]["percent"], 42.5);
    for run in &viewer_saw {
        assert!(run.get("error").is_none(), "a viewer got the error: {run}");
    }

    // The staging viewer sees none of prod's: its first message is the staging run's.
    let first = next_run(&mut staging_only).await;
    assert_eq!(
        summary(&first),
        (staged, "dispatched".to_owned(), "status".to_owned())
    );
    // And the client following one run gets only that one.
    let first = next_run(&mut one_run).await;
    assert_eq!(summary(&first).0, staged, "{first}");

    // Unsubscribed: the next thing is the reply.
    send(&mut everyone, json!({"type": "unsubscribe_runs"})).await;
    let mut reply = next(&mut everyone).await;
    while reply["type"] == "run" {
        reply = next(&mut everyone).await;
    }
    assert_eq!(reply, json!({"type": "subscribed_runs", "runs": false}));
}

/// A run's creation (status `queued`, the store's trigger `runs_notify_created`, V40) reaches
/// the subscribers who may see the run, as a status change; one who cannot view its instance
/// is not told of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_run_is_announced_only_to_who_may_see_it() {
    let (_pg, pool) = common::migrated_store().await;
    sqlx::raw_sql(
        "INSERT INTO agents (id) VALUES ('db-01'), ('db-02');
         INSERT INTO instances (name, agent_id, labels) VALUES
             ('prod', 'db-01', '{\"env\": \"prod\"}'),
             ('staging', 'db-02', '{\"env\": \"staging\"}');",
    )
    .execute(&pool)
    .await
    .expect("seed");
    let admin = common::user(&pool, "root", Some(Role::Admin), &[]).await;
    let staging_viewer =
        common::user(&pool, "sam", None, &[("env", "staging", Role::Viewer)]).await;
    let (port, _stop) = serve(router(AppState::new(pool.clone())));
    let mut everyone = connect(port, Some(&admin)).await;
    let mut staging_only = connect(port, Some(&staging_viewer)).await;
    subscribe_runs(&mut everyone, json!({"type": "subscribe_runs"})).await;
    subscribe_runs(&mut staging_only, json!({"type": "subscribe_runs"})).await;

    // Created after both subscribed: first a prod run, then a staging one.
    let prod = queued_run(&pool, 1, "db-01").await;
    let staged = queued_run(&pool, 2, "db-02").await;

    let first = next_run(&mut everyone).await;
    assert_eq!(
        summary(&first),
        (prod, "queued".to_owned(), "status".to_owned())
    );
    assert_eq!(first["kind"], "backup");
    assert_eq!(first["instance_name"], "prod");
    assert_eq!(first["progress"], Value::Null);
    assert_eq!(first["cancel_requested"], false);
    let second = next_run(&mut everyone).await;
    assert_eq!(
        summary(&second),
        (staged, "queued".to_owned(), "status".to_owned())
    );
    // The staging viewer may not view prod: the first run it hears of is the staging one.
    let seen = next_run(&mut staging_only).await;
    assert_eq!(
        summary(&seen),
        (staged, "queued".to_owned(), "status".to_owned()),
        "{seen}"
    );
    // The queued-run wake-up of ingest is not replaced: one run, one announcement on each.
    let woken: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'runs'::regclass \
         AND tgname IN ('runs_notify_queued', 'runs_notify_created')",
    )
    .fetch_one(&pool)
    .await
    .expect("triggers");
    assert_eq!(woken, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_run_subscription_gets_an_error_that_says_why() {
    let (_pg, pool) = common::migrated_store().await;
    sqlx::raw_sql(
        "INSERT INTO agents (id) VALUES ('db-01');
         INSERT INTO instances (name, agent_id, labels) VALUES
             ('prod', 'db-01', '{\"env\": \"prod\"}'), ('staging', 'db-01', '{\"env\": \"staging\"}');",
    )
    .execute(&pool)
    .await
    .expect("seed");
    let prod_viewer = common::user(&pool, "pat", None, &[("env", "prod", Role::Viewer)]).await;
    let (port, _stop) = serve(router(AppState::new(pool.clone())));
    let mut ws = connect(port, Some(&prod_viewer)).await;

    let cases = [
        (
            json!({"type": "subscribe_runs", "kinds": ["format_disk"]}),
            "unknown_kind",
            "format_disk",
        ),
        (
            json!({"type": "subscribe_runs", "instances": [99]}),
            "not_found",
            "99",
        ),
        (
            json!({"type": "subscribe_runs", "instances": [2]}),
            "",
            "instance 2",
        ),
        (
            json!({"type": "subscribe_runs", "runs": [0]}),
            "invalid_message",
            "run id 0",
        ),
    ];
    for (message, code, mentions) in cases {
        send(&mut ws, message.clone()).await;
        let reply = next(&mut ws).await;
        assert_eq!(reply["type"], "error", "{message}: {reply}");
        if !code.is_empty() {
            assert_eq!(reply["error"]["code"], code, "{message}: {reply}");
        }
        let text = reply["error"]["message"].as_str().expect("message");
        assert!(text.contains(mentions), "{message}: {reply}");
    }
    // The stream is still usable after an error.
    subscribe_runs(
        &mut ws,
        json!({"type": "subscribe_runs", "instances": [1], "kinds": ["backup", "sql"]}),
    )
    .await;

    // A message that is not one: closed, with the reason.
    send(
        &mut ws,
        json!({"type": "subscribe_runs", "kinds": "backup"}),
    )
    .await;
    let (code, reason) = close_reason(&mut ws).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("invalid message"), "{reason}");
}
