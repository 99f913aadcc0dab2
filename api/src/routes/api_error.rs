//! The one error shape of the API: `{"error": {"code": "...", "message": "..."}}`.
//!
//! Codes are stable and meant for programs (the list is in docs/CONTRACTS.md and in the
//! OpenAPI document's `ErrorDetail`);
//! messages are for people. Store errors and other internals are logged here, once, and never
//! sent to the client.

use axum::Json;
use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
}

/// Put in the extensions of every error response, so the audit layer can record what failed
/// without parsing the body.
#[derive(Debug, Clone)]
pub struct ErrorSummary {
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// 401 `unauthenticated`, with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403 `forbidden`: authenticated, but the role is too low.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 429 `too_many_attempts` with `Retry-After`.
    pub fn too_many_attempts(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", message);
        e.retry_after_secs = Some(retry_after_secs.max(1));
        e
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 400: the request breaks a rule the OpenAPI document states (types, ranges, patterns).
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422: the request is well-formed by the document but cannot be carried out as asked
    /// (a reversed time range, a DSN without a host): a rule no schema expresses.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// An unexpected failure: `detail` goes to the log, the client sees a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// The message for people (never internals).
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        // Connection (08), resources (53), operator intervention such as a shutdown (57):
        // the store is going away or overloaded, not a bug of the query.
        let unavailable_sqlstate = match &err {
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|c| ["08", "53", "57"].iter().any(|class| c.starts_with(class))),
            _ => false,
        };
        // 22021 (a NUL byte in text) and 22P05 (`\u0000` in jsonb): PostgreSQL stores no NUL
        // character, whatever the client sent; the request cannot be carried out as asked.
        let nul_in_text = match &err {
            sqlx::Error::Database(db) => db.code().is_some_and(|c| c == "22021" || c == "22P05"),
            _ => false,
        };
        match err {
            _ if nul_in_text => Self::unprocessable(
                "nul_character",
                "a text value holds the NUL character (U+0000), which PostgreSQL cannot store",
            ),
            // The store cannot be reached: a condition to retry, not a bug.
            _ if unavailable_sqlstate => {
                tracing::warn!(error = %err, "store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store is unavailable, try again later",
                )
            }
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(error = %err, "store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store is unavailable, try again later",
                )
            }
            other => Self::internal(format_args!("store query failed: {other}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after_secs {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(ErrorSummary {
            code: self.code,
            message: self.message,
        });
        response
    }
}
