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

pub mod paths;
pub mod responses;

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
    /// `password_change_required`, `weak_password`, `forbidden`, `conflict`, `invalid_rule`,
    /// `invalid_silence`, `rule_failed`, `too_many_attempts`, `too_many_clients`, `store_unavailable`,
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
    // The bodies of the shared response sets ([`responses`]), which utoipa does not
    // collect from an `IntoResponses` type.
    components(schemas(
        ErrorBody,
        ErrorDetail,
        crate::runs::RunView,
        super::instances_admin::CheckFailed
    )),
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
    let encoded = super::api_routes()
        .into_openapi()
        .to_json()
        .and_then(|json| serde_json::from_str::<serde_json::Value>(&json))
        .and_then(|mut doc| {
            close_flattened_schemas(&mut doc);
            document_unprocessable(&mut doc);
            serde_json::to_string(&doc)
        });
    encoded.unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot encode the OpenAPI document");
        String::from("{}")
    })
});

/// Every operation may answer 422 (`ApiError::unprocessable`): a request well-formed by this
/// document that cannot be carried out as asked. Beside each route's own reasons, any text with
/// a NUL character (U+0000) is one, wherever it goes: PostgreSQL stores none. Operations whose
/// own annotations do not list 422 get it here, with the error body.
fn document_unprocessable(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for (method, operation) in item.iter_mut() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            responses.entry("422").or_insert_with(|| {
                json!({
                    "description": "Well-formed, but cannot be carried out as asked (e.g. a text \
                                    holding the NUL character, which PostgreSQL cannot store)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
                })
            });
        }
    }
}

/// Request bodies that embed another struct (`#[serde(flatten)] limits: RunLimits`) come out of
/// utoipa as `allOf: [$ref, {…}]`, which leaves unknown properties allowed although the handler
/// refuses them (`deny_unknown_fields`, like every request body of this API). Each such schema
/// becomes one object with every property, the union of `required`, and
/// `additionalProperties: false`: exactly what the handler accepts.
fn close_flattened_schemas(doc: &mut serde_json::Value) {
    use serde_json::{Map, Value};
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let snapshot = schemas.clone();
    let resolve = |part: &Value| -> Option<Value> {
        match part.get("$ref").and_then(Value::as_str) {
            Some(r) => snapshot
                .get(r.strip_prefix("#/components/schemas/")?)
                .cloned(),
            None => Some(part.clone()),
        }
    };
    for schema in schemas.values_mut() {
        let Some(parts) = schema.get("allOf").and_then(Value::as_array) else {
            continue;
        };
        let mut properties = Map::new();
        let mut required: Vec<Value> = Vec::new();
        for part in parts.iter().filter_map(resolve) {
            if let Some(p) = part.get("properties").and_then(Value::as_object) {
                properties.extend(p.clone());
            }
            for r in part
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !required.contains(r) {
                    required.push(r.clone());
                }
            }
        }
        let mut closed = Map::new();
        closed.insert("type".into(), Value::from("object"));
        if let Some(d) = schema.get("description") {
            closed.insert("description".into(), d.clone());
        }
        if !required.is_empty() {
            closed.insert("required".into(), Value::Array(required));
        }
        closed.insert("properties".into(), Value::Object(properties));
        closed.insert("additionalProperties".into(), Value::Bool(false));
        *schema = Value::Object(closed);
    }
}

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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    #[test]
    fn flattened_request_bodies_are_single_closed_objects() {
        let doc: Value = serde_json::from_str(super::document()).expect("the document is JSON");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for (name, schema) in schemas {
            assert!(schema.get("allOf").is_none(), "{name} is still an allOf");
        }
        let sql = &schemas["SqlRequest"];
        assert_eq!(sql["additionalProperties"], json!(false));
        assert_eq!(sql["required"], json!(["sql"]));
        for field in [
            "sql",
            "params",
            "write",
            "database",
            "timeout_ms",
            "max_rows",
        ] {
            assert!(sql["properties"].get(field).is_some(), "SqlRequest.{field}");
        }
        assert_eq!(sql["properties"]["max_rows"]["maximum"], json!(1_000_000));
    }
}
