//! `GET /api/v1/health`: is the API up, and can it reach the store?

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use super::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the store is unavailable.
    pub status: &'static str,
    /// `ok` or `unavailable`.
    pub store: &'static str,
    pub version: &'static str,
}

#[utoipa::path(
    get,
    path = "/api/v1/health",
    tag = "meta",
    responses(
        (status = 200, description = "The API and the store are up", body = Health),
        (status = 503, description = "The store is unavailable", body = Health),
    )
)]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let store_ok = match sqlx::query("SELECT 1").execute(&state.pool).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "health check: store unavailable");
            false
        }
    };
    let (status, health) = if store_ok {
        (StatusCode::OK, ("ok", "ok"))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, ("degraded", "unavailable"))
    };
    (
        status,
        Json(Health {
            status: health.0,
            store: health.1,
            version: env!("CARGO_PKG_VERSION"),
        }),
    )
}
