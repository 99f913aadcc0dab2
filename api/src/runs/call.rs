//! What every route that creates a run on the instance in its path does before its own part:
//! one extractor, so the handler of a new run kind is only what is particular to its body.
//!
//! [`RunCall<T, R>`] reads, in this order (the order decides which error a bad request gets):
//! 1. the path: `{id}` (the instance) and `{repo}` as positive ids, else 400 `invalid_path`;
//!    other segments as text ([`RunTarget::segment`]);
//! 2. the caller's role on the instance, at least `R` ([`User`] by default, or [`Admin`]), else
//!    403 (404 when the instance does not exist);
//! 3. the query: `?wait=` alone ([`WaitQuery`], 0..=120 s), else 400 `invalid_query`;
//! 4. the JSON body `T` (its integers by the `json_integer` rules of its type), else 400
//!    `invalid_body`.
//!
//! [`RunTarget<R>`] is steps 1–3 alone, for a route that takes no body; [`RunQuery<Q, R>`] is
//! steps 1–3 with the route's own query `Q` (which holds `wait` too: [`WithWait`]), for a GET
//! that answers with the run's result or a route whose body is not JSON. Authentication and
//! the audit record are the gate's (`crate::auth::gate`), before any of this.
//!
//! A new route:
//!
//! ```text
//! #[utoipa::path(post, path = "/api/v1/instances/{id}/thing", …,
//!     params(InstancePath, WaitQuery), // routes::openapi::paths
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
pub use crate::routes::runs::WaitQuery;
use crate::routes::runs::{ask, positive_id, start, wait_secs};
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

/// The query of a run route: `?wait=` (seconds) and whatever else the route reads.
pub trait WithWait: DeserializeOwned {
    fn wait(&self) -> Option<u64>;
}

impl WithWait for WaitQuery {
    fn wait(&self) -> Option<u64> {
        self.wait
    }
}

/// The instance a run is for, its caller (allowed at least `R` there) and the `?wait=` asked.
pub struct RunTarget<R = User> {
    state: AppState,
    principal: Principal,
    /// `{id}` of the path.
    pub instance_id: i64,
    /// The path's segments: ids parsed, the rest as text.
    segments: Vec<(String, Segment)>,
    /// `None`: no `?wait=` was given.
    wait: Option<Duration>,
    role: PhantomData<fn() -> R>,
}

enum Segment {
    Id(i64),
    Text(String),
}

/// A [`RunTarget`] and the route's JSON body.
pub struct RunCall<T, R = User> {
    pub target: RunTarget<R>,
    pub body: T,
}

/// A [`RunTarget`] and the route's own query.
pub struct RunQuery<Q, R = User> {
    pub target: RunTarget<R>,
    pub query: Q,
}

/// The path segments that hold ids, and what an error message calls each.
const ID_SEGMENTS: [(&str, &str); 2] = [("id", "instance"), ("repo", "repository")];

/// Steps 1–3 of the module's list, with the route's query `Q`.
async fn extract<R: MinRole, Q: WithWait>(
    parts: &mut Parts,
    state: &AppState,
) -> Result<(RunTarget<R>, Q), ApiError> {
    let principal = Principal::from_request_parts(parts, state).await?;
    let raw = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    let mut segments = Vec::new();
    for (name, value) in raw.iter() {
        let segment = match ID_SEGMENTS.iter().find(|(id, _)| *id == name) {
            Some((_, what)) => Segment::Id(positive_id(value, what)?),
            None => Segment::Text(value.to_owned()),
        };
        segments.push((name.to_owned(), segment));
    }
    let instance_id = match segments.iter().find(|(name, _)| name == "id") {
        Some((_, Segment::Id(id))) => *id,
        _ => return Err(ApiError::internal("a run route without {id} in its path")),
    };
    principal
        .require_on_instance(&state.pool, instance_id, R::ROLE)
        .await?;
    let Query(query) = Query::<Q>::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let wait = wait_secs(query.wait())?;
    let target = RunTarget {
        state: state.clone(),
        principal,
        instance_id,
        segments,
        wait,
        role: PhantomData,
    };
    Ok((target, query))
}

impl<R: MinRole> FromRequestParts<AppState> for RunTarget<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (target, _) = extract::<R, WaitQuery>(parts, state).await?;
        Ok(target)
    }
}

impl<Q: WithWait, R: MinRole> FromRequestParts<AppState> for RunQuery<Q, R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (target, query) = extract::<R, Q>(parts, state).await?;
        Ok(RunQuery { target, query })
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

    /// Another id of the path (`{repo}`), already checked to be a positive integer.
    pub fn id(&self, segment: &str) -> Result<i64, ApiError> {
        match self.segments.iter().find(|(name, _)| name == segment) {
            Some((_, Segment::Id(id))) => Ok(*id),
            _ => Err(ApiError::internal(format!(
                "no id {{{segment}}} in the path"
            ))),
        }
    }

    /// A text segment of the path (`{schema}`, `{table}`…).
    pub fn segment(&self, segment: &str) -> Result<&str, ApiError> {
        match self.segments.iter().find(|(name, _)| name == segment) {
            Some((_, Segment::Text(text))) => Ok(text),
            _ => Err(ApiError::internal(format!("no {{{segment}}} in the path"))),
        }
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
    async fn new_run<'a>(
        &self,
        params: RunParams,
        limits: (i64, i64, i64, i64),
        input: Option<&'a [u8]>,
    ) -> Result<NewRun<'a>, ApiError> {
        self.require(match params.requires() {
            Requires::User => Role::User,
            Requires::Admin => Role::Admin,
        })
        .await?;
        let mut run =
            crate::routes::runs::new_run(&self.principal, self.instance_id, params, limits);
        run.input = input;
        Ok(run)
    }

    /// Creates the run, waits as asked (default: not at all), answers with it: 200 when it
    /// ended, else 202.
    pub async fn start(
        &self,
        params: RunParams,
        limits: (i64, i64, i64, i64),
    ) -> Result<(StatusCode, Json<RunView>), ApiError> {
        let run = self.new_run(params, limits, None).await?;
        start(&self.state, run, self.wait_or(Duration::ZERO)).await
    }

    /// [`Self::start`] for a run that reads `input` (stored with it, compressed).
    pub async fn start_with_input(
        &self,
        params: RunParams,
        limits: (i64, i64, i64, i64),
        input: &[u8],
    ) -> Result<(StatusCode, Json<RunView>), ApiError> {
        let run = self.new_run(params, limits, Some(input)).await?;
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
        let run = self.new_run(params, limits, None).await?;
        ask(&self.state, run, self.wait_or(default_wait)).await
    }
}
