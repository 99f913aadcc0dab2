//! The live WebSocket over a real HTTP server and a real store: announcements made the way
//! ingest makes them (`pg_notify` on `lasect_samples` in the writing transaction) reach the
//! clients subscribed to them, and only those; garbage and slow clients lose only their own
//! connection. (`e2e/tests/live.rs` covers a sample pushed by a real agent through ingest.)

use crate::common;
use crate::common::live::{Ws, connect, next};

use lasect_api::auth::Role;
use lasect_api::{AppState, router};

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::{SinkExt, StreamExt};
use lasect_api::server::serve_on;
use lasect_testkit::PgCluster;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// How long a test waits for something that should come (a bound, not a measurement).
const PATIENCE: Duration = Duration::from_secs(30);

struct Server {
    _pg: PgCluster,
    pool: PgPool,
    port: u16,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn server() -> Server {
    serve(None).await
}

/// The API on a fresh store; every request carries an admin's token, or with `scoped` the
/// token of a user who is only viewer on instances labelled env=prod (instance 1).
async fn serve(scoped: Option<()>) -> Server {
    let (pg, pool) = common::migrated_store().await;
    sqlx::raw_sql(
        "SELECT lasect_ensure_partitions(current_date - 1, current_date + 1);
         INSERT INTO agents (id) VALUES ('db-01'), ('db-02');
         INSERT INTO instances (name, agent_id) VALUES ('main', 'db-01'), ('main', 'db-02');",
    )
    .execute(&pool)
    .await
    .expect("seed");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = match scoped {
        None => common::admin_app(&pool).await,
        Some(()) => {
            sqlx::query("UPDATE instances SET labels = '{\"env\":\"prod\"}' WHERE id = 1")
                .execute(&pool)
                .await
                .expect("label");
            let token = common::user(&pool, "pat", None, &[("env", "prod", Role::Viewer)]).await;
            common::with_bearer(router(AppState::new(pool.clone())), &token)
        }
    };
    tokio::spawn(async move {
        let _ = serve_on(listener, app, None, async {
            let _ = stopped.await;
        })
        .await;
    });
    Server {
        _pg: pg,
        pool,
        port,
        _stop: stop,
    }
}

/// A client whose socket receive buffer is small, so a client that does not read really falls
/// behind (loopback buffers otherwise grow to tens of MB and absorb the whole test stream).
async fn connect_small_buffer(port: u16) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    let stream = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect");
    let (ws, _) = tokio_tungstenite::client_async(
        format!("ws://127.0.0.1:{port}/api/v1/live"),
        MaybeTlsStream::Plain(stream),
    )
    .await
    .expect("websocket");
    ws
}

async fn send(ws: &mut Ws, message: Value) {
    ws.send(Message::text(message.to_string()))
        .await
        .expect("send");
}

/// Reads until the server closes; returns the close code (None: closed without a frame).
async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// Stores `rows` database rows of `instance` at `time` and announces them like ingest does.
async fn push_database(pool: &PgPool, instance: i64, time: DateTime<Utc>, rows: i32) {
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO metric_database (time, instance_id, datid, datname, xact_commit)
         SELECT $1, $2, g, 'db' || g, g FROM generate_series(1, $3) AS g",
    )
    .bind(time)
    .bind(instance)
    .bind(rows)
    .execute(&mut *tx)
    .await
    .expect("insert");
    notify(
        &mut tx,
        json!({"instance": instance, "family": "database"}),
        time,
    )
    .await;
    tx.commit().await.expect("commit");
}

async fn notify(tx: &mut sqlx::PgConnection, scope: Value, time: DateTime<Utc>) {
    let mut entry = scope;
    entry["from_us"] = json!(time.timestamp_micros());
    entry["to_us"] = json!(time.timestamp_micros());
    sqlx::query("SELECT pg_notify('lasect_samples', $1)")
        .bind(json!({"v": 1, "samples": [entry]}).to_string())
        .execute(tx)
        .await
        .expect("notify");
}

#[tokio::test]
async fn subscriptions_are_limited_to_the_instances_the_caller_may_see() {
    let s = serve(Some(())).await;
    let mut ws = connect(s.port, None).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "instances": [2], "families": ["database"]}),
    )
    .await;
    let reply = next(&mut ws).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
    send(
        &mut ws,
        json!({"type": "subscribe", "instances": [1], "families": ["database"]}),
    )
    .await;
    assert_eq!(
        next(&mut ws).await,
        json!({"type": "subscribed", "subscriptions": [{"instance": 1, "family": "database"}]})
    );
}

#[tokio::test]
async fn subscribed_samples_arrive_and_nothing_else() {
    let s = server().await;
    let mut ws = connect(s.port, None).await;

    send(
        &mut ws,
        json!({"type": "subscribe", "instances": [1], "families": ["nope"]}),
    )
    .await;
    let reply = next(&mut ws).await;
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["error"]["code"], "unknown_family");
    send(
        &mut ws,
        json!({"type": "subscribe", "instances": [99], "families": ["database"]}),
    )
    .await;
    assert_eq!(next(&mut ws).await["error"]["code"], "not_found");

    send(
        &mut ws,
        json!({"type": "subscribe", "instances": [1], "families": ["database", "host_cpu"]}),
    )
    .await;
    let reply = next(&mut ws).await;
    assert_eq!(
        reply,
        json!({"type": "subscribed", "subscriptions": [
            {"instance": 1, "family": "database"}, {"instance": 1, "family": "host_cpu"}]})
    );

    let t = Utc::now() - TimeDelta::seconds(5);
    // Instance 2 is not subscribed: never delivered (the next message proves it).
    push_database(&s.pool, 2, t, 1).await;
    push_database(&s.pool, 1, t, 2).await;
    let samples = next(&mut ws).await;
    assert_eq!(samples["type"], "samples");
    assert_eq!(samples["instance"], 1);
    assert_eq!(samples["family"], "database");
    assert_eq!(samples["columns"][0], "time");
    let rows = samples["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["datname"], "db1");
    assert_eq!(rows[1]["xact_commit"], 2);

    // Host families come by the instance's agent.
    let mut tx = s.pool.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO metric_host_cpu (time, agent_id, cpu_count, usage_percent, load1, load5, load15)
         VALUES ($1, 'db-01', 8, 42.5, 1, 1, 1)",
    )
    .bind(t)
    .execute(&mut *tx)
    .await
    .expect("host_cpu");
    notify(&mut tx, json!({"agent": "db-01", "family": "host_cpu"}), t).await;
    tx.commit().await.expect("commit");
    let samples = next(&mut ws).await;
    assert_eq!(samples["family"], "host_cpu");
    assert_eq!(samples["instance"], 1);
    assert_eq!(samples["rows"][0]["usage_percent"], 42.5);

    // Unsubscribed families stop.
    send(
        &mut ws,
        json!({"type": "unsubscribe", "instances": [1], "families": ["database"]}),
    )
    .await;
    assert_eq!(
        next(&mut ws).await["subscriptions"],
        json!([{"instance": 1, "family": "host_cpu"}])
    );
    push_database(&s.pool, 1, t + TimeDelta::seconds(1), 1).await;
    let mut tx = s.pool.begin().await.expect("begin");
    notify(&mut tx, json!({"agent": "db-01", "family": "host_cpu"}), t).await;
    tx.commit().await.expect("commit");
    assert_eq!(
        next(&mut ws).await["family"],
        "host_cpu",
        "database is no longer sent"
    );

    // A rolled-back write is never announced (NOTIFY is transactional).
    let mut tx = s.pool.begin().await.expect("begin");
    notify(&mut tx, json!({"agent": "db-01", "family": "host_cpu"}), t).await;
    tx.rollback().await.expect("rollback");
    let mut tx = s.pool.begin().await.expect("begin");
    notify(&mut tx, json!({"instance": 1, "family": "database"}), t).await;
    tx.commit().await.expect("commit");
    send(
        &mut ws,
        json!({"type": "subscribe", "instances": [1], "families": ["wal"]}),
    )
    .await;
    assert_eq!(
        next(&mut ws).await["type"],
        "subscribed",
        "nothing came in between"
    );

    // A second client of the same pair leaving does not stop the first one's stream.
    let mut other = connect(s.port, None).await;
    send(
        &mut other,
        json!({"type": "subscribe", "instances": [1], "families": ["host_cpu"]}),
    )
    .await;
    assert_eq!(next(&mut other).await["type"], "subscribed");
    drop(other);
    let mut tx = s.pool.begin().await.expect("begin");
    notify(&mut tx, json!({"agent": "db-01", "family": "host_cpu"}), t).await;
    tx.commit().await.expect("commit");
    let samples = next(&mut ws).await;
    assert_eq!(samples["family"], "host_cpu", "{samples}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_slow_clients_lose_only_their_own_connection() {
    const EVENTS: usize = 300;
    // Large enough that 300 events overflow the socket buffers of a client that never reads.
    const ROWS: i32 = 1000;
    lasect_api::server::install_crypto_provider();
    let s = server().await;
    let subscribe = json!({"type": "subscribe", "instances": [1], "families": ["database"]});

    let mut garbage = connect(s.port, None).await;
    garbage
        .send(Message::text("{not json"))
        .await
        .expect("send");
    assert_eq!(close_code(&mut garbage).await, Some(CloseCode::Policy));
    let mut binary = connect(s.port, None).await;
    binary
        .send(Message::binary(vec![0_u8, 1, 2]))
        .await
        .expect("send");
    assert_eq!(close_code(&mut binary).await, Some(CloseCode::Unsupported));
    let mut unknown = connect(s.port, None).await;
    send(&mut unknown, json!({"type": "subscribe", "instances": [1]})).await;
    assert_eq!(close_code(&mut unknown).await, Some(CloseCode::Policy));

    let mut slow = connect_small_buffer(s.port).await;
    send(&mut slow, subscribe.clone()).await;
    assert_eq!(next(&mut slow).await["type"], "subscribed");
    let mut fast = connect(s.port, None).await;
    send(&mut fast, subscribe).await;
    assert_eq!(next(&mut fast).await["type"], "subscribed");

    // The fast client reads in its own task; the producer never runs more than 100 events
    // ahead of it, so it cannot fall behind the broadcast's 256.
    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    let reader = tokio::spawn(async move {
        let mut times = Vec::new();
        while times.len() < EVENTS {
            let message = next(&mut fast).await;
            assert_eq!(message["type"], "samples", "{message}");
            assert_eq!(
                message["rows"].as_array().map(Vec::len),
                Some(ROWS as usize)
            );
            times.push(message["rows"][0]["time"].clone());
            counter.fetch_add(1, Ordering::SeqCst);
        }
        times
    });
    let start = Utc::now() - TimeDelta::hours(1);
    for i in 0..EVENTS {
        while i > received.load(Ordering::SeqCst) + 100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        push_database(&s.pool, 1, start + TimeDelta::seconds(i as i64), ROWS).await;
    }
    let times = tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("fast client got everything")
        .expect("reader");
    let distinct: std::collections::BTreeSet<String> =
        times.iter().map(|t| t.to_string()).collect();
    assert_eq!(distinct.len(), EVENTS, "each event once, none lost");

    // The slow client never read: the server gave up on it; it finds a shortened stream.
    let mut got = 0;
    let ended = loop {
        match tokio::time::timeout(PATIENCE, slow.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => got += 1,
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| f.code),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => break None,
            Err(_) => panic!("the slow client was never dropped ({got} messages)"),
        }
    };
    assert!(
        got < EVENTS,
        "the slow client was cut short: {got} of {EVENTS}"
    );
    if let Some(code) = ended {
        assert_eq!(code, CloseCode::Again, "too slow");
    }

    // The server counted it, and still serves new clients.
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", s.port))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("lasect_api_live_slow_clients_dropped_total 1"),
        "{metrics}"
    );
    let mut again = connect(s.port, None).await;
    send(
        &mut again,
        json!({"type": "subscribe", "instances": [2], "families": ["database"]}),
    )
    .await;
    assert_eq!(next(&mut again).await["type"], "subscribed");
}
