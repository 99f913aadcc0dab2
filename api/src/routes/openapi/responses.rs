//! The answers routes share, as sets for the OpenAPI document: a route names its own success
//! answer and one set, instead of listing the same error answers route after route.
//!
//! How a route uses them, in its `#[utoipa::path]`:
//!
//! ```text
//! responses(
//!     (status = 200, description = "What this route answers", body = Thing),
//!     ById,
//!     Conflict,
//!     (status = 409, description = "What conflicts, said for this route", body = ErrorBody),
//! )
//! ```
//!
//! The success answer comes first; then the set that describes the route (below); then any
//! single answers it adds ([`Conflict`], [`Unprocessable`]); last, a tuple for a status whose
//! description says more than the set's (a later entry for the same status replaces an earlier
//! one). A route that creates a run and answers with it takes [`RunStarted`]; one that answers
//! with a run's result takes [`RunAnswered`] and its own 200 (their handlers take
//! [`crate::runs::call::RunCall`]).
//!
//! A set lists only statuses its routes can give: the document must stay exactly as strict as
//! the handlers (Schemathesis fails on an undocumented status). Every error answer carries
//! [`super::ErrorBody`], except a failed run's 422 ([`super::super::instances_admin::CheckFailed`]).
//! Every operation gets a 422 anyway (`super::document_unprocessable`: a text holding NUL).

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

/// One documented answer: status, description and the schema of its JSON body.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    status: u16,
    description: &'static str,
    schema: &'static str,
}

impl Answer {
    const fn error(status: u16, description: &'static str) -> Self {
        Self::body(status, description, "ErrorBody")
    }

    const fn body(status: u16, description: &'static str, schema: &'static str) -> Self {
        Answer {
            status,
            description,
            schema,
        }
    }

    fn entry(self) -> (String, RefOr<Response>) {
        let content = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(self.schema)))
            .build();
        let response = ResponseBuilder::new()
            .description(self.description)
            .content("application/json", content)
            .build();
        (self.status.to_string(), response.into())
    }
}

const BAD_REQUEST: Answer =
    Answer::error(400, "Breaks this document (type, range, pattern, field)");
const UNAUTHENTICATED: Answer = Answer::error(401, "Not authenticated");
const FORBIDDEN: Answer = Answer::error(403, "Role too low (the route's description says which)");
const NOT_FOUND: Answer = Answer::error(404, "What the path names does not exist (or is hidden)");
const CONFLICT: Answer = Answer::error(409, "Conflicts with the current state");
const UNPROCESSABLE: Answer = Answer::error(422, "Well-formed, but cannot be carried out as asked");
const STORE_UNAVAILABLE: Answer = Answer::error(503, "Store unavailable");
const AGENT_DISABLED: Answer =
    Answer::error(409, "The agent is disabled, or a like run is under way");
const RUN_ENDED: Answer = Answer::body(200, "The run, ended; its summary is the result", "RunView");
const RUN_GOES_ON: Answer = Answer::body(
    202,
    "The run, still going: follow it at /api/v1/runs/{id}",
    "RunView",
);
const RUN_FAILED: Answer =
    Answer::body(422, "The run failed: error, run id, report", "CheckFailed");

/// What a route about one thing its path names may answer besides its success.
const BY_ID: &[Answer] = &[
    BAD_REQUEST,
    UNAUTHENTICATED,
    FORBIDDEN,
    NOT_FOUND,
    STORE_UNAVAILABLE,
];

/// Declares a set: a type whose `IntoResponses` is the given answers, then those of the
/// groups after `+`.
macro_rules! response_set {
    ($(#[$doc:meta])* $name:ident = [$($answer:expr),* $(,)?] $(+ $group:expr)*) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                let groups: &[&[Answer]] = &[&[$($answer),*] $(, $group)*];
                groups.iter().flat_map(|g| g.iter().copied()).map(Answer::entry).collect()
            }
        }
    };
}

response_set!(
    /// A route any authenticated caller may use, without input that can be wrong.
    SignedIn = [UNAUTHENTICATED, STORE_UNAVAILABLE]
);
response_set!(
    /// A route that needs a role, without input that can be wrong.
    RoleNeeded = [UNAUTHENTICATED, FORBIDDEN, STORE_UNAVAILABLE]
);
response_set!(
    /// A route about one thing its path names (an instance, a run, a token…): a bad id, a role
    /// too low, nothing by that id.
    ById = [] + BY_ID
);
response_set!(
    /// A list any authenticated caller may read, filtered by its query.
    Filtered = [BAD_REQUEST, UNAUTHENTICATED, STORE_UNAVAILABLE]
);
response_set!(
    /// A route that takes a query or a body but names nothing in its path.
    WithInput = [BAD_REQUEST, UNAUTHENTICATED, FORBIDDEN, STORE_UNAVAILABLE]
);
response_set!(
    /// A route that creates a run on the instance in its path and answers with the run (200
    /// when it ended within `?wait=`, else 202).
    RunStarted = [RUN_ENDED, RUN_GOES_ON, AGENT_DISABLED, UNPROCESSABLE] + BY_ID
);
response_set!(
    /// A route that creates a run and answers with its result (the route's own 200), with the
    /// run while it goes on (202), or with its failure (422 `CheckFailed`).
    RunAnswered = [RUN_GOES_ON, AGENT_DISABLED, RUN_FAILED] + BY_ID
);
response_set!(
    /// Added to a set: the state is in the way (the route says how).
    Conflict = [CONFLICT]
);
response_set!(
    /// Added to a set: a well-formed request that cannot be carried out.
    Unprocessable = [UNPROCESSABLE]
);
