//! Alerts as the API shows them: the state of one alert ([`State`]), an alert and the list
//! ([`Alert`], [`AlertList`]), its state changes ([`AlertEvent`], [`AlertHistory`]) and
//! silences ([`NewSilence`] → [`Silence`], [`SilenceList`]), what applying a rule set changes
//! ([`ApplyResult`], [`Diff`]) and what testing a rule shows ([`RuleTestResult`], [`TestValue`]).
//! The rules themselves are in [`crate::alert_rules`]; the CLI sends rule files as read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

// The state of one alert (rule × key): inactive → pending → firing → resolved. (A plain
// comment: the OpenAPI document has no description for it.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum State {
    Inactive,
    Pending,
    Firing,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Pending => "pending",
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inactive" => Some(State::Inactive),
            "pending" => Some(State::Pending),
            "firing" => Some(State::Firing),
            "resolved" => Some(State::Resolved),
            _ => None,
        }
    }

    pub fn active(self) -> bool {
        matches!(self, State::Pending | State::Firing)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alert {
    pub id: i64,
    pub rule: String,
    pub severity: String,
    pub state: State,
    /// When the current state began.
    pub since: String,
    pub instance_id: Option<i64>,
    pub instance: Option<String>,
    pub agent_id: Option<String>,
    /// The values of the rule's `by` columns.
    pub key_labels: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub value: Option<f64>,
    pub last_evaluated: String,
    /// An active silence matches its labels.
    pub silenced: bool,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertList {
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertEvent {
    pub id: i64,
    pub at: String,
    pub alert_id: Option<i64>,
    pub rule: String,
    pub severity: String,
    pub instance_id: Option<i64>,
    pub agent_id: Option<String>,
    pub from_state: String,
    pub to_state: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub silenced: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertHistory {
    pub events: Vec<AlertEvent>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Silence {
    pub id: i64,
    pub matchers: String,
    pub starts_at: String,
    pub ends_at: String,
    pub comment: String,
    pub created_by: String,
    pub removed_at: Option<String>,
    pub removed_by: Option<String>,
    /// Started, not ended, not removed.
    pub active: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SilenceList {
    pub silences: Vec<Silence>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// Label matchers, e.g. `alertname=deadlocks, env=staging` (at least one).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 1000))]
    pub matchers: String,
    /// From now, 60 s to a year.
    #[serde(deserialize_with = "crate::json_integer::required")]
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 31_536_000))]
    pub duration_secs: u32,
    /// Starts this long from now (a maintenance window planned ahead); default 0.
    #[serde(
        default,
        deserialize_with = "crate::json_integer::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 31_536_000))]
    pub starts_in_secs: Option<u32>,
    /// Why (shown with the silence).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 1000))]
    pub comment: String,
}

/// What an apply changes (or would change).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Diff {
    pub created: Vec<String>,
    /// Each changed rule with the fields that differ.
    pub updated: Vec<Changed>,
    /// Rules of source `user` not in the set.
    pub deleted: Vec<String>,
    pub unchanged: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Changed {
    pub name: String,
    pub fields: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApplyResult {
    pub dry_run: bool,
    pub diff: Diff,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestValue {
    pub instance_id: Option<i64>,
    pub instance: Option<String>,
    pub agent_id: Option<String>,
    pub key_labels: BTreeMap<String, String>,
    pub value: f64,
    /// The condition holds for this value (the alert would go pending, or fire when `for`
    /// is 0).
    pub holds: bool,
    /// What a new alert would become now.
    pub would_be: State,
}

/// What a rule sees now (`POST /api/v1/alerts/rules/test`). Not `TestResult`: the channel
/// test's answer has that schema name, and two schemas of one name leave one in the document.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleTestResult {
    pub rule: String,
    pub at: String,
    /// Every key the condition produced a value for, those that hold first.
    pub values: Vec<TestValue>,
}
