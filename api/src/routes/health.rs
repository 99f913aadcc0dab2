//! `GET /api/v1/health`: is the API up, and can it reach the store?

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use super::AppState;

#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub store: &'static str,
    pub version: &'static str,
}

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
