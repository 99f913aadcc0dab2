//! The HTTP routes. [`router`] builds them all, so tests drive the API with
//! `tower::ServiceExt::oneshot` and no socket.

mod agents;
pub mod alert_channels;
pub mod alerts;
pub mod alerts_rules;
pub mod alerts_silences;
mod api_error;
mod api_tokens;
mod audit_log;
mod auth_routes;
pub mod backup_catalogue;
pub mod backup_label_repos;
pub mod backup_restore;
pub mod backup_schedules;
pub mod backups;
pub mod console;
pub mod data_transfer;
mod enrollment_tokens;
pub mod extensions;
mod health;
pub mod http_metrics;
pub mod instances;
pub mod instances_admin;
pub(crate) mod json_integer;
pub mod live;
pub mod metric_families;
pub mod metrics_series;
pub mod migrations;
pub mod openapi;
pub mod replication;
pub mod replication_streams;
pub mod runs;
mod samples;
pub mod schema_explorer;
pub mod series_spec;
pub mod statements_plans;
pub mod statements_top;
pub mod time_range;
mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    pub live: live::LiveHub,
    pub metrics: http_metrics::HttpMetrics,
    /// Encrypts DSNs of instances added through the API; `None`: adding
    /// one answers 503.
    pub secrets: Option<Arc<lasect_pki::secrets::KeyFile>>,
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
            live: live::LiveHub::new(pool.clone()),
            metrics: http_metrics::HttpMetrics::new(),
            pool,
            auth: Arc::new(auth),
            secrets: None,
        }
    }

    pub fn with_secrets(mut self, keys: lasect_pki::secrets::KeyFile) -> Self {
        self.secrets = Some(Arc::new(keys));
        self
    }

    /// The keyring that seals secrets at rest (DSNs, channel and repository secrets…); 503
    /// `no_secrets_key` naming `what` when the API has no key file or cannot read it.
    pub fn keyring(&self, what: &str) -> Result<Arc<lasect_pki::secrets::Keyring>, ApiError> {
        let unavailable =
            |m: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_secrets_key", m);
        self.secrets
            .as_ref()
            .ok_or_else(|| {
                unavailable(format!(
                    "the API has no secrets key file to encrypt {what} with"
                ))
            })?
            .keyring()
            .map_err(|e| unavailable(format!("the secrets key file cannot be read: {e}")))
    }
}

/// Who may call a route. The gate enforces `Open` vs the rest; handlers check roles through
/// [`crate::auth::Principal`]. Tests walk [`route_specs`] to prove each requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials needed.
    Open,
    /// Any authenticated caller (acts on the caller's own things; instance lists are filtered).
    Authenticated,
    /// At least viewer on the instance in the path (global or by label).
    InstanceViewer,
    /// At least user on the instance in the path (some bodies need admin on it).
    InstanceUser,
    /// At least admin on the instance in the path.
    InstanceAdmin,
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

/// The declared access rule of every route. A test checks that this list and the router (and
/// the OpenAPI document) name exactly the same routes.
pub fn route_specs() -> Vec<RouteSpec> {
    use Access::*;
    vec![
        spec(Method::GET, "/api/v1/health", Open),
        spec(Method::GET, "/api/v1/openapi.json", Open),
        spec(Method::GET, "/metrics", Authenticated),
        spec(Method::POST, "/api/v1/auth/login", Open),
        spec(Method::POST, "/api/v1/auth/refresh", Open),
        spec(Method::POST, "/api/v1/auth/logout", Authenticated),
        spec(Method::GET, "/api/v1/auth/me", Authenticated),
        spec(Method::POST, "/api/v1/auth/password", Authenticated),
        spec(Method::GET, "/api/v1/instances", Authenticated),
        spec(Method::GET, "/api/v1/live", Authenticated),
        spec(Method::POST, "/api/v1/live/ticket", Authenticated),
        // Any role; the graph holds only the instances the caller may view.
        spec(Method::GET, "/api/v1/replication/topology", Authenticated),
        // Streams: listed to viewers of both instances; created and removed by admins of both.
        spec(Method::GET, "/api/v1/replication/streams", Authenticated),
        spec(Method::POST, "/api/v1/replication/streams", Authenticated),
        spec(
            Method::GET,
            "/api/v1/replication/streams/{id}",
            Authenticated,
        ),
        spec(
            Method::DELETE,
            "/api/v1/replication/streams/{id}",
            Authenticated,
        ),
        spec(
            Method::GET,
            "/api/v1/instances/{id}/samples/{family}",
            InstanceViewer,
        ),
        spec(
            Method::GET,
            "/api/v1/instances/{id}/metrics/{family}",
            InstanceViewer,
        ),
        spec(
            Method::GET,
            "/api/v1/instances/{id}/statements/top",
            InstanceViewer,
        ),
        spec(
            Method::GET,
            "/api/v1/instances/{id}/statements/{queryid}/plans",
            InstanceViewer,
        ),
        spec(Method::GET, "/api/v1/users", Admin),
        spec(Method::POST, "/api/v1/users", Admin),
        spec(Method::POST, "/api/v1/users/{username}/role", Admin),
        spec(Method::POST, "/api/v1/users/{username}/disable", Admin),
        spec(Method::POST, "/api/v1/users/{username}/password", Admin),
        spec(Method::GET, "/api/v1/tokens", Authenticated),
        spec(Method::POST, "/api/v1/tokens", Authenticated),
        spec(Method::DELETE, "/api/v1/tokens/{id}", Authenticated),
        spec(Method::GET, "/api/v1/audit", Admin),
        spec(Method::GET, "/api/v1/agents", Admin),
        spec(Method::POST, "/api/v1/agents/enrollment-tokens", Admin),
        spec(Method::POST, "/api/v1/agents/{id}/disable", Admin),
        spec(Method::GET, "/api/v1/agents/enrollment-tokens", Admin),
        spec(
            Method::POST,
            "/api/v1/agents/enrollment-tokens/{id}/revoke",
            Admin,
        ),
        spec(Method::GET, "/api/v1/agents/{id}/certificates", Admin),
        spec(
            Method::POST,
            "/api/v1/agents/{id}/certificates/{serial}/revoke",
            Admin,
        ),
        spec(Method::POST, "/api/v1/instances", Admin),
        spec(Method::GET, "/api/v1/instances/{id}", InstanceViewer),
        spec(Method::DELETE, "/api/v1/instances/{id}", InstanceAdmin),
        spec(Method::POST, "/api/v1/instances/{id}/test", InstanceUser),
        spec(Method::POST, "/api/v1/instances/{id}/refresh", InstanceUser),
        spec(Method::POST, "/api/v1/instances/{id}/sql", InstanceUser),
        spec(Method::POST, "/api/v1/instances/{id}/explain", InstanceUser),
        spec(
            Method::POST,
            "/api/v1/instances/{id}/schema/snapshots",
            InstanceUser,
        ),
        spec(Method::GET, "/api/v1/instances/{id}/schema", InstanceViewer),
        spec(
            Method::GET,
            "/api/v1/instances/{id}/schema/changes",
            InstanceViewer,
        ),
        spec(
            Method::GET,
            "/api/v1/instances/{id}/schema/graph",
            InstanceViewer,
        ),
        spec(
            Method::GET,
            "/api/v1/instances/{id}/tables/{schema}/{table}/rows",
            InstanceUser,
        ),
        spec(Method::POST, "/api/v1/instances/{id}/export", InstanceUser),
        spec(Method::POST, "/api/v1/instances/{id}/dump", InstanceUser),
        spec(Method::POST, "/api/v1/instances/{id}/import", InstanceAdmin),
        spec(
            Method::GET,
            "/api/v1/instances/{id}/extensions",
            InstanceUser,
        ),
        spec(
            Method::POST,
            "/api/v1/instances/{id}/extensions",
            InstanceAdmin,
        ),
        spec(Method::POST, "/api/v1/migrations", Admin),
        spec(Method::GET, "/api/v1/migrations", Admin),
        spec(Method::GET, "/api/v1/migrations/{id}", Admin),
        spec(Method::POST, "/api/v1/migrations/{id}/cancel", Admin),
        spec(Method::GET, "/api/v1/runs", Authenticated),
        spec(Method::GET, "/api/v1/runs/{id}", Authenticated),
        spec(Method::GET, "/api/v1/runs/{id}/result", Authenticated),
        spec(Method::GET, "/api/v1/runs/{id}/download", Authenticated),
        spec(Method::POST, "/api/v1/runs/{id}/cancel", Authenticated),
        // Alerts: viewers see (instance alerts by label grant), global users acknowledge,
        // test and silence (checked in the handlers), admins write rules.
        spec(Method::GET, "/api/v1/alerts", Authenticated),
        spec(Method::POST, "/api/v1/alerts/{id}/ack", Authenticated),
        spec(Method::GET, "/api/v1/alerts/history", Authenticated),
        spec(Method::GET, "/api/v1/alerts/rules", Authenticated),
        spec(Method::POST, "/api/v1/alerts/rules", Admin),
        spec(Method::PUT, "/api/v1/alerts/rules/{id}", Admin),
        spec(Method::DELETE, "/api/v1/alerts/rules/{id}", Admin),
        spec(Method::POST, "/api/v1/alerts/rules/apply", Admin),
        spec(Method::GET, "/api/v1/alerts/rules/export", Authenticated),
        spec(Method::POST, "/api/v1/alerts/rules/test", Authenticated),
        // Backups: viewers see the repositories (no secrets), admins of the instance do the rest.
        spec(
            Method::GET,
            "/api/v1/instances/{id}/backup/repositories",
            InstanceViewer,
        ),
        spec(
            Method::POST,
            "/api/v1/instances/{id}/backup/repositories",
            InstanceAdmin,
        ),
        spec(
            Method::DELETE,
            "/api/v1/instances/{id}/backup/repositories/{repo}",
            InstanceAdmin,
        ),
        spec(
            Method::POST,
            "/api/v1/instances/{id}/backup/repositories/{repo}/stanza",
            InstanceAdmin,
        ),
        spec(
            Method::POST,
            "/api/v1/instances/{id}/backup/repositories/{repo}/backups",
            InstanceAdmin,
        ),
        spec(
            Method::POST,
            "/api/v1/instances/{id}/backup/repositories/{repo}/info",
            InstanceAdmin,
        ),
        spec(
            Method::POST,
            "/api/v1/instances/{id}/backup/repositories/{repo}/restore",
            InstanceAdmin,
        ),
        spec(
            Method::POST,
            "/api/v1/instances/{id}/backup/repositories/{repo}/drills",
            InstanceAdmin,
        ),
        // Any role: the handler requires viewer on the instance asked for.
        spec(Method::GET, "/api/v1/backups/drills", Authenticated),
        spec(Method::GET, "/api/v1/backups/running", Authenticated),
        // Backup schedules and the stored catalogue: viewers see, admins of the instance (or
        // of the schedule's label) change; checked in the handlers.
        spec(Method::GET, "/api/v1/backup/schedules", Authenticated),
        spec(Method::POST, "/api/v1/backup/schedules", Authenticated),
        spec(
            Method::DELETE,
            "/api/v1/backup/schedules/{id}",
            Authenticated,
        ),
        spec(Method::GET, "/api/v1/backup/firings", Authenticated),
        // Repositories for a label: viewers of the label see them, its admins change them.
        spec(
            Method::GET,
            "/api/v1/backup/label-repositories",
            Authenticated,
        ),
        spec(
            Method::POST,
            "/api/v1/backup/label-repositories",
            Authenticated,
        ),
        spec(
            Method::DELETE,
            "/api/v1/backup/label-repositories/{id}",
            Authenticated,
        ),
        spec(Method::GET, "/api/v1/backups", Authenticated),
        spec(Method::GET, "/api/v1/alerts/silences", Authenticated),
        spec(Method::POST, "/api/v1/alerts/silences", Authenticated),
        // Notification channels and routes: global viewers read (never secrets), admins edit.
        spec(Method::GET, "/api/v1/alerts/channels", Authenticated),
        spec(Method::POST, "/api/v1/alerts/channels", Admin),
        spec(Method::GET, "/api/v1/alerts/channels/{id}", Authenticated),
        spec(Method::PATCH, "/api/v1/alerts/channels/{id}", Admin),
        spec(Method::DELETE, "/api/v1/alerts/channels/{id}", Admin),
        spec(Method::POST, "/api/v1/alerts/channels/{id}/test", Admin),
        spec(Method::GET, "/api/v1/alerts/routes", Authenticated),
        spec(Method::POST, "/api/v1/alerts/routes", Admin),
        spec(Method::PATCH, "/api/v1/alerts/routes/{id}", Admin),
        spec(Method::DELETE, "/api/v1/alerts/routes/{id}", Admin),
        spec(Method::GET, "/api/v1/alerts/deliveries", Authenticated),
        spec(
            Method::DELETE,
            "/api/v1/alerts/silences/{id}",
            Authenticated,
        ),
    ]
}

/// Every route with its OpenAPI description: `routes!` takes the path from the handler's
/// `#[utoipa::path]`, so a route cannot be added without being documented.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(instances::list, instances_admin::add))
        .routes(routes!(instances_admin::show, instances_admin::remove))
        .routes(routes!(instances_admin::test))
        .routes(routes!(instances_admin::refresh))
        .routes(routes!(samples::samples))
        .routes(routes!(metrics_series::series))
        .routes(routes!(statements_top::top))
        .routes(routes!(statements_plans::plans))
        .routes(routes!(live::live))
        .routes(routes!(live::ticket))
        .routes(routes!(replication::topology))
        .routes(routes!(
            replication_streams::list,
            replication_streams::create
        ))
        .routes(routes!(
            replication_streams::get,
            replication_streams::remove
        ))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(http_metrics::scrape))
        .routes(routes!(auth_routes::login))
        .routes(routes!(auth_routes::refresh))
        .routes(routes!(auth_routes::logout))
        .routes(routes!(auth_routes::me))
        .routes(routes!(auth_routes::change_password))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::set_role))
        .routes(routes!(users::disable))
        .routes(routes!(users::reset_password))
        .routes(routes!(api_tokens::list, api_tokens::create))
        .routes(routes!(api_tokens::revoke))
        .routes(routes!(audit_log::list))
        .routes(routes!(agents::list))
        .routes(routes!(
            agents::create_enrollment_token,
            enrollment_tokens::list
        ))
        .routes(routes!(enrollment_tokens::revoke))
        .routes(routes!(agents::certificates))
        .routes(routes!(agents::revoke_certificate))
        .routes(routes!(agents::disable))
        .routes(routes!(schema_explorer::snapshot))
        .routes(routes!(schema_explorer::schema))
        .routes(routes!(schema_explorer::changes))
        .routes(routes!(schema_explorer::fk_graph))
        .routes(routes!(schema_explorer::rows))
        .routes(routes!(data_transfer::export))
        .routes(routes!(data_transfer::dump))
        .routes(routes!(data_transfer::import))
        .routes(routes!(
            extensions::extensions,
            extensions::extension_action
        ))
        .routes(routes!(migrations::start, migrations::list))
        .routes(routes!(migrations::show))
        .routes(routes!(migrations::cancel))
        .routes(routes!(runs::sql))
        .routes(routes!(runs::explain))
        .routes(routes!(runs::list))
        .routes(routes!(runs::show))
        .routes(routes!(runs::result))
        .routes(routes!(runs::download))
        .routes(routes!(runs::cancel))
        .routes(routes!(alerts::list))
        .routes(routes!(alerts::ack))
        .routes(routes!(alerts::history))
        .routes(routes!(alerts_rules::list, alerts_rules::create))
        .routes(routes!(alerts_rules::replace, alerts_rules::remove))
        .routes(routes!(alerts_rules::apply))
        .routes(routes!(alerts_rules::export))
        .routes(routes!(alerts_rules::test))
        .routes(routes!(alerts_silences::list, alerts_silences::create))
        .routes(routes!(alerts_silences::remove))
        .routes(routes!(
            alert_channels::list_channels,
            alert_channels::add_channel
        ))
        .routes(routes!(
            alert_channels::show_channel,
            alert_channels::edit_channel,
            alert_channels::remove_channel
        ))
        .routes(routes!(alert_channels::test_channel))
        .routes(routes!(
            alert_channels::list_routes,
            alert_channels::add_route
        ))
        .routes(routes!(
            alert_channels::edit_route,
            alert_channels::remove_route
        ))
        .routes(routes!(alert_channels::deliveries))
        .routes(routes!(backups::list, backups::add))
        .routes(routes!(backups::remove))
        .routes(routes!(backups::stanza))
        .routes(routes!(backups::backup))
        .routes(routes!(backups::info))
        .routes(routes!(backup_label_repos::list, backup_label_repos::add))
        .routes(routes!(backup_label_repos::remove))
        .routes(routes!(backup_restore::restore))
        .routes(routes!(backup_restore::drill))
        .routes(routes!(backup_restore::drills))
        .routes(routes!(backup_restore::running))
        .routes(routes!(backup_schedules::list, backup_schedules::add))
        .routes(routes!(backup_schedules::remove))
        .routes(routes!(backup_schedules::firings))
        .routes(routes!(backup_catalogue::list))
}

pub fn router(state: AppState) -> Router {
    let (routes, _document) = api_routes().split_for_parts();
    routes
        .route_layer(middleware::from_fn(http_metrics::mark_route))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::gate::gate,
        ))
        .layer(middleware::from_fn(log_request))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            http_metrics::track,
        ))
        .with_state(state)
}

/// The console's files (`console`), else the API's 404.
async fn no_route(request: Request) -> Response {
    if let Some(response) =
        console::serve(request.method(), request.uri().path(), request.headers())
    {
        return response;
    }
    ApiError::not_found(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
    .into_response()
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
