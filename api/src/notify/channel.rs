//! Channels: where notifications go, validated before they are stored, and their secrets
//! (the webhook's HMAC key, the Slack URL) encrypted with the API's key file.

use lasect_pki::secrets::{Keyring, SecretsError};
use reqwest::Url;

// Declared with the API's bodies, which show it (`Channel.kind`); the CLI reads it too.
pub use lasect_api_contract::alert_channels::Kind;

/// Shortest webhook secret accepted: a receiver verifies with it, so it must not be guessable.
pub const MIN_SECRET_LEN: usize = 16;

/// Why a channel's URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("url does not parse: {0}")]
    Parse(String),
    #[error("url must be http:// or https://, not {0}://")]
    Scheme(String),
    #[error("url must name a host")]
    NoHost,
    #[error(
        "url is plain http://: notifications would cross the network unencrypted; use https:// \
         or set insecure_http: true for a receiver on a trusted network"
    )]
    PlainHttp,
    #[error("url must not hold a user name or password (put credentials in the secret)")]
    Credentials,
    #[error("an email channel's url is smtp://host[:port] (STARTTLS) or smtps://host[:port] (TLS)")]
    SmtpScheme,
    #[error("an email channel's url must be only smtp(s)://host[:port], without path or query")]
    SmtpPath,
}

/// How to reach an SMTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    /// `smtps://`: TLS from the first byte.
    pub implicit_tls: bool,
    /// STARTTLS may be skipped (`insecure_http`).
    pub insecure: bool,
}

/// Validates an email channel's URL.
pub fn check_smtp_url(text: &str, insecure: bool) -> Result<SmtpServer, UrlError> {
    let url = Url::parse(text).map_err(|e| UrlError::Parse(e.to_string()))?;
    let implicit_tls = match url.scheme() {
        "smtp" => false,
        "smtps" => true,
        _ => return Err(UrlError::SmtpScheme),
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or(UrlError::NoHost)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(UrlError::SmtpPath);
    }
    Ok(SmtpServer {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port: url.port().unwrap_or(if implicit_tls { 465 } else { 587 }),
        implicit_tls,
        insecure,
    })
}

/// Where and how an email channel sends.
#[derive(Clone)]
pub struct EmailSettings {
    pub server: SmtpServer,
    pub from: String,
    pub to: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_pem: Option<String>,
}

/// Validates a receiver URL: http(s) only, a host, no credentials in it, and https unless
/// `insecure_http`.
pub fn check_url(text: &str, insecure_http: bool) -> Result<Url, UrlError> {
    let url = Url::parse(text).map_err(|e| UrlError::Parse(e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if insecure_http => {}
        "http" => return Err(UrlError::PlainHttp),
        other => return Err(UrlError::Scheme(other.to_owned())),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    Ok(url)
}

/// What may be shown of a URL that is a secret (Slack's): scheme and host.
pub fn redacted(url: &Url) -> String {
    format!("{}://{}/…", url.scheme(), url.host_str().unwrap_or(""))
}

/// Associated data binding a channel secret to its channel, so a ciphertext copied to another
/// row does not decrypt.
fn aad(channel_id: i64) -> Vec<u8> {
    format!("lasect-alert-channel-secret:v1|{channel_id}").into_bytes()
}

pub fn encrypt_secret(
    keyring: &Keyring,
    channel_id: i64,
    secret: &str,
) -> Result<Vec<u8>, SecretsError> {
    keyring.encrypt(secret.as_bytes(), &aad(channel_id))
}

pub fn decrypt_secret(
    keyring: &Keyring,
    channel_id: i64,
    ciphertext: &[u8],
) -> Result<String, SecretsError> {
    keyring.decrypt_string(ciphertext, &aad(channel_id))
}

/// A channel as the sender needs it (secret decrypted).
pub struct Target {
    pub id: i64,
    pub kind: Kind,
    pub url: Url,
    pub insecure_http: bool,
    pub secret: Option<String>,
    pub timeout: std::time::Duration,
    /// Email channels only.
    pub email: Option<EmailSettings>,
    /// Prefix making the notification's links absolute (no trailing `/`).
    pub links_base: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// Why a stored channel cannot be used now.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    #[error("channel {0} no longer exists")]
    Gone(i64),
    #[error("channel {id}: {message}")]
    Unusable { id: i64, message: String },
}

#[derive(sqlx::FromRow)]
struct Row {
    kind: String,
    url: String,
    insecure_http: bool,
    secret_ciphertext: Option<Vec<u8>>,
    timeout_secs: i32,
    email_from: Option<String>,
    email_to: Option<String>,
    smtp_username: Option<String>,
    ca_pem: Option<String>,
    links_base_url: Option<String>,
}

/// Loads channel `id` and decrypts its secret with `keyring` (`None`: no key file).
pub async fn load_target(
    conn: &mut sqlx::PgConnection,
    id: i64,
    keyring: Option<&Keyring>,
) -> Result<Target, TargetError> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT kind, url, insecure_http, secret_ciphertext, timeout_secs, email_from, email_to, \
         smtp_username, ca_pem, links_base_url FROM alert_channels WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    let row = row.ok_or(TargetError::Gone(id))?;
    let unusable = |message: String| TargetError::Unusable { id, message };
    let kind = Kind::parse(&row.kind).ok_or_else(|| unusable(format!("kind {}", row.kind)))?;
    let secret = match &row.secret_ciphertext {
        None => None,
        Some(c) => {
            let keyring =
                keyring.ok_or_else(|| unusable("the API has no secrets key file".into()))?;
            Some(
                decrypt_secret(keyring, id, c)
                    .map_err(|e| unusable(format!("secret does not decrypt: {e}")))?,
            )
        }
    };
    let timeout = std::time::Duration::from_secs(u64::try_from(row.timeout_secs).unwrap_or(10));
    let links_base = row
        .links_base_url
        .as_deref()
        .map(|b| b.trim_end_matches('/').to_owned());
    if kind == Kind::Email {
        let server =
            check_smtp_url(&row.url, row.insecure_http).map_err(|e| unusable(e.to_string()))?;
        let url = Url::parse(&row.url).map_err(|e| unusable(e.to_string()))?;
        let email = EmailSettings {
            server,
            from: row
                .email_from
                .ok_or_else(|| unusable("email channel without a sender".into()))?,
            to: row
                .email_to
                .unwrap_or_default()
                .split(',')
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect(),
            username: row.smtp_username,
            password: secret,
            ca_pem: row.ca_pem,
        };
        return Ok(Target {
            id,
            kind,
            url,
            insecure_http: row.insecure_http,
            secret: None,
            timeout,
            email: Some(email),
            links_base,
        });
    }
    let url_text = match kind {
        Kind::Slack => secret
            .clone()
            .ok_or_else(|| unusable("Slack channel without its URL".into()))?,
        _ => row.url.clone(),
    };
    let url = check_url(&url_text, row.insecure_http).map_err(|e| unusable(e.to_string()))?;
    Ok(Target {
        id,
        kind,
        url,
        insecure_http: row.insecure_http,
        secret: if kind == Kind::Slack { None } else { secret },
        timeout,
        email: None,
        links_base,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("https://example.com/hook", false).is_ok());
        assert_eq!(
            check_url("http://example.com/hook", false),
            Err(UrlError::PlainHttp)
        );
        assert!(check_url("http://example.com/hook", true).is_ok());
        assert_eq!(
            check_url("ftp://example.com/x", true),
            Err(UrlError::Scheme("ftp".into()))
        );
        assert_eq!(
            check_url("file:///etc/passwd", true),
            Err(UrlError::Scheme("file".into()))
        );
        assert_eq!(
            check_url("https://u:p@example.com/", false),
            Err(UrlError::Credentials)
        );
        assert!(matches!(
            check_url("not a url", false),
            Err(UrlError::Parse(_))
        ));
        assert_eq!(
            check_smtp_url("smtp://mail.example.com", false),
            Ok(SmtpServer {
                host: "mail.example.com".into(),
                port: 587,
                implicit_tls: false,
                insecure: false
            })
        );
        assert_eq!(
            check_smtp_url("smtps://mail.example.com:2465", false).map(|s| s.port),
            Ok(2465)
        );
        assert_eq!(
            check_smtp_url("https://mail.example.com", false),
            Err(UrlError::SmtpScheme)
        );
        assert_eq!(
            check_smtp_url("smtp://mail.example.com/x", false),
            Err(UrlError::SmtpPath)
        );
        // An email scheme is not a web receiver.
        assert!(check_url("smtp://mail.example.com", true).is_err());
    }
}
