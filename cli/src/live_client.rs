//! The API's live WebSocket (`GET /api/v1/live`, docs/CONTRACTS.md "Live stream") from the
//! CLI: `lasect run watch` and `lasect backup progress --follow` follow runs with it instead
//! of polling.
//!
//! The connection is set up like the HTTP client's ([`ApiClient`]): the same URL (`wss://` for
//! `https://`, `ws://` for a loopback `http://`, a base path kept), the CA file as the only
//! trusted roots or else the platform's verifier (the one reqwest uses), and the bearer token
//! in the upgrade request (the single-use ticket is for browsers, which cannot set a header).
//! The server sends nothing while no run changes, so the client pings and takes a long
//! silence as a lost connection ([`Broken`]); the commands then poll once for the final state.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::api_client::{ApiClient, ApiError, CA_FILE_ENV, TOKEN_ENV, Unreachable};
use crate::args::OutputFormat;
use crate::printable::escape;

/// Bound on the TCP connect, TLS handshake and upgrade, as the HTTP client's connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the client pings a quiet connection.
const PING_EVERY: Duration = Duration::from_secs(20);
/// No frame at all (not even the answer to a ping) for this long: the connection is gone.
const SILENCE: Duration = Duration::from_secs(65);

/// A byte stream a WebSocket runs over: plain TCP (loopback http) or rustls.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open live connection.
pub struct Live {
    ws: WebSocketStream<Box<dyn Io>>,
    url: String,
    last_frame: Instant,
}

/// The live connection ended or failed after it was set up: the commands say so and poll
/// once for the final state.
#[derive(Debug, thiserror::Error)]
#[error("the live connection to the API ({url}) was lost: {reason}")]
pub struct Broken {
    pub url: String,
    pub reason: String,
}

/// One `run` message's run: the fields the CLI reads, and the object as the API sent it.
#[derive(Debug, Clone, Deserialize)]
pub struct RunEvent {
    pub id: i64,
    pub kind: String,
    pub instance_name: String,
    pub status: String,
    /// `status` or `progress`.
    pub change: String,
    pub progress: Option<Progress>,
    #[serde(default)]
    pub cancel_requested: bool,
    pub error: Option<String>,
    #[serde(skip)]
    pub raw: Value,
}

/// What the agent reported last (`{"stage","percent","bytes_done","bytes_total"}`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Progress {
    pub stage: Option<String>,
    pub percent: Option<f64>,
    pub bytes_done: Option<i64>,
    pub bytes_total: Option<i64>,
}

/// Opens `/api/v1/live` on the client's API, authenticated with its token.
pub async fn connect(client: &ApiClient) -> anyhow::Result<Live> {
    let mut url = client
        .base_url()
        .join("api/v1/live")
        .context("build the live stream's URL")?;
    let tls = url.scheme() == "https";
    let scheme = if tls { "wss" } else { "ws" };
    url.set_scheme(scheme)
        .map_err(|()| anyhow::anyhow!("cannot make a {scheme}:// URL of {url}"))?;
    let host = url
        .host_str()
        .context("the API URL names no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url
        .port_or_known_default()
        .context("the API URL has no port")?;
    let shown = url.to_string();
    let unreachable = |what: &str, e: &dyn std::fmt::Display| {
        anyhow::Error::from(Unreachable(format!(
            "could not open the live stream at {shown}: {what}: {e}"
        )))
    };

    let mut request = shown
        .as_str()
        .into_client_request()
        .context("build the live stream's request")?;
    if let Some(token) = client.token() {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .with_context(|| format!("{TOKEN_ENV} contains characters not allowed in a header"))?;
        value.set_sensitive(true);
        request.headers_mut().insert("authorization", value);
    }
    request.headers_mut().insert(
        "user-agent",
        HeaderValue::from_static(concat!("lasect/", env!("CARGO_PKG_VERSION"))),
    );
    let config = if tls { Some(tls_config(client)?) } else { None };

    let open = async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| unreachable("connect", &e))?;
        let stream: Box<dyn Io> = match config {
            Some(config) => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| unreachable("the host is not a valid TLS server name", &e))?;
                let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| unreachable("TLS handshake", &e))?;
                Box::new(stream)
            }
            None => Box::new(tcp),
        };
        match tokio_tungstenite::client_async(request, stream).await {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(response)) => Err(refused(&shown, &response)),
            Err(e) => Err(unreachable("WebSocket upgrade", &e)),
        }
    };
    let ws = tokio::time::timeout(CONNECT_TIMEOUT, open)
        .await
        .map_err(|_| {
            unreachable(
                "no answer",
                &format!("nothing within {} s", CONNECT_TIMEOUT.as_secs()),
            )
        })??;
    Ok(Live {
        ws,
        url: shown,
        last_frame: Instant::now(),
    })
}

/// rustls for the live stream, trusting what the HTTP client trusts.
fn tls_config(client: &ApiClient) -> anyhow::Result<rustls::ClientConfig> {
    crate::install_crypto_provider();
    let builder = rustls::ClientConfig::builder();
    let mut config = match client.ca_file() {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("read {CA_FILE_ENV} {}", path.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.with_context(|| format!("parse {CA_FILE_ENV} {}", path.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("use {CA_FILE_ENV} {}", path.display()))?;
            }
            if roots.is_empty() {
                anyhow::bail!("{CA_FILE_ENV} {} holds no PEM certificate", path.display());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .context("set up the platform's certificate verifier")?
                .with_no_client_auth()
        }
    };
    // A WebSocket upgrade is an HTTP/1.1 request.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A refused upgrade as the API's error (401, 403, 503 `too_many_clients`, …).
fn refused(url: &str, response: &tungstenite::http::Response<Option<Vec<u8>>>) -> anyhow::Error {
    let status = response.status().as_u16();
    let body: Option<Value> = response
        .body()
        .as_deref()
        .and_then(|b| serde_json::from_slice(b).ok());
    let code = body
        .as_ref()
        .and_then(|b| b["error"]["code"].as_str())
        .map(str::to_owned);
    let message = body
        .as_ref()
        .and_then(|b| b["error"]["message"].as_str())
        .map(str::to_owned);
    match (code, message) {
        (Some(code), Some(message)) => ApiError {
            status,
            code,
            message: format!("live stream: {message}"),
        },
        _ => ApiError {
            status,
            code: "unexpected_response".to_owned(),
            message: format!("the live stream at {url} refused the connection: HTTP {status}"),
        },
    }
    .into()
}

impl Live {
    fn broken(&self, reason: impl Into<String>) -> Broken {
        Broken {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }

    /// Asks for the runs matching `filter` (`instances`, `runs`, `kinds`) and waits for the
    /// API's answer; its refusal comes back as an error saying why.
    pub async fn subscribe_runs(&mut self, filter: Value) -> anyhow::Result<()> {
        let mut message = filter;
        if let Some(o) = message.as_object_mut() {
            o.insert("type".to_owned(), "subscribe_runs".into());
        }
        self.send(message.to_string()).await?;
        loop {
            let reply = self.next_message().await?;
            match reply["type"].as_str() {
                Some("subscribed_runs") if reply["runs"] == true => return Ok(()),
                Some("error") => {
                    let code = reply["error"]["code"].as_str().unwrap_or("error");
                    let text = reply["error"]["message"].as_str().unwrap_or("refused");
                    let status = match code {
                        "not_found" => 404,
                        "forbidden" => 403,
                        "store_unavailable" => 503,
                        _ => 400,
                    };
                    return Err(ApiError {
                        status,
                        code: code.to_owned(),
                        message: format!("live stream: {text}"),
                    }
                    .into());
                }
                // Nothing else is subscribed on this connection: only a run could come first.
                _ => continue,
            }
        }
    }

    /// The next run change.
    pub async fn next_run(&mut self) -> Result<RunEvent, Broken> {
        loop {
            let message = self.next_message().await?;
            if message["type"] != "run" {
                continue;
            }
            let raw = message["run"].clone();
            let mut event: RunEvent = serde_json::from_value(raw.clone())
                .map_err(|e| self.broken(format!("a run message the CLI cannot read: {e}")))?;
            event.raw = raw;
            return Ok(event);
        }
    }

    async fn send(&mut self, text: String) -> Result<(), Broken> {
        let sent = self.ws.send(Message::text(text)).await;
        sent.map_err(|e| self.broken(e.to_string()))
    }

    /// The next text message as JSON; pings the server while it is quiet.
    async fn next_message(&mut self) -> Result<Value, Broken> {
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            let frame = tokio::select! {
                frame = self.ws.next() => frame,
                _ = ping.tick() => {
                    if self.last_frame.elapsed() >= SILENCE {
                        return Err(self.broken(format!(
                            "no answer for {} s", SILENCE.as_secs()
                        )));
                    }
                    let pinged = self.ws.send(Message::Ping(Vec::new().into())).await;
                    pinged.map_err(|e| self.broken(e.to_string()))?;
                    continue;
                }
            };
            self.last_frame = Instant::now();
            match frame {
                None => return Err(self.broken("closed")),
                Some(Err(e)) => return Err(self.broken(e.to_string())),
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .map_err(|e| self.broken(format!("a message that is not JSON: {e}")));
                }
                Some(Ok(Message::Close(frame))) => {
                    let reason = match frame {
                        Some(f) if !f.reason.is_empty() => {
                            format!("closed by the API: {}", escape(f.reason.as_str()))
                        }
                        Some(f) => format!("closed by the API ({})", u16::from(f.code)),
                        None => "closed by the API".to_owned(),
                    };
                    return Err(self.broken(reason));
                }
                Some(Ok(_)) => continue,
            }
        }
    }
}

/// Where `run watch` and `backup progress --follow` write as things happen: one line each,
/// flushed at once (a table line is escaped, a JSON line is one compact object).
pub struct Lines {
    output: OutputFormat,
}

impl Lines {
    pub fn new(output: OutputFormat) -> Self {
        Lines { output }
    }

    pub fn output(&self) -> OutputFormat {
        self.output
    }

    /// `text` in table mode, `json` as one line in JSON mode.
    pub fn write(&self, text: &str, json: &Value) -> anyhow::Result<()> {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        match self.output {
            OutputFormat::Table => {
                let text = crate::printable::escape_lines(text);
                out.write_all(text.as_bytes())?;
                if !text.ends_with('\n') {
                    out.write_all(b"\n")?;
                }
            }
            OutputFormat::Json => {
                serde_json::to_writer(&mut out, json).context("format JSON")?;
                out.write_all(b"\n")?;
            }
        }
        out.flush().context("write to stdout")
    }

    pub fn event(&self, event: &RunEvent) -> anyhow::Result<()> {
        self.write(&event_line(event), &event.raw)
    }
}

/// The order statuses come in: a change older than what the CLI already showed (read by the
/// poll it made after subscribing) is not shown again.
pub fn rank(status: &str) -> u8 {
    match status {
        "queued" => 0,
        "dispatched" => 1,
        // A status newer than this CLI is not taken for an end.
        s if !is_terminal(s) => 2,
        _ => 3,
    }
}

/// Whether a status ends the run (an unknown, newer one does not).
pub fn is_terminal(status: &str) -> bool {
    status
        .parse::<lasect_api_contract::runs::RunStatus>()
        .is_ok_and(|s| s.is_terminal())
}

/// `run 12 backup on main: running copy 42.5% (420 B of 1000 B)`.
pub fn event_line(e: &RunEvent) -> String {
    let mut line = format!(
        "run {} {} on {}: {}",
        e.id,
        escape(&e.kind),
        escape(&e.instance_name),
        escape(&e.status)
    );
    if e.change == "progress"
        && let Some(p) = &e.progress
    {
        line.push_str(&progress_text(p));
    }
    if e.cancel_requested && !is_terminal(&e.status) {
        line.push_str(" (cancel asked)");
    }
    if let Some(error) = &e.error {
        line.push_str(": ");
        line.push_str(&escape(error));
    }
    line
}

/// ` copy 42.5% (420 B of 1000 B)`, the parts the agent reported.
pub fn progress_text(p: &Progress) -> String {
    let mut text = String::new();
    if let Some(stage) = &p.stage {
        text.push(' ');
        text.push_str(&escape(stage));
    }
    if let Some(percent) = p.percent {
        text.push_str(&format!(" {percent:.1}%"));
    }
    match (p.bytes_done, p.bytes_total) {
        (Some(done), Some(total)) => text.push_str(&format!(
            " ({} of {})",
            crate::human_units::bytes(done),
            crate::human_units::bytes(total)
        )),
        (Some(done), None) => {
            text.push_str(&format!(" ({})", crate::human_units::bytes(done)));
        }
        _ => {}
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(v: Value) -> RunEvent {
        serde_json::from_value(v).expect("event")
    }

    #[test]
    fn a_run_change_reads_as_one_line() {
        let progress = event(json!({
            "id": 7, "kind": "backup", "instance_id": 1, "instance_name": "main",
            "status": "running", "change": "progress",
            "progress": {"stage": "copy", "percent": 42.5, "bytes_done": 2048, "bytes_total": 4096},
            "progress_at": "2026-12-07T10:00:00Z", "at": "2026-12-07T10:00:00Z",
            "cancel_requested": true
        }));
        let line = event_line(&progress);
        assert!(
            line.starts_with("run 7 backup on main: running copy 42.5% ("),
            "{line}"
        );
        assert!(line.ends_with("(cancel asked)"), "{line}");
        let failed = event(json!({
            "id": 7, "kind": "backup", "instance_id": 1, "instance_name": "main\u{1b}[2J",
            "status": "failed", "change": "status", "progress": null, "progress_at": null,
            "at": "2026-12-07T10:00:00Z", "cancel_requested": true, "error": "disk full"
        }));
        let line = event_line(&failed);
        assert!(!line.contains('\u{1b}'), "{line}");
        assert!(line.ends_with(": failed: disk full"), "{line}");
    }

    #[test]
    fn statuses_are_ranked_in_the_order_they_come() {
        assert!(rank("queued") < rank("dispatched"));
        assert!(rank("dispatched") < rank("running"));
        assert!(rank("running") < rank("failed"));
        assert_eq!(rank("paused"), rank("running"));
        assert!(is_terminal("expired") && !is_terminal("running") && !is_terminal("paused"));
    }
}
