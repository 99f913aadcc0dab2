//! The live WebSocket (`/api/v1/live`) from a client's side, over a real server.

use std::net::TcpListener;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A bound on waiting for a message that should come, not a measurement.
const PATIENCE: Duration = Duration::from_secs(30);

/// Opens `/api/v1/live` on 127.0.0.1:`port`, with `Authorization: Bearer <token>` when given.
pub async fn connect(port: u16, token: Option<&str>) -> Ws {
    let mut request = format!("ws://127.0.0.1:{port}/api/v1/live")
        .into_client_request()
        .expect("request");
    if let Some(token) = token {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket");
    ws
}

/// The next text message as JSON, past pings and pongs; fails the test on any other frame or
/// when none comes within the patience bound.
pub async fn next(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("message");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Serves `app` on a loopback port until the returned sender is dropped.
pub fn serve(app: axum::Router) -> (u16, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = lasect_api::server::serve_on(listener, app, None, async {
            let _ = stopped.await;
        })
        .await;
    });
    (port, stop)
}
