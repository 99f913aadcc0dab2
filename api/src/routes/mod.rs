//! The HTTP routes. [`router`] builds them all, so tests drive the API with
//! `tower::ServiceExt::oneshot` and no socket.

mod api_error;
mod health;
pub mod http_metrics;
mod instances;
pub mod live;
mod metric_families;
pub mod metrics_series;
pub mod openapi;
mod samples;
pub mod series_spec;
pub mod statements_top;
pub mod time_range;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use sqlx::PgPool;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use api_error::ApiError;
pub use health::Health;
pub use instances::{Instance, InstanceList};
pub use metric_families::{FAMILIES, FamilyKey, FamilySpec};
pub use samples::{MAX_LIMIT, Samples};

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub live: live::LiveHub,
    pub metrics: http_metrics::HttpMetrics,
}

impl AppState {
    pub fn new(pool: PgPool) -> Self {
        AppState {
            live: live::LiveHub::new(pool.clone()),
            metrics: http_metrics::HttpMetrics::new(),
            pool,
        }
    }
}

/// Every route with its OpenAPI description: `routes!` takes the path from the handler's
/// `#[utoipa::path]`, so a route cannot be added without being documented.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(instances::list))
        .routes(routes!(samples::samples))
        .routes(routes!(metrics_series::series))
        .routes(routes!(statements_top::top))
        .routes(routes!(live::live))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(http_metrics::scrape))
}

pub fn router(state: AppState) -> Router {
    let (routes, _document) = api_routes().split_for_parts();
    routes
        .route_layer(middleware::from_fn(http_metrics::mark_route))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(log_request))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            http_metrics::track,
        ))
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
