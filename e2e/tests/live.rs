//! The live stream end to end: a sample collected by the real `lasect-agent`, pushed through
//! the real `lasect-ingest` (which announces it with `pg_notify`) reaches a WebSocket client of
//! the real `lasect-api` over TLS; a client sending garbage next to it changes nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use lasect_e2e::{Stack, wait_listening};
use lasect_testkit::{PgCluster, PgOptions};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const AGENT_ID: &str = "e2e-live";
const BOUND: Duration = Duration::from_secs(90);

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// A WebSocket to the API over TLS, trusting the stack's CA, authenticated with `token`.
async fn connect(stack: &Stack) -> Wss {
    try_connect(stack, Some(&stack.admin_token))
        .await
        .expect("websocket upgrade")
}

async fn try_connect(
    stack: &Stack,
    token: Option<&str>,
) -> Result<Wss, tokio_tungstenite::tungstenite::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(stack.tls().join("ca.pem")).expect("ca.pem");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.expect("CA cert")).expect("add CA");
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", stack.api_port))
        .await
        .expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the API");
    let url = format!("wss://127.0.0.1:{}/api/v1/live", stack.api_port);
    let mut request = url.into_client_request().expect("request");
    if let Some(token) = token {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
    }
    tokio_tungstenite::client_async(request, tls)
        .await
        .map(|(ws, _)| ws)
}

async fn next_json(ws: &mut Wss, deadline: Instant) -> Value {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, ws.next())
            .await
            .expect("a message before the deadline")
            .expect("open")
            .expect("message");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).expect("JSON");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_sample_reaches_a_websocket_client() {
    let stack = Stack::new(AGENT_ID).await;
    let monitored = PgCluster::start(PgOptions::default()).expect("monitored cluster");
    let mut ingest = stack.spawn_ingest("");
    let mut api = stack.spawn_api();
    wait_listening(&mut ingest);
    wait_listening(&mut api);
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 1\n[[instances]]\nname = \"monitored\"\ndsn = \"{}\"\n",
            monitored.dsn("postgres")
        ),
    );
    let _agent = stack.start_agent(&[]);

    let store = stack.store().await;
    let start = Instant::now();
    let id: i64 = loop {
        if let Ok(row) = store
            .query_one("SELECT id FROM instances WHERE name = 'monitored'", &[])
            .await
        {
            break row.get(0);
        }
        assert!(start.elapsed() < BOUND, "the instance never appeared");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // The stream is authenticated like every other call.
    match try_connect(&stack, None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 401);
        }
        other => panic!(
            "an unauthenticated live stream was not refused: {:?}",
            other.map(|_| ())
        ),
    }

    let mut garbage = connect(&stack).await;
    garbage
        .send(Message::text("\u{0}\u{1} definitely not JSON"))
        .await
        .expect("send garbage");
    let mut ws = connect(&stack).await;
    ws.send(Message::text(
        json!({"type": "subscribe", "instances": [id], "families": ["database"]}).to_string(),
    ))
    .await
    .expect("subscribe");
    let deadline = Instant::now() + BOUND;
    let reply = next_json(&mut ws, deadline).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");

    // The agent samples every second: new rows come, and so do they to the client.
    let samples = next_json(&mut ws, deadline).await;
    assert_eq!(samples["type"], "samples", "{samples}");
    assert_eq!(samples["instance"], id);
    assert_eq!(samples["family"], "database");
    let rows = samples["rows"].as_array().expect("rows");
    assert!(
        rows.iter().any(|r| r["datname"] == "postgres"),
        "the monitored postgres database: {samples}"
    );

    // The garbage client was closed for its message (policy violation), alone.
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            match garbage.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("garbage client closed");
    assert_eq!(closed, Some(1008));
    let again = next_json(&mut ws, Instant::now() + BOUND).await;
    assert_eq!(again["type"], "samples", "still streaming: {again}");
}
