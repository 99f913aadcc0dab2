//! The rule model (what the API takes, stores and exports) and its validation into a
//! [`Compiled`] rule whose identifiers all come from the API's own family list.
//!
//! Two levels of refusal, as everywhere in the API: [`RuleDef::check_shape`] finds what the
//! OpenAPI document states (patterns, ranges, lengths: 400), [`compile`] what only the store's
//! families can tell (an unknown family or column, a text column where a number is needed, a
//! selector or template that does not parse: 422). Both name the field.

use std::collections::HashMap;

use sqlx::PgPool;

use super::{selector, template};
use crate::routes::metric_families::{self, FamilyKey};
use crate::routes::series_spec;

// The rule model is declared with the API's bodies (the CLI reads rules too); its
// validation against the store's families stays here.
pub use lasect_api_contract::alert_rules::{
    Agg, Condition, ConditionKind, Filter, FilterOp, MAX_FOR_SECS, MAX_HORIZON_SECS,
    MAX_WINDOW_SECS, Op, RuleDef, RuleError, Scope, Severity, Target, label_key_ok,
};

fn bad(field: impl Into<String>, message: impl Into<String>) -> RuleError {
    RuleError {
        field: field.into(),
        message: message.into(),
    }
}

/// A column of a family table, as the evaluation SQL reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Col {
    pub name: &'static str,
    /// Booleans are read as 0 or 1.
    pub boolean: bool,
}

impl Col {
    pub fn expr(self) -> String {
        if self.boolean {
            format!("(t.{})::int::float8", self.name)
        } else {
            format!("(t.{})::float8", self.name)
        }
    }
}

/// How a rule is evaluated; every identifier is a `'static` string of the family list.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// An aggregate (or, with `agg` = `None`, a row count) per key over the window.
    Aggregate {
        family: Family,
        agg: Option<Agg>,
        numerator: Option<Col>,
        denominators: Vec<Col>,
        window_secs: u32,
    },
    Forecast {
        family: Family,
        column: Col,
        window_secs: u32,
        horizon_secs: u32,
    },
    AgentSilent,
    InstanceSilent,
    FamilySilent {
        family: Family,
        lookback_secs: u32,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub table: &'static str,
    /// The time column (`time` in every metric family).
    pub time: &'static str,
    pub key: FamilyKey,
    pub by: Vec<&'static str>,
    /// The family's series keys not in `by` (a rate is computed per series).
    pub series: Vec<&'static str>,
    pub filters: Vec<(&'static str, FilterOp, String)>,
}

/// A rule ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    pub plan: Plan,
    pub op: Op,
    pub threshold: f64,
    pub scope_instance: Option<i64>,
    pub scope_matchers: Vec<selector::Matcher>,
}

/// Column types of the family tables (`information_schema`), read once per validation or
/// evaluation round.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    types: HashMap<(String, String), String>,
}

impl Catalog {
    pub async fn load<'e, E: sqlx::PgExecutor<'e>>(db: E) -> Result<Self, sqlx::Error> {
        let tables: Vec<String> = metric_families::FAMILIES
            .iter()
            .map(|f| f.table)
            .chain(STORE_EVENTS.iter().map(|s| s.table))
            .map(str::to_owned)
            .collect();
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text, data_type::text \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = ANY($1)",
        )
        .bind(&tables)
        .fetch_all(db)
        .await?;
        Ok(Catalog {
            types: rows.into_iter().map(|(t, c, ty)| ((t, c), ty)).collect(),
        })
    }

    pub async fn load_pool(pool: &PgPool) -> Result<Self, sqlx::Error> {
        Self::load(pool).await
    }

    fn kind(&self, table: &str, column: &str) -> Option<&str> {
        self.types
            .get(&(table.to_owned(), column.to_owned()))
            .map(String::as_str)
    }
}

const NUMERIC: &[&str] = &[
    "smallint",
    "integer",
    "bigint",
    "real",
    "double precision",
    "numeric",
];

/// What a condition reads: a metric family, or a table of the store's own events.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    pub name: &'static str,
    pub table: &'static str,
    pub key: FamilyKey,
    pub columns: &'static [&'static str],
    /// The column that says when a row happened.
    pub time: &'static str,
    /// Only `events` conditions read it (it has no samples to aggregate or forecast).
    pub events_only: bool,
}

/// Events the store records itself, readable by `events` conditions like families.
pub const STORE_EVENTS: &[Source] = &[
    // Finished runs (docs/CONTROL.md): failed ones are `status` failed or timed_out.
    Source {
        name: "runs",
        table: "runs",
        key: FamilyKey::Instance,
        columns: &["kind", "status", "requested_by"],
        time: "finished_at",
        events_only: true,
    },
    // Changes found between two schema snapshots; `classification` breaking or non_breaking.
    Source {
        name: "schema_changes",
        table: "schema_changes",
        key: FamilyKey::Instance,
        columns: &[
            "database",
            "object_kind",
            "object_name",
            "change",
            "classification",
        ],
        time: "detected_at",
        events_only: true,
    },
];

fn source(name: &str) -> Option<Source> {
    if let Some(spec) = metric_families::find(name) {
        return Some(Source {
            name: spec.name,
            table: spec.table,
            key: spec.key,
            columns: spec.columns,
            time: "time",
            events_only: false,
        });
    }
    STORE_EVENTS.iter().find(|s| s.name == name).copied()
}

fn column_of(
    catalog: &Catalog,
    spec: Source,
    field: &str,
    name: &str,
    numeric: bool,
) -> Result<Col, RuleError> {
    let Some(&col) = spec
        .columns
        .iter()
        .find(|c| **c == name && **c != spec.time)
    else {
        let known: Vec<&str> = spec
            .columns
            .iter()
            .copied()
            .filter(|c| *c != spec.time)
            .collect();
        return Err(bad(
            field,
            format!(
                "family `{}` has no column `{name}` (columns: {})",
                spec.name,
                known.join(", ")
            ),
        ));
    };
    let ty = catalog.kind(spec.table, col).unwrap_or("");
    let boolean = ty == "boolean";
    if numeric && !(boolean || NUMERIC.contains(&ty)) {
        return Err(bad(
            field,
            format!(
                "column `{col}` of family `{}` is {}, not a number",
                spec.name,
                if ty.is_empty() {
                    "unknown to the store"
                } else {
                    ty
                }
            ),
        ));
    }
    Ok(Col { name: col, boolean })
}

fn family_of(catalog: &Catalog, c: &Condition) -> Result<(Source, Family), RuleError> {
    let Some(name) = c.family.as_deref() else {
        return Err(bad("condition.family", "is required for this kind"));
    };
    let Some(spec) = source(name) else {
        let mut known = metric_families::known_names();
        known.extend(STORE_EVENTS.iter().map(|s| s.name));
        return Err(bad(
            "condition.family",
            format!("unknown family `{name}` (families: {})", known.join(", ")),
        ));
    };
    if spec.events_only && c.kind != ConditionKind::Events {
        return Err(bad(
            "condition.family",
            format!("`{name}` holds events: only a condition of kind events reads it"),
        ));
    }
    let mut by = Vec::new();
    for (i, b) in c.by.iter().flatten().enumerate() {
        let col = column_of(catalog, spec, &format!("condition.by[{i}]"), b, false)?;
        if !by.contains(&col.name) {
            by.push(col.name);
        }
    }
    let series = series_spec::find(spec.name)
        .map(|s| s.keys.iter().copied().filter(|k| !by.contains(k)).collect())
        .unwrap_or_default();
    let mut filters = Vec::new();
    for (i, f) in c.filters.iter().flatten().enumerate() {
        let col = column_of(
            catalog,
            spec,
            &format!("condition.where[{i}].column"),
            &f.column,
            false,
        )?;
        if f.value.contains('\0') {
            return Err(bad(
                format!("condition.where[{i}].value"),
                "holds a NUL character",
            ));
        }
        filters.push((col.name, f.op, f.value.clone()));
    }
    Ok((
        spec,
        Family {
            name: spec.name,
            table: spec.table,
            time: spec.time,
            key: spec.key,
            by,
            series,
            filters,
        },
    ))
}

fn unused(c: &Condition, kind: &str, fields: &[(&str, bool)]) -> Result<(), RuleError> {
    for (field, set) in fields {
        if *set {
            return Err(bad(
                format!("condition.{field}"),
                format!("is not used by a condition of kind {kind}"),
            ));
        }
    }
    let _ = c;
    Ok(())
}

/// Validates `def` against the families (422 on failure) and plans its evaluation.
pub fn compile(def: &RuleDef, catalog: &Catalog) -> Result<Compiled, RuleError> {
    def.check_shape()?;
    if def.labels.len() > 20 {
        return Err(bad("labels", "at most 20 labels"));
    }
    if def.annotations.len() > 10 {
        return Err(bad("annotations", "at most 10 annotations"));
    }
    for (key, value) in &def.labels {
        if !label_key_ok(key) {
            return Err(bad(
                format!("labels.{key}"),
                "a label name is a letter or _ then letters, digits, _ . -",
            ));
        }
        if value.chars().count() > 200 || value.chars().any(char::is_control) {
            return Err(bad(
                format!("labels.{key}"),
                "at most 200 printable characters",
            ));
        }
    }
    for (key, text) in &def.annotations {
        if !label_key_ok(key) {
            return Err(bad(
                format!("annotations.{key}"),
                "an annotation name is a letter or _ then letters, digits, _ . -",
            ));
        }
        template::check(text).map_err(|e| bad(format!("annotations.{key}"), e.to_string()))?;
    }
    if def.scope.instance_id.is_some() && def.scope.selector.is_some() {
        return Err(bad("scope", "give instance_id or selector, not both"));
    }
    let scope_matchers = match &def.scope.selector {
        Some(s) => selector::parse(s).map_err(|e| bad("scope.selector", e.to_string()))?,
        None => Vec::new(),
    };
    let c = &def.condition;
    let need_cmp = || -> Result<(Op, f64), RuleError> {
        let op =
            c.op.ok_or_else(|| bad("condition.op", "is required for this kind"))?;
        let t = c
            .threshold
            .ok_or_else(|| bad("condition.threshold", "is required for this kind"))?;
        if !t.is_finite() {
            return Err(bad("condition.threshold", "must be a finite number"));
        }
        Ok((op, t))
    };
    let window = || {
        c.window_secs
            .ok_or_else(|| bad("condition.window_secs", "is required for this kind"))
    };
    let (plan, op, threshold) = match c.kind {
        ConditionKind::Threshold | ConditionKind::Events => {
            let (spec, family) = family_of(catalog, c)?;
            let (op, threshold) = need_cmp()?;
            let window_secs = window()?;
            let kind = if c.kind == ConditionKind::Events {
                "events"
            } else {
                "threshold"
            };
            unused(
                c,
                kind,
                &[
                    ("target", c.target.is_some()),
                    ("seconds", c.seconds.is_some()),
                    ("lookback_secs", c.lookback_secs.is_some()),
                    ("horizon_secs", c.horizon_secs.is_some()),
                ],
            )?;
            let (agg, numerator, denominators) = if c.kind == ConditionKind::Events {
                unused(
                    c,
                    kind,
                    &[
                        ("column", c.column.is_some()),
                        ("agg", c.agg.is_some()),
                        ("denominator", c.denominator.is_some()),
                    ],
                )?;
                (None, None, Vec::new())
            } else {
                let agg = c
                    .agg
                    .ok_or_else(|| bad("condition.agg", "is required for a threshold"))?;
                let column = c
                    .column
                    .as_deref()
                    .ok_or_else(|| bad("condition.column", "is required for a threshold"))?;
                let numerator = column_of(catalog, spec, "condition.column", column, true)?;
                let mut dens = Vec::new();
                for (i, d) in c.denominator.iter().flatten().enumerate() {
                    dens.push(column_of(
                        catalog,
                        spec,
                        &format!("condition.denominator[{i}]"),
                        d,
                        true,
                    )?);
                }
                (Some(agg), Some(numerator), dens)
            };
            (
                Plan::Aggregate {
                    family,
                    agg,
                    numerator,
                    denominators,
                    window_secs,
                },
                op,
                threshold,
            )
        }
        ConditionKind::Forecast => {
            let (spec, family) = family_of(catalog, c)?;
            let (op, threshold) = need_cmp()?;
            let window_secs = window()?;
            unused(
                c,
                "forecast",
                &[
                    ("agg", c.agg.is_some()),
                    ("denominator", c.denominator.is_some()),
                    ("target", c.target.is_some()),
                    ("seconds", c.seconds.is_some()),
                    ("lookback_secs", c.lookback_secs.is_some()),
                ],
            )?;
            let column = c
                .column
                .as_deref()
                .ok_or_else(|| bad("condition.column", "is required for a forecast"))?;
            let column = column_of(catalog, spec, "condition.column", column, true)?;
            let horizon_secs = c
                .horizon_secs
                .ok_or_else(|| bad("condition.horizon_secs", "is required for a forecast"))?;
            (
                Plan::Forecast {
                    family,
                    column,
                    window_secs,
                    horizon_secs,
                },
                op,
                threshold,
            )
        }
        ConditionKind::Absence => {
            let seconds = c
                .seconds
                .ok_or_else(|| bad("condition.seconds", "is required for an absence"))?;
            let target = c.target.ok_or_else(|| {
                bad(
                    "condition.target",
                    "is required for an absence (agent, instance or family)",
                )
            })?;
            unused(
                c,
                "absence",
                &[
                    ("column", c.column.is_some()),
                    ("agg", c.agg.is_some()),
                    ("denominator", c.denominator.is_some()),
                    ("op", c.op.is_some()),
                    ("threshold", c.threshold.is_some()),
                    ("window_secs", c.window_secs.is_some()),
                    ("horizon_secs", c.horizon_secs.is_some()),
                ],
            )?;
            let plan = match target {
                Target::Agent | Target::Instance => {
                    unused(
                        c,
                        "absence of an agent or instance",
                        &[
                            ("family", c.family.is_some()),
                            ("by", c.by.is_some()),
                            ("where", c.filters.is_some()),
                            ("lookback_secs", c.lookback_secs.is_some()),
                        ],
                    )?;
                    if target == Target::Agent {
                        Plan::AgentSilent
                    } else {
                        Plan::InstanceSilent
                    }
                }
                Target::Family => {
                    let (_, family) = family_of(catalog, c)?;
                    if !family.by.is_empty() {
                        return Err(bad("condition.by", "an absence is per instance or agent"));
                    }
                    Plan::FamilySilent {
                        family,
                        lookback_secs: c.lookback_secs.unwrap_or(86_400),
                    }
                }
            };
            (plan, Op::Gt, f64::from(seconds))
        }
    };
    Ok(Compiled {
        plan,
        op,
        threshold,
        scope_instance: def.scope.instance_id,
        scope_matchers,
    })
}
