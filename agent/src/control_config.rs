//! `[control]`: what the agent accepts over its Control stream
//! (docs/CONTROL.md).
//!
//! ```toml
//! [control]
//! enabled = true
//! # Operation classes this host executes; default: the read-only ones
//! # (DEFAULT_ALLOW). Writes, DDL, import, dump and extension changes are
//! # opt-in: "sql_write", "ddl", "import", "dump", "extensions_write".
//! allow = ["sql", "explain", "explain_analyze", "schema", "table_data",
//!          "export", "extensions", "dump"]
//! default_timeout_secs = 30
//! max_timeout_secs = 3600
//! max_rows_limit = 1000000
//! max_bytes_limit = 1073741824
//! max_concurrent_runs = 4
//! max_concurrent_runs_per_instance = 2
//!
//! # The backup and restore classes' pgBackRest (`pgbackrest_config`).
//! [control.pgbackrest]
//! command = "/usr/bin/pgbackrest"
//! run_as = ["sudo", "-n", "-u", "{user}", "--"]
//! ```

use lasect_runs::Class;
use serde::Deserialize;

/// The classes allowed without `allow`: those that cannot change the
/// instance (they run in READ ONLY transactions, by a login role checked by
/// `ops::privileges`). A production DBA opts into the rest per host.
pub const DEFAULT_ALLOW: &[Class] = &[
    Class::Sql,
    Class::Explain,
    Class::ExplainAnalyze,
    Class::Schema,
    Class::TableData,
    Class::Export,
    Class::Extensions,
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    pub enabled: bool,
    /// Class names as written: an unknown one is reported by
    /// [`ControlConfig::problems`] (the agent does not start), all at once.
    pub allow: Vec<String>,
    pub default_timeout_secs: u64,
    pub max_timeout_secs: u64,
    pub max_rows_limit: u64,
    pub max_bytes_limit: u64,
    pub max_concurrent_runs: usize,
    pub max_concurrent_runs_per_instance: usize,
    /// `[control.pgbackrest]`: the pgBackRest command and how it runs as the database OS
    /// user (`pgbackrest_config`).
    pub pgbackrest: crate::pgbackrest_config::PgBackRestConfig,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow: DEFAULT_ALLOW
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
            default_timeout_secs: 30,
            max_timeout_secs: 3600,
            max_rows_limit: 1_000_000,
            max_bytes_limit: 1 << 30,
            max_concurrent_runs: 4,
            max_concurrent_runs_per_instance: 2,
            pgbackrest: crate::pgbackrest_config::PgBackRestConfig::default(),
        }
    }
}

impl ControlConfig {
    /// Problems as (field, message), all at once.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for class in &self.allow {
            if class.parse::<Class>().is_err() {
                let known: Vec<&str> = Class::ALL.iter().map(|c| c.as_str()).collect();
                out.push((
                    "control.allow".to_owned(),
                    format!(
                        "unknown operation class `{class}`; known: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        if !(1..=86_400).contains(&self.max_timeout_secs) {
            out.push((
                "control.max_timeout_secs".to_owned(),
                "must be between 1 and 86400".to_owned(),
            ));
        }
        if self.default_timeout_secs == 0 || self.default_timeout_secs > self.max_timeout_secs {
            out.push((
                "control.default_timeout_secs".to_owned(),
                "must be between 1 and control.max_timeout_secs".to_owned(),
            ));
        }
        for (field, v) in [
            ("control.max_rows_limit", self.max_rows_limit),
            ("control.max_bytes_limit", self.max_bytes_limit),
        ] {
            if v == 0 {
                out.push((field.to_owned(), "must be greater than 0".to_owned()));
            }
        }
        if !(1..=256).contains(&self.max_concurrent_runs) {
            out.push((
                "control.max_concurrent_runs".to_owned(),
                "must be between 1 and 256".to_owned(),
            ));
        }
        if self.max_concurrent_runs_per_instance == 0
            || self.max_concurrent_runs_per_instance > self.max_concurrent_runs
        {
            out.push((
                "control.max_concurrent_runs_per_instance".to_owned(),
                "must be between 1 and control.max_concurrent_runs".to_owned(),
            ));
        }
        out.extend(self.pgbackrest.problems());
        out
    }

    /// Whether runs of `class` execute here; a name no class has is never allowed.
    pub fn allows(&self, class: impl TryInto<Class>) -> bool {
        let Ok(class) = class.try_into() else {
            return false;
        };
        self.allow.iter().any(|c| c.parse() == Ok(class))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_allow_only_the_read_only_classes_and_validate() {
        let c = ControlConfig::default();
        assert!(c.problems().is_empty());
        for class in [
            "sql",
            "explain",
            "explain_analyze",
            "schema",
            "table_data",
            "export",
            "extensions",
        ] {
            assert!(c.allows(class), "{class} is not allowed by default");
        }
        for class in ["sql_write", "ddl", "import", "dump", "extensions_write"] {
            assert!(!c.allows(class), "{class} is allowed by default");
        }
        assert!(c.allows(Class::Sql) && !c.allows(Class::Ddl));
        assert!(!c.allows("drop_everything"), "no class, never allowed");
    }

    #[test]
    fn bad_values_name_their_field() {
        let c = ControlConfig {
            allow: vec!["sql".into(), "drop_everything".into()],
            default_timeout_secs: 7200,
            max_concurrent_runs: 2,
            max_concurrent_runs_per_instance: 3,
            max_rows_limit: 0,
            ..ControlConfig::default()
        };
        let fields: Vec<String> = c.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "control.allow",
                "control.default_timeout_secs",
                "control.max_rows_limit",
                "control.max_concurrent_runs_per_instance"
            ]
        );
    }
}
