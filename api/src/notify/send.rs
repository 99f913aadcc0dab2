//! One call of a receiver, with a timeout, no redirects, and the answer classified into
//! delivered, worth retrying, or refused for good.

use std::time::Duration;

use super::channel::{EmailSettings, Kind, Target};
use super::payload::{self, Notification};

/// Longest part of a receiver's answer kept (history, `test`).
const MAX_ANSWER_CHARS: usize = 1000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the receiver said.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The start of the answer's body.
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Network, timeout, 408, 429 or 5xx: try again later.
    #[error("{message}")]
    Retry {
        status: Option<u16>,
        message: String,
    },
    /// The receiver refused the notification itself (another 4xx): retrying cannot help.
    #[error("{message}")]
    Refused { status: u16, message: String },
}

impl SendError {
    pub fn status(&self) -> Option<u16> {
        match self {
            SendError::Retry { status, .. } => *status,
            SendError::Refused { status, .. } => Some(*status),
        }
    }
}

/// Sends `n` to `target` now.
pub async fn send(target: &Target, n: &Notification) -> Result<Answer, SendError> {
    crate::server::install_crypto_provider();
    let mut absolute;
    let n = match &target.links_base {
        None => n,
        Some(base) => {
            absolute = n.clone();
            absolute.links.alert = format!("{base}{}", n.links.alert);
            absolute.links.history = format!("{base}{}", n.links.history);
            &absolute
        }
    };
    if let Some(email) = &target.email {
        return send_email(email, target.timeout, n).await;
    }
    let retry = |message: String| SendError::Retry {
        status: None,
        message,
    };
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT.min(target.timeout))
        .timeout(target.timeout)
        .https_only(!target.insecure_http)
        // A redirect could lead the signed body somewhere the admin did not choose.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("lasect-api/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| retry(format!("build HTTP client: {e}")))?;
    let request = match target.kind {
        Kind::Webhook => {
            let body = serde_json::to_vec(n).map_err(|e| retry(format!("encode: {e}")))?;
            let now = chrono::Utc::now().timestamp();
            let mut r = client
                .post(target.url.clone())
                .header("content-type", "application/json")
                .header("idempotency-key", &n.idempotency_key)
                .header("x-lasect-timestamp", now.to_string());
            if let Some(secret) = &target.secret {
                r = r.header(
                    "x-lasect-signature",
                    payload::signature(secret.as_bytes(), now, &body),
                );
            }
            r.body(body)
        }
        Kind::Slack => client.post(target.url.clone()).json(&payload::slack(n)),
        Kind::Email => return Err(retry("email channel without its settings".into())),
        Kind::Alertmanager => {
            let mut url = target.url.clone();
            let base = url.path().trim_end_matches('/').to_owned();
            url.set_path(&format!("{base}/api/v2/alerts"));
            client
                .post(url)
                .header("idempotency-key", &n.idempotency_key)
                .json(&payload::alertmanager(n))
        }
    };
    // The URL may be a secret (Slack's): errors are reported without it.
    let response = request
        .send()
        .await
        .map_err(|e| retry(describe(&e.without_url())))?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let body: String = text.chars().take(MAX_ANSWER_CHARS).collect();
    match status {
        200..=299 => Ok(Answer { status, body }),
        408 | 429 | 500..=599 => Err(SendError::Retry {
            status: Some(status),
            message: format!("receiver answered {status}: {body}"),
        }),
        _ => Err(SendError::Refused {
            status,
            message: format!("receiver answered {status}: {body}"),
        }),
    }
}

/// The error and its causes on one line (reqwest's own message is only the outermost).
fn describe(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// One email through the channel's SMTP server: STARTTLS required (or TLS from the start for
/// `smtps://`), the server's certificate checked against the system's roots or the channel's
/// CA, credentials only ever sent inside TLS (lettre refuses AUTH before it unless insecure).
async fn send_email(
    email: &EmailSettings,
    timeout: Duration,
    n: &Notification,
) -> Result<Answer, SendError> {
    use lettre::message::{Mailbox, MultiPart};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let refused = |message: String| SendError::Refused { status: 0, message };
    let retry = |message: String| SendError::Retry {
        status: None,
        message,
    };
    let from: Mailbox = email
        .from
        .parse()
        .map_err(|e| refused(format!("sender {:?}: {e}", email.from)))?;
    let (subject, plain, html) = payload::email(n);
    let mut builder = Message::builder().from(from).subject(subject);
    for to in &email.to {
        let to: Mailbox = to
            .parse()
            .map_err(|e| refused(format!("recipient {to:?}: {e}")))?;
        builder = builder.to(to);
    }
    let message = builder
        .header(lettre::message::header::MessageId::from(format!(
            "<{}@lasect>",
            n.idempotency_key
        )))
        .multipart(MultiPart::alternative_plain_html(plain, html))
        .map_err(|e| refused(format!("build the email: {e}")))?;
    let mut tls = TlsParameters::builder(email.server.host.clone());
    if let Some(pem) = &email.ca_pem {
        let ca = Certificate::from_pem(pem.as_bytes())
            .map_err(|e| refused(format!("the channel's CA: {e}")))?;
        tls = tls
            .certificate_store(CertificateStore::None)
            .add_root_certificate(ca);
    }
    let tls = tls
        .build_rustls()
        .map_err(|e| retry(format!("TLS settings: {e}")))?;
    let tls = if email.server.implicit_tls {
        Tls::Wrapper(tls)
    } else if email.server.insecure {
        Tls::Opportunistic(tls)
    } else {
        Tls::Required(tls)
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&email.server.host)
        .port(email.server.port)
        .tls(tls)
        .timeout(Some(timeout));
    if let (Some(user), Some(password)) = (&email.username, &email.password) {
        transport = transport.credentials(Credentials::new(user.clone(), password.clone()));
    }
    let transport = transport.build();
    let sent = tokio::time::timeout(timeout.saturating_mul(3), transport.send(message))
        .await
        .map_err(|_| retry(format!("SMTP server did not finish within {timeout:?} x 3")))?;
    match sent {
        Ok(r) => Ok(Answer {
            status: 250,
            body: r.message().collect::<Vec<_>>().join(" "),
        }),
        Err(e) if e.is_permanent() => Err(SendError::Refused {
            status: e.status().map_or(0, u16::from),
            message: format!("SMTP server refused: {}", describe(&e)),
        }),
        Err(e) => Err(retry(format!("SMTP: {}", describe(&e)))),
    }
}
