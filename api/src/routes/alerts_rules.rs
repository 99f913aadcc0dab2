//! Alert rules: `GET /api/v1/alerts/rules`, `POST …/rules` (one), `PUT|DELETE …/rules/{id}`,
//! `POST …/rules/apply` (the whole set; `dry_run` returns the difference only),
//! `GET …/rules/export` (the set as `apply` takes it), `POST …/rules/test` (evaluate one
//! rule now).
//!
//! Roles: every authenticated caller reads rules; testing needs the global role `user` (it
//! reads every instance's data in the rule's scope); writing needs `admin`. Writes are
//! audited by the gate. A rule that breaks the document is a 400, one the families refuse
//! (unknown family or column, bad selector or template) a 422; both name the field.

use std::collections::HashSet;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;

use super::auth_routes::{body, path_params};
use super::instances::rfc3339;
use super::openapi::responses::{ById, SignedIn, WithInput};
use super::{ApiError, AppState};
use crate::alerts::evaluator::{keyed, load_instances};
use crate::alerts::rule::{Catalog, Compiled, RuleDef, RuleError, compile};
use crate::alerts::store::{self, LoadError, StoredRule};
use crate::alerts::{query, state};
use crate::auth::principal::Principal;
use crate::auth::role::Role;
pub use lasect_api_contract::alert_rules::{Rule, RuleList, RuleSet};
pub use lasect_api_contract::alerts::{ApplyResult, RuleTestResult, TestValue};

/// Most rules in one apply.
pub const MAX_RULES: usize = 1000;

fn view(r: StoredRule) -> Rule {
    Rule {
        id: r.id,
        source: r.source,
        rule: r.def,
        updated_at: rfc3339(r.updated_at),
        updated_by: r.updated_by,
        last_evaluated_at: r.last_evaluated_at.map(rfc3339),
        last_error: r.last_error,
    }
}

fn load_error(e: LoadError) -> ApiError {
    match e {
        LoadError::Store(e) => e.into(),
        other => ApiError::internal(other),
    }
}

async fn all_rules(state: &AppState) -> Result<Vec<StoredRule>, ApiError> {
    store::load_all(&state.pool)
        .await?
        .into_iter()
        .map(|r| r.map_err(load_error))
        .collect()
}

fn shape_error(prefix: &str, e: RuleError) -> ApiError {
    ApiError::bad_request("invalid_rule", format!("{prefix}{e}"))
}

fn rule_error(prefix: &str, e: RuleError) -> ApiError {
    ApiError::unprocessable("invalid_rule", format!("{prefix}{e}"))
}

/// Checks `def` at both levels; `prefix` names it in a set (`rules[3].`).
fn validate(def: &RuleDef, catalog: &Catalog, prefix: &str) -> Result<Compiled, ApiError> {
    def.check_shape().map_err(|e| shape_error(prefix, e))?;
    compile(def, catalog).map_err(|e| rule_error(prefix, e))
}

#[utoipa::path(
    get,
    path = "/api/v1/alerts/rules",
    tag = "alerts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every rule, by name", body = RuleList),
        SignedIn,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    _principal: Principal,
) -> Result<Json<RuleList>, ApiError> {
    let rules = all_rules(&state).await?;
    Ok(Json(RuleList {
        rules: rules.into_iter().map(view).collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/alerts/rules/export",
    tag = "alerts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every rule as `apply` takes them (applying it changes nothing)", body = RuleSet),
        SignedIn,
    )
)]
pub async fn export(
    State(state): State<AppState>,
    _principal: Principal,
) -> Result<Json<RuleSet>, ApiError> {
    let rules = all_rules(&state).await?;
    Ok(Json(RuleSet {
        rules: rules.into_iter().map(|r| r.def).collect(),
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/alerts/rules",
    tag = "alerts",
    request_body = RuleDef,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new rule", body = Rule),
        WithInput,
        (status = 409, description = "A rule of this name exists", body = super::openapi::ErrorBody),
        (status = 422, description = "The families refuse the rule (the message names the field)", body = super::openapi::ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    def: Result<Json<RuleDef>, JsonRejection>,
) -> Result<(StatusCode, Json<Rule>), ApiError> {
    principal.require(Role::Admin)?;
    let def = body(def)?;
    let catalog = Catalog::load_pool(&state.pool).await?;
    validate(&def, &catalog, "")?;
    let mut conn = state.pool.acquire().await?;
    let Some(id) = store::insert(&mut conn, &def, &principal.username).await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("a rule named {} exists", def.name),
        ));
    };
    let rule = store::load_one(&state.pool, id)
        .await
        .map_err(load_error)?
        .ok_or_else(|| ApiError::internal("rule gone right after insert"))?;
    Ok((StatusCode::CREATED, Json(view(rule))))
}

#[utoipa::path(
    put,
    path = "/api/v1/alerts/rules/{id}",
    tag = "alerts",
    params(("id" = i64, Path, minimum = 1, description = "Rule id")),
    request_body = RuleDef,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The rule as replaced", body = Rule),
        ById,
        (status = 409, description = "Another rule has this name", body = super::openapi::ErrorBody),
        (status = 422, description = "The families refuse the rule (the message names the field)", body = super::openapi::ErrorBody),
    )
)]
pub async fn replace(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<i64>, PathRejection>,
    def: Result<Json<RuleDef>, JsonRejection>,
) -> Result<Json<Rule>, ApiError> {
    principal.require(Role::Admin)?;
    let id = path_params(path)?;
    let def = body(def)?;
    let catalog = Catalog::load_pool(&state.pool).await?;
    validate(&def, &catalog, "")?;
    if let Some(other) = store::find_by_name(&state.pool, &def.name)
        .await
        .map_err(load_error)?
        && other.id != id
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("rule {} has the name {}", other.id, def.name),
        ));
    }
    let mut conn = state.pool.acquire().await?;
    if !store::update(&mut conn, id, &def, &principal.username).await? {
        return Err(ApiError::not_found(format!("no rule with id {id}")));
    }
    let rule = store::load_one(&state.pool, id)
        .await
        .map_err(load_error)?
        .ok_or_else(|| ApiError::not_found(format!("no rule with id {id}")))?;
    Ok(Json(view(rule)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/alerts/rules/{id}",
    tag = "alerts",
    params(("id" = i64, Path, minimum = 1, description = "Rule id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted, with its alerts (their history stays)"),
        ById,
        (status = 409, description = "A default-pack rule: disable it instead", body = super::openapi::ErrorBody),
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Admin)?;
    let id = path_params(path)?;
    let source: Option<String> = sqlx::query_scalar("SELECT source FROM alert_rules WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.pool)
        .await?;
    match source.as_deref() {
        None => Err(ApiError::not_found(format!("no rule with id {id}"))),
        Some("default") => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("rule {id} is of the default pack: disable it (enabled: false) instead"),
        )),
        Some(_) => {
            let mut conn = state.pool.acquire().await?;
            store::delete(&mut conn, id).await?;
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The whole set: rules not in it that are not of the default pack are deleted.
    #[schema(max_items = 1000)]
    pub rules: Vec<RuleDef>,
    /// Only compute what would change.
    #[serde(default)]
    pub dry_run: bool,
}

#[utoipa::path(
    post,
    path = "/api/v1/alerts/rules/apply",
    tag = "alerts",
    request_body = ApplyRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What changed (or would change): applying the same set again changes nothing", body = ApplyResult),
        WithInput,
        (status = 422, description = "A rule is refused (the message names it and the field), or two share a name", body = super::openapi::ErrorBody),
    )
)]
pub async fn apply(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<ApplyRequest>, JsonRejection>,
) -> Result<Json<ApplyResult>, ApiError> {
    principal.require(Role::Admin)?;
    let request = body(request)?;
    if request.rules.len() > MAX_RULES {
        return Err(ApiError::bad_request(
            "invalid_rule",
            format!(
                "at most {MAX_RULES} rules in a set, not {}",
                request.rules.len()
            ),
        ));
    }
    for (i, def) in request.rules.iter().enumerate() {
        def.check_shape()
            .map_err(|e| shape_error(&format!("rules[{i}] ({}).", def.name), e))?;
    }
    let catalog = Catalog::load_pool(&state.pool).await?;
    let mut names = HashSet::new();
    for (i, def) in request.rules.iter().enumerate() {
        compile(def, &catalog)
            .map_err(|e| rule_error(&format!("rules[{i}] ({}).", def.name), e))?;
        if !names.insert(def.name.as_str()) {
            return Err(ApiError::unprocessable(
                "invalid_rule",
                format!("rules[{i}].name: {} appears twice in the set", def.name),
            ));
        }
    }
    let mut tx = state.pool.begin().await?;
    // One apply at a time: two concurrent ones would each compute a diff against the same
    // rules and the second would trip on the first's names.
    sqlx::query("LOCK TABLE alert_rules IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let stored: Vec<StoredRule> = store::load_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| r.map_err(load_error))
        .collect::<Result<_, _>>()?;
    let diff = if request.dry_run {
        store::diff(&stored, &request.rules)
    } else {
        store::apply(&mut tx, &stored, &request.rules, &principal.username).await?
    };
    if request.dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(Json(ApplyResult {
        dry_run: request.dry_run,
        diff,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// A stored rule, by name…
    #[serde(default)]
    #[schema(max_length = 63)]
    pub name: Option<String>,
    /// …or a rule not stored yet.
    #[serde(default)]
    pub rule: Option<RuleDef>,
}

#[utoipa::path(
    post,
    path = "/api/v1/alerts/rules/test",
    tag = "alerts",
    request_body = TestRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What the rule sees now; nothing is written", body = RuleTestResult),
        ById,
        (status = 422, description = "Neither or both of name and rule, or the rule is refused", body = super::openapi::ErrorBody),
    )
)]
/// Needs the global user role.
pub async fn test(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<TestRequest>, JsonRejection>,
) -> Result<Json<RuleTestResult>, ApiError> {
    principal.require(Role::User)?;
    let request = body(request)?;
    if let Some(def) = &request.rule {
        def.check_shape().map_err(|e| shape_error("rule.", e))?;
    }
    if request
        .name
        .as_ref()
        .is_some_and(|n| n.chars().count() > 63)
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            "name: at most 63 characters",
        ));
    }
    let def = match (request.name, request.rule) {
        (Some(name), None) => {
            store::find_by_name(&state.pool, &name)
                .await
                .map_err(load_error)?
                .ok_or_else(|| ApiError::not_found(format!("no rule named {name:?}")))?
                .def
        }
        (None, Some(def)) => def,
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_rule",
                "give either name (a stored rule) or rule (a definition)",
            ));
        }
    };
    let catalog = Catalog::load_pool(&state.pool).await?;
    let compiled = validate(&def, &catalog, "rule.")?;
    let mut tx = state.pool.begin().await?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT set_config('statement_timeout', '10s', true)")
        .execute(&mut *tx)
        .await?;
    let at = Utc::now();
    let samples = query::run(&mut tx, &compiled, at, None)
        .await
        .map_err(|e| {
            tracing::warn!(rule = %def.name, error = %e, "alert rule test failed");
            ApiError::unprocessable(
                "rule_failed",
                "the rule's query failed in the store (see the API log)",
            )
        })?;
    let instances = load_instances(&mut tx).await?;
    tx.rollback().await?;
    let stored = StoredRule {
        id: 0,
        source: "user".to_owned(),
        def: def.clone(),
        updated_at: at,
        updated_by: String::new(),
        last_evaluated_at: None,
        last_error: None,
    };
    let limits = state::Limits {
        op: compiled.op,
        threshold: compiled.threshold,
        hysteresis: def.hysteresis,
        for_secs: def.for_secs,
    };
    let mut values: Vec<TestValue> = samples
        .iter()
        .filter(|s| {
            let labels = s
                .instance_id
                .and_then(|id| instances.get(&id))
                .map(|i| serde_json::to_value(&i.labels).unwrap_or_default());
            super::alerts::may_see(&principal, labels.as_ref())
        })
        .map(|s| {
            let k = keyed(&stored, s, &instances);
            let (would_be, _) = state::next(state::State::Inactive, at, Some(s.value), &limits, at);
            TestValue {
                instance_id: s.instance_id,
                instance: k.labels.get("instance").cloned(),
                agent_id: k.agent_id,
                key_labels: s.key_labels.clone(),
                value: s.value,
                holds: would_be != state::State::Inactive,
                would_be,
            }
        })
        .collect();
    values.sort_by_key(|v| !v.holds);
    Ok(Json(RuleTestResult {
        rule: def.name,
        at: rfc3339(at),
        values,
    }))
}
