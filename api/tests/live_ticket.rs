//! Tickets for the live WebSocket (`POST /api/v1/live/ticket`, then `GET /api/v1/live?ticket=`),
//! over a real HTTP server and store: a ticket opens one stream as the user it was issued to,
//! and is refused when reused, expired, unknown, presented with another user's credentials, or
//! once its user is disabled.

use crate::common;
use crate::common::http::{LOCAL, call};
use crate::common::live::serve;

use std::time::Duration;

use axum::http::StatusCode;
use futures::{SinkExt, StreamExt};
use lasect_api::auth::Role;
use lasect_api::routes::live::LiveHub;
use lasect_api::{AppState, router};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const PATIENCE: Duration = Duration::from_secs(30);

/// Opens the WebSocket with `query` and an optional bearer: the stream, or the HTTP status and
/// body of the refusal.
async fn open(
    port: u16,
    query: &str,
    bearer: Option<&str>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    (u16, String),
> {
    let mut request = format!("ws://127.0.0.1:{port}/api/v1/live{query}")
        .into_client_request()
        .expect("request");
    if let Some(token) = bearer {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("websocket: {e}"),
    }
}

async fn ticket(app: &axum::Router, token: &str) -> String {
    let answer = call(app, "POST", "/api/v1/live/ticket", Some(token), None, LOCAL).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.body["expires_in"], 30, "{}", answer.text);
    answer.body["ticket"].as_str().expect("a ticket").to_owned()
}

fn refused(result: Result<impl Sized, (u16, String)>, status: u16, message_part: &str, case: &str) {
    match result {
        Ok(_) => panic!("{case}: the upgrade was accepted"),
        Err((got, body)) => {
            assert_eq!(got, status, "{case}: {body}");
            assert!(body.contains(message_part), "{case}: {body}");
        }
    }
}

#[tokio::test]
async fn a_ticket_opens_one_stream_for_its_own_user_only() {
    let (_pg, pool) = common::migrated_store().await;
    sqlx::raw_sql(
        "INSERT INTO agents (id) VALUES ('db-01');
         INSERT INTO instances (name, agent_id, labels) VALUES
             ('prod', 'db-01', '{\"env\": \"prod\"}'),
             ('dev', 'db-01', '{\"env\": \"dev\"}');",
    )
    .execute(&pool)
    .await
    .expect("seed");
    let admin = common::user(&pool, "admin", Some(Role::Admin), &[]).await;
    let pat = common::user(&pool, "pat", None, &[("env", "prod", Role::Viewer)]).await;

    let state = AppState::new(pool.clone());
    let app = router(state.clone());
    let (port, _stop) = serve(app.clone());

    refused(
        open(port, "", None).await,
        401,
        "missing credentials",
        "no ticket, no header",
    );
    refused(
        open(port, "?ticket=lslt_nonsense", None).await,
        401,
        "malformed live ticket",
        "malformed ticket",
    );
    let unknown = format!("?ticket=lslt_{}", "A".repeat(43));
    refused(
        open(port, &unknown, None).await,
        401,
        "unknown or already used",
        "unknown ticket",
    );
    let answer = call(&app, "POST", "/api/v1/live/ticket", None, None, LOCAL).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);

    // A ticket opens a stream that is pat's: prod is theirs, dev is not.
    let t = ticket(&app, &pat).await;
    let mut ws = open(port, &format!("?ticket={t}"), None)
        .await
        .expect("the ticket opens the stream");
    for (instance, expected) in [(1, "subscribed"), (2, "error")] {
        ws.send(Message::text(
            json!({"type": "subscribe", "instances": [instance], "families": ["database"]})
                .to_string(),
        ))
        .await
        .expect("send");
        let reply = loop {
            let message = tokio::time::timeout(PATIENCE, ws.next())
                .await
                .expect("a reply in time")
                .expect("open")
                .expect("message");
            if let Message::Text(text) = message {
                break serde_json::from_str::<Value>(text.as_str()).expect("JSON");
            }
        };
        assert_eq!(reply["type"], expected, "instance {instance}: {reply}");
        if expected == "error" {
            assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
        }
    }
    drop(ws);
    assert_eq!(state.live.outstanding_tickets(), 0, "a used ticket is gone");

    refused(
        open(port, &format!("?ticket={t}"), None).await,
        401,
        "unknown or already used",
        "reused ticket",
    );

    // Another user's credentials with pat's ticket: refused, and the ticket is spent.
    let t = ticket(&app, &pat).await;
    refused(
        open(port, &format!("?ticket={t}"), Some(&admin)).await,
        403,
        "issued to another user",
        "another user's ticket",
    );
    refused(
        open(port, &format!("?ticket={t}"), None).await,
        401,
        "unknown or already used",
        "a ticket refused once",
    );
    // With the owner's own header too, it opens.
    let t = ticket(&app, &pat).await;
    open(port, &format!("?ticket={t}"), Some(&pat))
        .await
        .expect("own ticket and own header");

    // The user is disabled between the ticket and the upgrade.
    let t = ticket(&app, &pat).await;
    sqlx::query("UPDATE users SET disabled_at = now() WHERE username = 'pat'")
        .execute(&pool)
        .await
        .expect("disable");
    refused(
        open(port, &format!("?ticket={t}"), None).await,
        401,
        "",
        "disabled user",
    );

    // A ticket past its lifetime (a hub whose tickets expire at once).
    let mut expiring = AppState::new(pool.clone());
    expiring.live = LiveHub::with_ticket_ttl(pool.clone(), Duration::ZERO);
    let expiring_app = router(expiring);
    let (expiring_port, _stop2) = serve(expiring_app.clone());
    let answer = call(
        &expiring_app,
        "POST",
        "/api/v1/live/ticket",
        Some(&admin),
        None,
        LOCAL,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let t = answer.body["ticket"].as_str().expect("ticket").to_owned();
    refused(
        open(expiring_port, &format!("?ticket={t}"), None).await,
        401,
        "expired",
        "expired ticket",
    );

    // Asking in a loop keeps at most MAX_TICKETS_PER_USER outstanding (pat's are all spent).
    for _ in 0..40 {
        ticket(&app, &admin).await;
    }
    assert_eq!(
        state.live.outstanding_tickets(),
        lasect_api::routes::live::MAX_TICKETS_PER_USER
    );
}
