//! The metric tables as data: one [`Table`] per family, naming its store
//! table, what its rows are keyed by and its value columns in table order
//! (after `time` and the key column). Validation produces rows of
//! [`Value`]s in exactly this order; the writer turns any table's rows into
//! one binary COPY without per-family code.
//!
//! The tables are derived from the one declaration of the families
//! (`lasect-families`), which a store test checks against the migrations;
//! this module only gives ingest's builder a handle per family
//! ([`DATABASE`], …). Adding a family: see "Adding a family" in
//! ARCHITECTURE.md.

use std::ops::Deref;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
pub use lasect_families::{ColumnType, Key};

#[derive(Debug)]
pub struct Table {
    /// Family name, as in `metric_families.name`.
    pub family: &'static str,
    /// Store table, as in `metric_families.table_name`.
    pub name: &'static str,
    pub key: Key,
    /// Value columns after `time` and the key, in table order.
    pub columns: &'static [(&'static str, ColumnType)],
}

impl Table {
    /// The descriptor of a declared family. Built once per family (the
    /// statics below), so the leaked column list is bounded.
    fn of(family: &'static lasect_families::Family) -> Table {
        let columns: Vec<(&'static str, ColumnType)> =
            family.columns.iter().map(|c| (c.name, c.ty)).collect();
        Table {
            family: family.name,
            name: family.table,
            key: family.key,
            columns: columns.leak(),
        }
    }
}

/// One validated value; `None` is SQL NULL ("not collected").
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int4(Option<i32>),
    Int8(Option<i64>),
    Float8(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
    Timestamptz(Option<DateTime<Utc>>),
    Jsonb(Option<serde_json::Value>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(
            self,
            Value::Int4(None)
                | Value::Int8(None)
                | Value::Float8(None)
                | Value::Text(None)
                | Value::Bool(None)
                | Value::Timestamptz(None)
                | Value::Jsonb(None)
        )
    }

    pub fn column_type(&self) -> ColumnType {
        match self {
            Value::Int4(_) => ColumnType::Int4,
            Value::Int8(_) => ColumnType::Int8,
            Value::Float8(_) => ColumnType::Float8,
            Value::Text(_) => ColumnType::Text,
            Value::Bool(_) => ColumnType::Bool,
            Value::Timestamptz(_) => ColumnType::Timestamptz,
            Value::Jsonb(_) => ColumnType::Jsonb,
        }
    }
}

/// One handle per family, and [`TABLES`] in the declaration's order. A
/// family's builder arm names its handle, so a handle missing here is a
/// compile error; `tables_follow_the_declaration` checks the list is whole.
macro_rules! tables {
    ($($family:ident),+ $(,)?) => {
        $(
            pub static $family: LazyLock<Table> =
                LazyLock::new(|| Table::of(&lasect_families::$family));
        )+

        static ALL_TABLES: LazyLock<Vec<&'static Table>> =
            LazyLock::new(|| vec![$(&*$family),+]);
    };
}

tables!(
    DATABASE,
    HOST_CPU,
    HOST_MEMORY,
    STATEMENT,
    TABLE,
    INDEX,
    WAL,
    BGWRITER,
    ARCHIVER,
    SETTINGS,
    SETTING_CHANGES,
    ACTIVITY,
    ACTIVITY_SESSIONS,
    LOCK,
    LOCK_WAITS,
    REPLICATION,
    REPLICATION_SLOT,
    PROGRESS,
    WAIT,
    HOST_NETWORK,
    HOST_DISK_IO,
    STANDBY,
    SUBSCRIPTION,
    SUBSCRIPTION_TABLES,
    REPLICATION_IDENTITY,
    SUBSCRIPTION_SOURCE,
    PUBLICATION,
    SUBSCRIPTION_COPY,
    CUSTOM,
    HOST_FILESYSTEM,
    COLLECTOR_EVENT,
    LOG,
    LOG_PLANS,
    LOG_DROPS,
    BACKUP,
);

/// Every metric table this build writes: a slice of [`Table`]s, built on
/// first use (a unit type rather than a static so that `for t in TABLES`
/// reads as it did when the list was a literal slice).
#[derive(Debug, Clone, Copy)]
pub struct Tables;

pub const TABLES: Tables = Tables;

impl Deref for Tables {
    type Target = [&'static Table];

    fn deref(&self) -> &[&'static Table] {
        &ALL_TABLES
    }
}

impl IntoIterator for Tables {
    type Item = &'static &'static Table;
    type IntoIter = std::slice::Iter<'static, &'static Table>;

    fn into_iter(self) -> Self::IntoIter {
        ALL_TABLES.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_follow_the_declaration() {
        let names: Vec<_> = TABLES.iter().map(|t| t.family).collect();
        let declared: Vec<_> = lasect_families::ALL.iter().map(|f| f.name).collect();
        assert_eq!(names, declared);
        assert_eq!(DATABASE.name, "metric_database");
        assert_eq!(HOST_CPU.key, Key::Agent);
        assert_eq!(
            HOST_CPU.columns.first(),
            Some(&("cpu_count", ColumnType::Int4))
        );
        // One descriptor per family: rows are grouped by descriptor identity.
        assert!(std::ptr::eq(TABLES[0], &*DATABASE));
    }
}
