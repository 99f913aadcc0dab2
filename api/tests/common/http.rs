//! One request through the router (with a chosen source address, for the auth tests).

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

/// What came back: status, headers, and the body as JSON (`Null` when it is not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
    pub bytes: Vec<u8>,
}

/// The source address of requests that do not care where they come from.
pub const LOCAL: [u8; 4] = [127, 0, 0, 1];

/// Sends `method uri` from `source` with an optional bearer and JSON body.
pub async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
    source: [u8; 4],
) -> Answer {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        builder = builder.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(v) => {
            builder = builder.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let mut request = builder.body(body).expect("request");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((source, 40000))));
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
        bytes: bytes.to_vec(),
    }
}

/// A request to build: `req(method, uri)`, then `.token`, `.json`, `.from`, and `.send`.
pub struct Call<'a> {
    method: &'a str,
    uri: &'a str,
    token: Option<&'a str>,
    body: Option<Value>,
    source: [u8; 4],
}

pub fn req<'a>(method: &'a str, uri: &'a str) -> Call<'a> {
    Call {
        method,
        uri,
        token: None,
        body: None,
        source: LOCAL,
    }
}

impl<'a> Call<'a> {
    pub fn token(mut self, t: &'a str) -> Self {
        self.token = Some(t);
        self
    }
    pub fn json(mut self, v: Value) -> Self {
        self.body = Some(v);
        self
    }
    pub fn from(mut self, ip: [u8; 4]) -> Self {
        self.source = ip;
        self
    }
    pub async fn send(self, app: &Router) -> (StatusCode, Value) {
        let answer = call(
            app,
            self.method,
            self.uri,
            self.token,
            self.body,
            self.source,
        )
        .await;
        (answer.status, answer.body)
    }
}

/// `POST /api/v1/auth/login` with `username` and `password`.
pub async fn login(app: &Router, username: &str, password: &str) -> (StatusCode, Value) {
    req("POST", "/api/v1/auth/login")
        .json(serde_json::json!({"username": username, "password": password}))
        .send(app)
        .await
}
