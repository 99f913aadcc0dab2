//! The HTTP routes. [`router`] builds them all, so tests drive the API with
//! `tower::ServiceExt::oneshot` and no socket.

mod agents;
mod api_error;
mod api_tokens;
mod audit_log;
mod auth_routes;
mod health;
mod instances;
mod metric_families;
mod samples;
mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodRouter, delete, get, post};
use sqlx::PgPool;

use crate::auth::AuthState;
use crate::auth::jwt::JwtKeys;
use crate::auth::settings::AuthConfig;

pub use api_error::{ApiError, ErrorSummary};
pub use audit_log::parse_since;
pub use health::Health;
pub use instances::{Instance, InstanceList};
pub use metric_families::{FAMILIES, FamilyKey, FamilySpec};
pub use samples::{MAX_LIMIT, Samples};

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub auth: Arc<AuthState>,
}

impl AppState {
    /// Default auth settings and a signing key that lives as long as the process.
    pub fn new(pool: PgPool) -> Self {
        Self::with_auth(
            pool,
            AuthState::new(JwtKeys::ephemeral(), AuthConfig::default()),
        )
    }

    pub fn with_auth(pool: PgPool, auth: AuthState) -> Self {
        AppState {
            pool,
            auth: Arc::new(auth),
        }
    }
}

/// Who may call a route. The gate enforces `Open` vs the rest; handlers check roles through
/// [`crate::auth::Principal`]. Tests walk [`route_specs`] to prove each requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials needed.
    Open,
    /// Any authenticated caller (acts on the caller's own things).
    Authenticated,
    /// At least viewer on the instance in the path (global or by label).
    InstanceViewer,
    /// Global admin.
    Admin,
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

const fn spec(method: Method, path: &'static str, access: Access) -> RouteSpec {
    RouteSpec {
        method,
        path,
        access,
    }
}

/// Every route with its handler: the router is built from this list only, so no route exists
/// without a declared access rule.
fn routes() -> Vec<(RouteSpec, MethodRouter<AppState>)> {
    use Access::*;
    vec![
        (
            spec(Method::GET, "/api/v1/health", Open),
            get(health::health),
        ),
        (
            spec(Method::POST, "/api/v1/auth/login", Open),
            post(auth_routes::login),
        ),
        (
            spec(Method::POST, "/api/v1/auth/refresh", Open),
            post(auth_routes::refresh),
        ),
        (
            spec(Method::POST, "/api/v1/auth/logout", Authenticated),
            post(auth_routes::logout),
        ),
        (
            spec(Method::GET, "/api/v1/auth/me", Authenticated),
            get(auth_routes::me),
        ),
        (
            spec(Method::GET, "/api/v1/instances", Authenticated),
            get(instances::list),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/instances/{id}/samples/{family}",
                InstanceViewer,
            ),
            get(samples::samples),
        ),
        (spec(Method::GET, "/api/v1/users", Admin), get(users::list)),
        (
            spec(Method::POST, "/api/v1/users", Admin),
            post(users::create),
        ),
        (
            spec(Method::POST, "/api/v1/users/{username}/role", Admin),
            post(users::set_role),
        ),
        (
            spec(Method::POST, "/api/v1/users/{username}/disable", Admin),
            post(users::disable),
        ),
        (
            spec(Method::GET, "/api/v1/tokens", Authenticated),
            get(api_tokens::list),
        ),
        (
            spec(Method::POST, "/api/v1/tokens", Authenticated),
            post(api_tokens::create),
        ),
        (
            spec(Method::DELETE, "/api/v1/tokens/{id}", Authenticated),
            delete(api_tokens::revoke),
        ),
        (
            spec(Method::GET, "/api/v1/audit", Admin),
            get(audit_log::list),
        ),
        (
            spec(Method::GET, "/api/v1/agents", Admin),
            get(agents::list),
        ),
        (
            spec(Method::POST, "/api/v1/agents/enrollment-tokens", Admin),
            post(agents::create_enrollment_token),
        ),
        (
            spec(Method::POST, "/api/v1/agents/{id}/disable", Admin),
            post(agents::disable),
        ),
    ]
}

/// The declared access rule of every route.
pub fn route_specs() -> Vec<RouteSpec> {
    routes().into_iter().map(|(spec, _)| spec).collect()
}

pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (spec, handler) in routes() {
        router = router.route(spec.path, handler);
    }
    router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::gate::gate,
        ))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

async fn no_route(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    tracing::debug!(%method, %path, status = response.status().as_u16(), "request");
    response
}
