//! Alerting rules as people write them (`lasect alert rule apply`), the API stores and
//! exports them: [`RuleDef`] with its [`Scope`] and [`Condition`], the shape checks the OpenAPI
//! document states ([`RuleDef::check_shape`], 400 when broken), a stored rule as the API shows
//! it ([`Rule`], [`RuleList`]) and the set `apply` takes and `export` gives ([`RuleSet`]).
//! What only the store's families can tell (an unknown family or column, a selector or a
//! template that does not parse: 422) is `lasect-api`'s `alerts::rule::compile`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const MAX_WINDOW_SECS: u32 = 7 * 86_400;
pub const MAX_FOR_SECS: u32 = 7 * 86_400;
pub const MAX_HORIZON_SECS: u32 = 30 * 86_400;
const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9_.-]{0,62}$";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// One alerting rule, as written by people (`lasect alert rule apply`) and exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Unique; lower case letters, digits, `_`, `.`, `-`.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[a-z0-9][a-z0-9_.-]{0,62}$", max_length = 63)
    )]
    pub name: String,
    pub severity: Severity,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Which instances; none: every instance.
    #[serde(default)]
    pub scope: Scope,
    pub condition: Condition,
    /// How long the condition must hold before the alert fires (0: at once).
    #[serde(default, deserialize_with = "crate::json_integer::required")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 604_800))]
    pub for_secs: u32,
    /// How far back past the threshold a pending or firing alert's value must go before the
    /// condition counts as ended, so a value hovering at the threshold does not flap.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub hysteresis: f64,
    /// Added to every alert of the rule (and matched by silences).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Templates (`summary`, `runbook`, …): `{{ value | bytes }}`, `{{ labels.datname }}`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// One instance.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json_integer::option"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub instance_id: Option<i64>,
    /// Instances whose labels match, e.g. `env=prod, tier!=batch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 1000))]
    pub selector: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ConditionKind {
    /// An aggregate of a numeric column over a window, compared with `threshold`.
    Threshold,
    /// Rows of a family (events: `collector_event`, `log`, `setting_changes` …) counted over
    /// a window, compared with `threshold`.
    Events,
    /// Nothing heard from an agent, an instance or a family for `seconds`.
    Absence,
    /// A column's value `horizon_secs` ahead, by a linear fit over the window, compared with
    /// `threshold`.
    Forecast,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Agg {
    Avg,
    Min,
    Max,
    Sum,
    /// The latest sample (the largest value among the rows of that time).
    Last,
    /// Per second increase of a counter (resets counted as from zero).
    Rate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Op {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
}

impl Op {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }

    /// The threshold that ends an active alert: `hysteresis` back on the safe side.
    pub fn release(self, threshold: f64, hysteresis: f64) -> f64 {
        match self {
            Op::Gt | Op::Ge => threshold - hysteresis,
            Op::Lt | Op::Le => threshold + hysteresis,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Agent,
    Instance,
    Family,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    Eq,
    Ne,
    Prefix,
    /// One of the comma-separated values.
    In,
}

/// Keeps only the rows whose `column` (as text) equals, differs from or starts with `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[cfg_attr(feature = "openapi", schema(max_length = 63))]
    pub column: String,
    pub op: FilterOp,
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub value: String,
}

/// What must hold. Which fields a kind needs: docs/ALERTS.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub kind: ConditionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 63))]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 63))]
    pub column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agg: Option<Agg>,
    /// The value becomes `column / (sum of these)`, each aggregated the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_items = 4))]
    pub denominator: Option<Vec<String>>,
    /// Key columns: one alert per instance (or agent) and distinct values of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_items = 8))]
    pub by: Option<Vec<String>>,
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_items = 8))]
    pub filters: Option<Vec<Filter>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json_integer::option"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 604_800))]
    pub window_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Absence: silent for longer than this.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json_integer::option"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 604_800))]
    pub seconds: Option<u32>,
    /// Absence of a family: only instances that sent it within this (default a day).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json_integer::option"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2_592_000))]
    pub lookback_secs: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json_integer::option"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2_592_000))]
    pub horizon_secs: Option<u32>,
}

/// A refused rule: the field (dotted path) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for RuleError {}

fn bad(field: impl Into<String>, message: impl Into<String>) -> RuleError {
    RuleError {
        field: field.into(),
        message: message.into(),
    }
}

fn name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && name.len() <= 63
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
}

/// A label or annotation key: a letter or `_`, then letters, digits, `_`, `.`, `-`; at most 100.
pub fn label_key_ok(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.len() <= 100
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl RuleDef {
    /// What the OpenAPI document states (400 when broken).
    pub fn check_shape(&self) -> Result<(), RuleError> {
        if !name_ok(&self.name) {
            return Err(bad("name", format!("must match {NAME_PATTERN}")));
        }
        if self.for_secs > MAX_FOR_SECS {
            return Err(bad("for_secs", format!("at most {MAX_FOR_SECS}")));
        }
        if !(self.hysteresis >= 0.0 && self.hysteresis.is_finite()) {
            return Err(bad("hysteresis", "must be a number >= 0"));
        }
        if let Some(id) = self.scope.instance_id
            && id < 1
        {
            return Err(bad("scope.instance_id", "must be >= 1"));
        }
        if let Some(s) = &self.scope.selector
            && s.chars().count() > 1000
        {
            return Err(bad("scope.selector", "at most 1000 characters"));
        }
        let c = &self.condition;
        for (field, v) in [
            ("condition.family", &c.family),
            ("condition.column", &c.column),
        ] {
            if v.as_ref().is_some_and(|v| v.chars().count() > 63) {
                return Err(bad(field, "at most 63 characters"));
            }
        }
        if c.denominator.as_ref().is_some_and(|d| d.len() > 4) {
            return Err(bad("condition.denominator", "at most 4 columns"));
        }
        if c.by.as_ref().is_some_and(|d| d.len() > 8) {
            return Err(bad("condition.by", "at most 8 columns"));
        }
        if let Some(filters) = &c.filters {
            if filters.len() > 8 {
                return Err(bad("condition.where", "at most 8 filters"));
            }
            for (i, f) in filters.iter().enumerate() {
                if f.column.chars().count() > 63 {
                    return Err(bad(
                        format!("condition.where[{i}].column"),
                        "at most 63 characters",
                    ));
                }
                if f.value.chars().count() > 200 {
                    return Err(bad(
                        format!("condition.where[{i}].value"),
                        "at most 200 characters",
                    ));
                }
            }
        }
        let ranges = [
            ("condition.window_secs", c.window_secs, MAX_WINDOW_SECS),
            ("condition.seconds", c.seconds, MAX_WINDOW_SECS),
            ("condition.lookback_secs", c.lookback_secs, MAX_HORIZON_SECS),
            ("condition.horizon_secs", c.horizon_secs, MAX_HORIZON_SECS),
        ];
        for (field, v, max) in ranges {
            if let Some(v) = v
                && !(1..=max).contains(&v)
            {
                return Err(bad(field, format!("must be 1 to {max}")));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rule {
    pub id: i64,
    /// `default` (the shipped pack) or `user`.
    pub source: String,
    pub rule: RuleDef,
    pub updated_at: String,
    pub updated_by: String,
    pub last_evaluated_at: Option<String>,
    /// Why the last evaluation failed, if it did.
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleList {
    pub rules: Vec<Rule>,
}

/// The rule set as `apply` takes it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    #[cfg_attr(feature = "openapi", schema(max_items = 1000))]
    pub rules: Vec<RuleDef>,
}

#[cfg(test)]
mod tests {
    use super::Scope;

    /// JSON has one number type: `5.0` is the instance 5 (clients and
    /// fuzzers write integers that way), `5.5` is no instance at all.
    #[test]
    fn a_scope_instance_id_may_be_an_integral_float() {
        let scope: Scope = serde_json::from_str(r#"{"instance_id": 5.0}"#).expect("5.0 is 5");
        assert_eq!(scope.instance_id, Some(5));
        assert!(serde_json::from_str::<Scope>(r#"{"instance_id": 5.5}"#).is_err());
        assert!(serde_json::from_str::<Scope>(r#"{"instance_id": null}"#).is_ok());
    }
}
