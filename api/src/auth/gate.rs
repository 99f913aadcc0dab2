//! The layer in front of every route: authentication for everything under `/api/` (and
//! `/metrics`) except [`OPEN_PATHS`], and an audit row for every mutating request of a known
//! actor (whatever its outcome, refusals included). Requests nobody vouches for (no valid
//! credentials, failed logins) write no audit row: their refusals are counted per source
//! address and minute ([`super::failures`]), so a stranger cannot grow the audit log.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::audit::{AuditActor, AuditEntry, AuditTarget, Outcome, record};
use super::principal::{Principal, authenticate};
use crate::routes::{ApiError, AppState, ErrorSummary};

/// The only paths under `/api/` answered without credentials.
pub const OPEN_PATHS: &[&str] = &[
    "/api/v1/health",
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/openapi.json",
];

/// Whether `path` needs no credentials.
pub fn is_open(path: &str) -> bool {
    // `/metrics` is guarded too: Prometheus sends a bearer token (`authorization` in its
    // scrape config), so a viewer API token is enough.
    OPEN_PATHS.contains(&path)
        || !(path.starts_with("/api/") || path == "/api" || path == "/metrics")
}

/// What a user whose password an admin reset may still call.
const PASSWORD_CHANGE_PATHS: &[&str] = &[
    "/api/v1/auth/password",
    "/api/v1/auth/logout",
    "/api/v1/auth/me",
];

fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The address the request came from, when the server recorded it.
pub fn source_of(request_extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    request_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

pub async fn gate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let action_path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| path.clone(), |m| m.as_str().to_owned());
    let source = source_of(request.extensions()).map(|a| a.ip().to_string());

    let mut principal_name = None;
    let response = if is_open(&path) {
        next.run(request).await
    } else {
        let header = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // The live WebSocket also takes a ticket: browsers cannot send the header there.
        let authenticated = if path == crate::routes::live::PATH {
            crate::routes::live::authenticate_live(&state, header.as_deref(), request.uri().query())
                .await
        } else {
            authenticate(&state, header.as_deref()).await
        };
        match authenticated {
            Ok(principal)
                if principal.must_change_password
                    && !PASSWORD_CHANGE_PATHS.contains(&path.as_str()) =>
            {
                principal_name = Some(principal.username.clone());
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "password_change_required",
                    "an admin reset your password: set a new one first \
                     (POST /api/v1/auth/password, or `lasect user passwd`)",
                )
                .into_response()
            }
            Ok(principal) => {
                principal_name = Some(principal.username.clone());
                request.extensions_mut().insert::<Principal>(principal);
                next.run(request).await
            }
            Err(e) => e.into_response(),
        }
    };

    let ext = response.extensions();
    let outcome = Outcome::of_status(response.status());
    let actor = ext
        .get::<AuditActor>()
        .map(|a| a.0.clone())
        .or(principal_name);
    let Some(actor) = actor else {
        if outcome == Outcome::Denied {
            count_failure(&state, source.as_deref());
        }
        return response;
    };
    if is_mutating(&method) {
        let target = ext.get::<AuditTarget>().map_or(path, |t| t.0.clone());
        let error = ext
            .get::<ErrorSummary>()
            .map(|e| format!("{}: {}", e.code, e.message));
        let action = format!("{method} {action_path}");
        let entry = AuditEntry {
            actor: &actor,
            action: &action,
            target: Some(&target),
            source: source.as_deref(),
            outcome,
            error: error.as_deref(),
        };
        if let Err(e) = record(&state.pool, &entry).await {
            tracing::error!(error = %e, %action, %actor, "could not write the audit log");
        }
    }
    response
}

/// Counts a refused anonymous request, starting the task that writes the counts on first use.
fn count_failure(state: &AppState, source: Option<&str>) {
    state.auth.failures.count(source, chrono::Utc::now());
    state.auth.flusher.get_or_init(|| {
        let every = std::time::Duration::from_secs(state.auth.config.auth_failure_flush_secs);
        tokio::spawn(super::failures::flush_loop(
            state.auth.clone(),
            state.pool.clone(),
            every,
        ));
    });
}
