//! Extensions, each a run on the instance's agent (docs/CONTROL.md, "Kinds"):
//! `GET|POST /instances/{id}/extensions`.
//!
//! Listing needs user on the instance; enabling, disabling or updating one needs admin on it.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lasect_runs::{
    ExtensionActionParams, ExtensionListParams, ExtensionListResult, ExtensionVerb, RunParams,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::ApiError;
use super::openapi::paths::InstancePath;
use super::openapi::responses::{RunAnswered, RunStarted};
use super::runs::{READ_WAIT, WaitQuery};
use crate::runs::call::{Admin, RunCall, RunQuery, WithWait};
use crate::runs::{RunLimits, RunView};
pub use lasect_api_contract::schema::{ExtensionAction, ExtensionList};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExtensionsQuery {
    /// Database (default: the instance's).
    pub database: Option<String>,
    /// Seconds to wait for the agent, 0..=120 (default 30; 0: answer 202 with the run).
    #[param(maximum = 120)]
    pub wait: Option<u64>,
}

impl WithWait for ExtensionsQuery {
    fn wait(&self) -> Option<u64> {
        self.wait
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/extensions",
    tag = "extensions",
    security(("bearer" = [])),
    params(InstancePath, ExtensionsQuery),
    responses(
        (status = 200, description = "Available and installed extensions", body = ExtensionList),
        RunAnswered,
    )
)]
/// Lists the extensions the instance has and could have. Needs user on it.
pub async fn extensions(call: RunQuery<ExtensionsQuery>) -> Result<Response, ApiError> {
    let RunQuery { target, query: q } = call;
    let limits = RunLimits::default().resolve(1, 16 << 20)?;
    let params = RunParams::ExtensionList(ExtensionListParams {
        database: q.database,
    });
    Ok(match target.ask(params, limits, READ_WAIT).await? {
        Ok(run) => {
            let extensions = run
                .summary
                .map(serde_json::from_value::<ExtensionListResult>)
                .transpose()
                .map_err(|e| ApiError::internal(format!("extension_list result: {e}")))?
                .unwrap_or_default()
                .extensions;
            Json(ExtensionList {
                run_id: run.id,
                extensions,
            })
            .into_response()
        }
        Err(response) => response,
    })
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/extensions",
    tag = "extensions",
    security(("bearer" = [])),
    params(InstancePath, WaitQuery),
    request_body = ExtensionAction,
    responses(RunStarted)
)]
/// Enables, disables or updates an extension. Needs admin on the instance.
pub async fn extension_action(
    call: RunCall<ExtensionAction, Admin>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let RunCall { target, body: r } = call;
    let Some(action) = ExtensionVerb::ALL
        .into_iter()
        .find(|v| v.as_str() == r.action)
    else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "action must be enable, disable or update",
        ));
    };
    let limits = RunLimits::default().resolve(1, 1 << 20)?;
    let params = RunParams::ExtensionAction(ExtensionActionParams {
        action,
        name: r.name,
        version: r.version,
        schema: r.schema,
        cascade: r.cascade,
        database: r.database,
    });
    target.start(params, limits).await
}
