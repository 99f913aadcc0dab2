//! What every route that creates a run on the instance in its path does before its own part:
//! one extractor, so the handler of a new run kind is only what is particular to its body.
//!
//! [`RunCall<T, R>`] reads, in this order (the order decides which error a bad request gets):
//! 1. the path: every segment a positive id (`{id}` is the instance; others, such as `{repo}`,
//!    through [`RunTarget::id`]), else 400 `invalid_path`;
//! 2. the caller's role on the instance, at least `R` ([`User`] by default, or [`Admin`]), else
//!    403 (404 when the instance does not exist);
//! 3. `?wait=` (0..=120 s, [`super::super::routes::runs::WaitQuery`]), else 400 `invalid_query`;
//! 4. the JSON body `T` (its integers by the `json_integer` rules of its type), else 400
//!    `invalid_body`.
//!
//! [`RunTarget<R>`] is steps 1–3 alone, for a route that takes no body. Authentication and the
//! audit record are the gate's (`crate::auth::gate`), before any of this.
//!
//! A new route:
//!
//! ```text
//! #[utoipa::path(post, path = "/api/v1/instances/{id}/thing", …,
//!     params(("id" = i64, Path, minimum = 1, description = "Instance id"), WaitQuery),
//!     request_body = ThingRequest, responses(RunStarted))]
//! pub async fn thing(call: RunCall<ThingRequest, Admin>) -> Result<(StatusCode, Json<RunView>), ApiError> {
//!     let RunCall { target, body } = call;
//!     // checks particular to the body: 400 for what the document states, 422 otherwise
//!     target.start(RunParams::Thing(ThingParams { … }), limits).await
//! }
//! ```
//!
//! [`RunTarget::start`] and [`RunTarget::ask`] also hold the caller to
//! [`lasect_runs::RunParams::requires`] for the parameters built, so a body that asks for more
//! (a write, a data dump) can never create a run its caller may not ask for; a route checks it
//! earlier with [`RunTarget::require`] when its refusal must come before other checks.

use std::marker::PhantomData;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Query, RawPathParams, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use lasect_runs::{Requires, RunParams};
use serde::de::DeserializeOwned;

use super::{NewRun, RunView};
use crate::auth::{Principal, Role};
use crate::routes::runs::{WaitQuery, ask, positive_id, start};
use crate::routes::{ApiError, AppState};

/// The least role on the instance a route needs (a type, so the route says it in its signature).
pub trait MinRole {
    const ROLE: Role;
}

/// User on the instance: reads that run on it.
pub struct User;

/// Admin on the instance: runs that write, or read everything.
pub struct Admin;

impl MinRole for User {
    const ROLE: Role = Role::User;
}

impl MinRole for Admin {
    const ROLE: Role = Role::Admin;
}

/// The instance a run is for, its caller (allowed at least `R` there) and the `?wait=` asked.
pub struct RunTarget<R = User> {
    state: AppState,
    principal: Principal,
    /// `{id}` of the path.
    pub instance_id: i64,
    /// Every id of the path, by name.
    ids: Vec<(String, i64)>,
    /// `None`: no `?wait=` was given.
    wait: Option<Duration>,
    role: PhantomData<fn() -> R>,
}

/// A [`RunTarget`] and the route's JSON body.
pub struct RunCall<T, R = User> {
    pub target: RunTarget<R>,
    pub body: T,
}

/// What an error message calls the id in a path segment.
fn what(segment: &str) -> &str {
    match segment {
        "id" => "instance",
        "repo" => "repository",
        other => other,
    }
}

impl<R: MinRole> FromRequestParts<AppState> for RunTarget<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
        let ids = raw
            .iter()
            .map(|(name, value)| Ok((name.to_owned(), positive_id(value, what(name))?)))
            .collect::<Result<Vec<_>, ApiError>>()?;
        let instance_id = ids
            .iter()
            .find_map(|(name, id)| (name == "id").then_some(*id))
            .ok_or_else(|| ApiError::internal("a run route without {id} in its path"))?;
        principal
            .require_on_instance(&state.pool, instance_id, R::ROLE)
            .await?;
        let wait = WaitQuery::parse(Query::<WaitQuery>::from_request_parts(parts, state).await)?;
        Ok(RunTarget {
            state: state.clone(),
            principal,
            instance_id,
            ids,
            wait,
            role: PhantomData,
        })
    }
}

impl<T: DeserializeOwned, R: MinRole> FromRequest<AppState> for RunCall<T, R> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let target = RunTarget::from_request_parts(&mut parts, state).await?;
        let Json(body) = Json::<T>::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
        Ok(RunCall { target, body })
    }
}

impl<R> RunTarget<R> {
    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Another id of the path (`{repo}`…), already checked to be a positive integer.
    pub fn id(&self, segment: &str) -> Result<i64, ApiError> {
        self.ids
            .iter()
            .find_map(|(name, id)| (name == segment).then_some(*id))
            .ok_or_else(|| ApiError::internal(format!("no {{{segment}}} in the route's path")))
    }

    /// `?wait=`, or `default` when none was given.
    pub fn wait_or(&self, default: Duration) -> Duration {
        self.wait.unwrap_or(default)
    }

    /// A role above the route's own, for a body that asks for more (403, as the route's).
    pub async fn require(&self, role: Role) -> Result<(), ApiError> {
        self.principal
            .require_on_instance(&self.state.pool, self.instance_id, role)
            .await
    }

    /// The run to create; the caller must hold the role its parameters require.
    async fn new_run(
        &self,
        params: RunParams,
        limits: (i64, i64, i64, i64),
    ) -> Result<NewRun<'static>, ApiError> {
        self.require(match params.requires() {
            Requires::User => Role::User,
            Requires::Admin => Role::Admin,
        })
        .await?;
        Ok(crate::routes::runs::new_run(
            &self.principal,
            self.instance_id,
            params,
            limits,
        ))
    }

    /// Creates the run, waits as asked (default: not at all), answers with it: 200 when it
    /// ended, else 202.
    pub async fn start(
        &self,
        params: RunParams,
        limits: (i64, i64, i64, i64),
    ) -> Result<(StatusCode, Json<RunView>), ApiError> {
        let run = self.new_run(params, limits).await?;
        start(&self.state, run, self.wait_or(Duration::ZERO)).await
    }

    /// Creates the run and waits for it (`default_wait` when no `?wait=` was given): the run
    /// when it succeeded, else the answer to give (202 with the run, or 422 with its failure).
    pub async fn ask(
        &self,
        params: RunParams,
        limits: (i64, i64, i64, i64),
        default_wait: Duration,
    ) -> Result<Result<RunView, Response>, ApiError> {
        let run = self.new_run(params, limits).await?;
        ask(&self.state, run, self.wait_or(default_wait)).await
    }
}
