//! A small client for the Lasect API.
//!
//! The base URL comes from `LASECT_URL` (https; http only to a loopback address, see
//! [`plain_http_allowed`]). For https, when `LASECT_CA_FILE` is set
//! the certificates in it are the only trusted roots (the Lasect CA signs the API's
//! certificate); otherwise the platform's trust store is used. `LASECT_TOKEN`, when set, is sent
//! as a bearer token. Flags win over the environment, which wins over `config.toml`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use lasect_pki::Secret;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Certificate, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub const URL_ENV: &str = "LASECT_URL";
pub const CA_FILE_ENV: &str = "LASECT_CA_FILE";
pub const TOKEN_ENV: &str = "LASECT_TOKEN";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The environment the client is configured from (read once in `main`, given explicitly in
/// tests).
#[derive(Clone, Debug, Default)]
pub struct ClientEnv {
    pub url: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub token: Option<Secret>,
}

impl ClientEnv {
    /// Flags first, then the environment, then the config file written by `lasect login`.
    pub fn layered(self, env: ClientEnv, file: Option<ClientEnv>) -> Self {
        let file = file.unwrap_or_default();
        ClientEnv {
            url: self.url.or(env.url).or(file.url),
            ca_file: self.ca_file.or(env.ca_file).or(file.ca_file),
            token: self.token.or(env.token).or(file.token),
        }
    }

    pub fn from_process() -> Self {
        let non_empty = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        ClientEnv {
            url: non_empty(URL_ENV),
            ca_file: std::env::var_os(CA_FILE_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            token: non_empty(TOKEN_ENV).map(Secret::new),
        }
    }
}

/// An error answered by the API: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

pub struct ApiClient {
    base: Url,
    http: reqwest::Client,
    /// What the live WebSocket client (`crate::live_client`) needs to trust the API and
    /// authenticate as the HTTP client does.
    ca_file: Option<PathBuf>,
    token: Option<Secret>,
}

impl ApiClient {
    pub fn from_env(env: ClientEnv) -> anyhow::Result<Self> {
        let Some(url) = env.url else {
            return Err(crate::exit::Usage(format!(
                "no API URL: pass --url, set {URL_ENV} (e.g. https://127.0.0.1:8443), or run \
                 `lasect login`"
            ))
            .into());
        };
        let usage = |message: String| anyhow::Error::from(crate::exit::Usage(message));
        let mut base = Url::parse(&url)
            .map_err(|e| usage(format!("{URL_ENV} is not a valid URL: {url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(usage(format!(
                "{URL_ENV} must be an http:// or https:// URL, not {url:?}"
            )));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(usage(format!(
                "{URL_ENV} must name a host, e.g. https://127.0.0.1:8443, not {url:?}"
            )));
        }
        if base.scheme() == "http" && !plain_http_allowed(&base) {
            return Err(usage(format!(
                "refusing the API URL {url:?}: plain http:// would send the token and passwords \
                 unencrypted over the network; use https:// (http:// is accepted only for \
                 loopback: 127.0.0.0/8, ::1, localhost)"
            )));
        }
        // Paths are joined relative to the base: keep a prefix such as /lasect/.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }

        crate::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("lasect/", env!("CARGO_PKG_VERSION")));
        if let Some(ca_file) = &env.ca_file {
            let pem = std::fs::read(ca_file)
                .with_context(|| format!("read {CA_FILE_ENV} {}", ca_file.display()))?;
            let certs = Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("parse {CA_FILE_ENV} {}", ca_file.display()))?;
            if certs.is_empty() {
                bail!(
                    "{CA_FILE_ENV} {} holds no PEM certificate",
                    ca_file.display()
                );
            }
            builder = builder.tls_certs_only(certs);
        }
        if let Some(token) = &env.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .with_context(|| {
                    format!("{TOKEN_ENV} contains characters not allowed in a header")
                })?;
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(AUTHORIZATION, value);
            builder = builder.default_headers(headers);
        }
        let http = builder.build().context("set up the HTTP client")?;
        Ok(ApiClient {
            base,
            http,
            ca_file: env.ca_file,
            token: env.token,
        })
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The CA file trusted instead of the platform's roots, if any.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.ca_file.as_deref()
    }

    /// The bearer token sent with every request, if any.
    pub fn token(&self) -> Option<&Secret> {
        self.token.as_ref()
    }

    /// GETs `path` (relative to the base URL, may carry a query) and returns its JSON body.
    /// Error bodies of the API become [`ApiError`].
    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        self.request(reqwest::Method::GET, path, None).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }

    /// GET `path`, read as the API's own response type (`lasect_api_contract`).
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        typed(self.get_json(path).await?, path)
    }

    /// POST the API's own request type `body` to `path`, read the answer as `T`.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let body = serde_json::to_value(body).context("encode the request body")?;
        typed(self.post_json(path, &body).await?, path)
    }

    /// GETs `path` and returns the response for streaming its body; an error status becomes
    /// [`ApiError`] like the JSON calls.
    pub async fn get_stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let url = self
            .base
            .join(path)
            .with_context(|| format!("build the URL for {path}"))?;
        let response = self.http.get(url.clone()).send().await.map_err(|e| {
            let e = anyhow::Error::from(e);
            Unreachable(format!("could not reach the API at {}: {e:#}", self.base))
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        Err(match body.as_ref().and_then(parse_api_error) {
            Some((code, message)) => ApiError {
                status: status.as_u16(),
                code,
                message,
            },
            None => ApiError {
                status: status.as_u16(),
                code: "unexpected_response".to_owned(),
                message: format!("unexpected response from the API at {url}: HTTP {status}"),
            },
        }
        .into())
    }

    /// POSTs raw bytes (e.g. a CSV) and returns the JSON answer.
    pub async fn post_bytes(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> anyhow::Result<Value> {
        let url = self
            .base
            .join(path)
            .with_context(|| format!("build the URL for {path}"))?;
        let response = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let e = anyhow::Error::from(e);
                Unreachable(format!("could not reach the API at {}: {e:#}", self.base))
            })?;
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            return body.ok_or_else(|| {
                Unreachable(format!("HTTP {status} without a JSON body from {url}")).into()
            });
        }
        Err(match body.as_ref().and_then(parse_api_error) {
            Some((code, message)) => ApiError {
                status: status.as_u16(),
                code,
                message,
            },
            None => ApiError {
                status: status.as_u16(),
                code: "unexpected_response".to_owned(),
                message: format!("unexpected response from the API at {url}: HTTP {status}"),
            },
        }
        .into())
    }

    pub async fn patch_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.request(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete_json(&self, path: &str) -> anyhow::Result<Value> {
        self.request(reqwest::Method::DELETE, path, None).await
    }

    /// Like the JSON calls, but an error answer that carries the resource it is about (a
    /// replication stream that is invalid or was rolled back: `{"error": …, "stream": …}`)
    /// comes back as `(status, body)` instead of an error.
    pub async fn request_with_status(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let (url, status, bytes) = self.send(method, path, body).await?;
        let value: Option<Value> = serde_json::from_slice(&bytes).ok();
        match value {
            Some(v)
                if status.is_success()
                    || parse_api_error(&v).is_none()
                    || v.get("stream").is_some_and(Value::is_object) =>
            {
                Ok((status.as_u16(), v))
            }
            None if status.is_success() => Ok((status.as_u16(), Value::Null)),
            other => Err(error_answer(other.as_ref(), &url, status).into()),
        }
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let (url, status, bytes) = self.send(method, path, body).await?;
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() && bytes.is_empty() {
            return Ok(Value::Null);
        }
        if status.is_success() {
            return body.ok_or_else(|| {
                Unreachable(format!(
                    "unexpected response from the API at {url}: HTTP {status} without a JSON body"
                ))
                .into()
            });
        }
        Err(error_answer(body.as_ref(), &url, status).into())
    }

    /// Sends one request and reads its whole answer; only not reaching the API (or losing it
    /// mid-answer) is an error here, every HTTP status is the caller's to judge.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(Url, reqwest::StatusCode, Vec<u8>)> {
        let url = self
            .base
            .join(path)
            .with_context(|| format!("build the URL for {path}"))?;
        let mut request = self.http.request(method, url.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            let e = anyhow::Error::from(e);
            Unreachable(format!("could not reach the API at {}: {e:#}", self.base))
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            let e = anyhow::Error::from(e);
            Unreachable(format!("read the response of {url}: {e:#}"))
        })?;
        Ok((url, status, bytes.to_vec()))
    }
}

/// The error an unsuccessful answer stands for: the API's own `{"error": …}` when the body
/// carries one, else an `unexpected_response` naming the URL and status.
fn error_answer(body: Option<&Value>, url: &Url, status: reqwest::StatusCode) -> ApiError {
    let (code, message) = body.and_then(parse_api_error).unwrap_or_else(|| {
        (
            "unexpected_response".to_owned(),
            format!("unexpected response from the API at {url}: HTTP {status}"),
        )
    });
    ApiError {
        status: status.as_u16(),
        code,
        message,
    }
}

/// An answer of the API as the type it is documented to have; a mismatch names the route.
pub fn typed<T: DeserializeOwned>(body: Value, path: &str) -> anyhow::Result<T> {
    serde_json::from_value(body)
        .with_context(|| format!("unexpected shape of the API's answer to {path}"))
}

/// Whether `url` (http) stays on this machine: a loopback address or `localhost`. Anywhere
/// else a bearer token or a login password would cross the network in clear text.
pub fn plain_http_allowed(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    if host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => a.is_loopback(),
        Ok(std::net::IpAddr::V6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|m| m.is_loopback())
        }
        Err(_) => false,
    }
}

/// The API could not be reached or answered garbage (exit code 5, like a server error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

fn parse_api_error(body: &Value) -> Option<(String, String)> {
    let error = body.get("error")?;
    let code = error.get("code")?.as_str()?.to_owned();
    let message = error.get("message")?.as_str()?.to_owned();
    Some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(url: &str) -> ClientEnv {
        ClientEnv {
            url: Some(url.to_owned()),
            ..ClientEnv::default()
        }
    }

    fn err(env: ClientEnv) -> String {
        match ApiClient::from_env(env) {
            Ok(_) => panic!("expected an error"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn url_is_required_and_checked() {
        assert!(err(ClientEnv::default()).contains("no API URL"));
        assert!(err(env("ftp://x")).contains("http:// or https://"));
        assert!(err(env("not a url")).contains("not a valid URL"));
        assert!(err(env("https://")).contains("not a valid URL"));
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:8443",
            "http://127.9.8.7",
            "http://localhost:8443/lasect",
            "http://LOCALHOST",
            "http://[::1]:8443",
            "http://[::ffff:127.0.0.1]",
            "https://db.example.com",
            "https://10.0.0.5:8443",
        ] {
            assert!(ApiClient::from_env(env(ok)).is_ok(), "{ok}");
        }
        for refused in [
            "http://db.example.com",
            "http://10.0.0.5:8443",
            "http://0.0.0.0:8443",
            "http://[::]:8443",
            "http://128.0.0.1",
            "http://localhost.example.com",
            "http://127.0.0.1.nip.io",
            "http://[::ffff:10.0.0.1]",
        ] {
            let e = err(env(refused));
            assert!(
                e.contains("plain http://") && e.contains("use https://"),
                "{refused}: {e}"
            );
        }
    }

    #[test]
    fn base_path_is_kept() {
        let client = ApiClient::from_env(env("https://example.com/lasect")).expect("client");
        assert_eq!(
            client
                .base_url()
                .join("api/v1/instances")
                .expect("join")
                .as_str(),
            "https://example.com/lasect/api/v1/instances"
        );
    }

    #[test]
    fn ca_file_problems_are_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = ClientEnv {
            ca_file: Some(dir.path().join("nope.pem")),
            ..env("https://127.0.0.1:1")
        };
        assert!(err(missing).contains("read LASECT_CA_FILE"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here").expect("write");
        let empty = ClientEnv {
            ca_file: Some(empty),
            ..env("https://127.0.0.1:1")
        };
        assert!(err(empty).contains("holds no PEM certificate"));
    }

    #[test]
    fn token_is_not_printed() {
        let e = ClientEnv {
            token: Some(Secret::new("s3cret")),
            ..env("https://x")
        };
        assert!(!format!("{e:?}").contains("s3cret"));
    }
}
