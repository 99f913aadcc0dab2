//! The OpenAPI 3.1 document of the API, generated from the handlers' `#[utoipa::path]`
//! attributes and served at `GET /api/v1/openapi.json`.
//!
//! Routes are registered through `utoipa_axum` (`routes!`), so a route and its description are
//! added by the same line and cannot drift apart; `tests/openapi.rs` checks that every path of
//! the router is in the document, validates the document against the OpenAPI 3.1 schema and
//! calls every documented route to compare the answers with the documented shapes.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// Every error body: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `not_found`, `invalid_instance_id`, `unknown_family`,
    /// `invalid_query`, `invalid_path`, `invalid_time`, `invalid_range`, `invalid_step`,
    /// `too_many_points`, `method_not_allowed`, `not_websocket`, `invalid_body`,
    /// `unauthenticated`, `invalid_credentials`, `user_disabled`, `invalid_refresh_token`,
    /// `password_change_required`, `weak_password`, `forbidden`, `conflict`, `too_many_attempts`, `too_many_clients`, `store_unavailable`,
    /// `internal`.
    pub code: String,
    /// For people; never contains store errors or other internals.
    pub message: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lasect API",
        description = "Read the metrics of a PostgreSQL fleet and manage its users, tokens and agents. Every route but health, login, refresh, this document and /metrics needs `Authorization: Bearer …`. Errors always have the body \
            `{\"error\":{\"code\",\"message\"}}` (schema `ErrorBody`).",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme the protected routes name: a JWT access token from
/// `POST /api/v1/auth/login` or an API token (`lsat_…`).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A JWT access token from POST /api/v1/auth/login, or an API token",
                    ))
                    .build(),
            ),
        );
    }
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    super::api_routes()
        .into_openapi()
        .to_json()
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot encode the OpenAPI document");
            String::from("{}")
        })
});

/// The document as served (JSON).
pub fn document() -> &'static str {
    &DOCUMENT
}

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}
