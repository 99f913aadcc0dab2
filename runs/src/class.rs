//! The operation classes of the agent's `[control] allow` list (docs/CONTROL.md, "The agent's
//! allow-list"). A run's class comes from its typed parameters ([`crate::RunParams::class`]).

use std::fmt;
use std::str::FromStr;

/// An operation class. The names are the strings of `[control] allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Sql,
    SqlWrite,
    Explain,
    ExplainAnalyze,
    Schema,
    TableData,
    Export,
    Import,
    Dump,
    Extensions,
    ExtensionsWrite,
    Ddl,
    /// pgBackRest: stanza create/upgrade/check, backups, the catalogue (an admin's; off by
    /// default).
    Backup,
    /// pgBackRest restores and restore drills: they write a data directory on the agent's
    /// host and start a server on it (an admin's; off by default).
    Restore,
    /// Logical replication streams: validate, create and drop publications, slots and
    /// subscriptions (an admin's; off by default: a slot left behind retains WAL).
    Replication,
}

/// A class name no part of this version knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown operation class `{0}`")]
pub struct UnknownClass(pub String);

impl Class {
    /// Every class, in the order of docs/CONTROL.md.
    pub const ALL: [Class; 15] = [
        Class::Sql,
        Class::SqlWrite,
        Class::Explain,
        Class::ExplainAnalyze,
        Class::Schema,
        Class::TableData,
        Class::Export,
        Class::Import,
        Class::Dump,
        Class::Extensions,
        Class::ExtensionsWrite,
        Class::Ddl,
        Class::Backup,
        Class::Restore,
        Class::Replication,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Class::Sql => "sql",
            Class::SqlWrite => "sql_write",
            Class::Explain => "explain",
            Class::ExplainAnalyze => "explain_analyze",
            Class::Schema => "schema",
            Class::TableData => "table_data",
            Class::Export => "export",
            Class::Import => "import",
            Class::Dump => "dump",
            Class::Extensions => "extensions",
            Class::ExtensionsWrite => "extensions_write",
            Class::Ddl => "ddl",
            Class::Backup => "backup",
            Class::Replication => "replication",
            Class::Restore => "restore",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for Class {
    type Error = UnknownClass;

    fn try_from(s: &str) -> Result<Self, UnknownClass> {
        s.parse()
    }
}

impl FromStr for Class {
    type Err = UnknownClass;

    fn from_str(s: &str) -> Result<Self, UnknownClass> {
        Class::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownClass(s.to_owned()))
    }
}
