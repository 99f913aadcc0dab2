//! The metric families, declared once.
//!
//! Each family is one [`Family`] in [`catalog`]: its store table, the id its rows are keyed by,
//! and its columns in table order, each with its type, whether it may be NULL and its [`Role`]
//! (a series key, a counter, a gauge, …, which decides how the API downsamples it). Everything
//! else is derived from these declarations:
//!
//! - ingest's table descriptors (`ingest/src/validate/schema.rs`): the binary COPY of every
//!   family's rows;
//! - the API's family list (`api/src/routes/metric_families.rs`): the samples SQL, the
//!   `{family}` enum of the OpenAPI document;
//! - the API's series rules (`api/src/routes/series_spec.rs`): series keys and per-column
//!   aggregates of `…/metrics/{family}`;
//! - the TimescaleDB series key (`metric_families.segment_by`, [`Family::segment_by`]).
//!
//! The tables themselves are created by the migrations (`migrations/sql`); the test
//! `families/tests/store_schema.rs` migrates a store and compares every declaration with
//! `information_schema.columns` and `metric_families`, so a migration and its declaration
//! cannot drift apart.
//!
//! No dependencies on purpose: every crate that needs a family's shape can read it without
//! taking a database driver or web framework along.

pub mod catalog;

pub use catalog::*;

/// The id column that follows `time` in every metric table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `instance_id bigint`: the instance the sample came from.
    Instance,
    /// `agent_id text`: host-level families belong to the agent's host.
    Agent,
}

impl Key {
    /// The column's name in the store.
    pub const fn column(self) -> &'static str {
        match self {
            Key::Instance => "instance_id",
            Key::Agent => "agent_id",
        }
    }

    /// The column's type in the store.
    pub const fn column_type(self) -> ColumnType {
        match self {
            Key::Instance => ColumnType::Int8,
            Key::Agent => ColumnType::Text,
        }
    }
}

/// The column types metric tables use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Int4,
    Int8,
    Float8,
    Text,
    Bool,
    Timestamptz,
    Jsonb,
}

impl ColumnType {
    /// The type as `information_schema.columns.data_type` spells it.
    pub const fn sql_name(self) -> &'static str {
        match self {
            ColumnType::Int4 => "integer",
            ColumnType::Int8 => "bigint",
            ColumnType::Float8 => "double precision",
            ColumnType::Text => "text",
            ColumnType::Bool => "boolean",
            ColumnType::Timestamptz => "timestamp with time zone",
            ColumnType::Jsonb => "jsonb",
        }
    }
}

/// How the values of one column in one time bucket become the bucket's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Mean of the samples.
    Avg,
    /// Largest sample.
    Max,
    /// Increase per second between the last samples of consecutive buckets (a reset counts
    /// from zero).
    Rate,
    /// Sum of the samples.
    Sum,
}

impl Aggregate {
    /// The name the API reports (`columns[].aggregate`).
    pub const fn name(self) -> &'static str {
        match self {
            Aggregate::Avg => "avg",
            Aggregate::Max => "max",
            Aggregate::Rate => "rate",
            Aggregate::Sum => "sum",
        }
    }
}

/// What a column is to a time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Tells series apart (one series per distinct value of the keys, e.g. per `datname`);
    /// also the TimescaleDB compression segment, after the id column.
    Key,
    /// A cumulative counter as PostgreSQL keeps it (`xact_commit`): shown as a rate.
    Counter,
    /// A per-interval count the agent already computed (`statement`, `wait`): summed.
    Delta,
    /// A level (sizes, sessions, percentages): averaged.
    Gauge,
    /// A level whose worst value matters (ages, lags, progress, durations): its maximum.
    Peak,
    /// Shown by the samples endpoint only (text, timestamps, flags, ids).
    Detail,
}

impl Role {
    /// The aggregate of a value column; `None` for keys and details.
    pub const fn aggregate(self) -> Option<Aggregate> {
        match self {
            Role::Counter => Some(Aggregate::Rate),
            Role::Delta => Some(Aggregate::Sum),
            Role::Gauge => Some(Aggregate::Avg),
            Role::Peak => Some(Aggregate::Max),
            Role::Key | Role::Detail => None,
        }
    }
}

/// One column of a metric table after `time` and the id column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    /// Whether the store allows NULL ("not collected" on this server version or setup).
    pub nullable: bool,
    pub role: Role,
}

impl Column {
    pub const fn new(name: &'static str, ty: ColumnType, role: Role) -> Column {
        Column {
            name,
            ty,
            nullable: true,
            role,
        }
    }

    /// The column is `NOT NULL` in the store.
    pub const fn not_null(self) -> Column {
        Column {
            nullable: false,
            ..self
        }
    }
}

/// How the API lists the rows of one sample time (`…/samples/{family}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// One row per sample time: `limit` counts rows.
    OnePerTime,
    /// Rows of one sample time in this order (SQL, a literal): `limit` counts sample times.
    Ordered(&'static str),
}

/// A metric family: one store table.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    /// The name the API, the CLI and `metric_families.name` use.
    pub name: &'static str,
    /// The store table (`metric_families.table_name`).
    pub table: &'static str,
    pub key: Key,
    pub rows: Rows,
    /// Columns after `time` and the id column, in table order.
    pub columns: &'static [Column],
}

impl Family {
    /// Columns whose role is `role`, in table order.
    pub fn columns_with(&self, role: Role) -> impl Iterator<Item = &'static Column> + use<> {
        self.columns.iter().filter(move |c| c.role == role)
    }

    /// The columns that tell series apart, in table order.
    pub fn series_keys(&self) -> impl Iterator<Item = &'static str> + use<> {
        self.columns_with(Role::Key).map(|c| c.name)
    }

    /// The columns a series shows, with their aggregate, in table order.
    pub fn series_values(&self) -> impl Iterator<Item = (&'static str, Aggregate)> + use<> {
        self.columns
            .iter()
            .filter_map(|c| c.role.aggregate().map(|a| (c.name, a)))
    }

    /// The TimescaleDB compression segment (`metric_families.segment_by`): the id column,
    /// then the series keys.
    pub fn segment_by(&self) -> Vec<&'static str> {
        std::iter::once(self.key.column())
            .chain(self.series_keys())
            .collect()
    }

    pub fn column(&self, name: &str) -> Option<&'static Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// The family named `name`.
pub fn find(name: &str) -> Option<&'static Family> {
    ALL.iter().copied().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tables_and_columns_are_unique() {
        let mut names: Vec<_> = ALL.iter().map(|f| f.name).collect();
        let mut tables: Vec<_> = ALL.iter().map(|f| f.table).collect();
        names.sort_unstable();
        names.dedup();
        tables.sort_unstable();
        tables.dedup();
        assert_eq!(names.len(), ALL.len());
        assert_eq!(tables.len(), ALL.len());
        for f in ALL {
            assert!(!f.columns.is_empty(), "{}", f.name);
            let mut columns: Vec<_> = f.columns.iter().map(|c| c.name).collect();
            columns.extend(["time", f.key.column()]);
            columns.sort_unstable();
            columns.dedup();
            assert_eq!(columns.len(), f.columns.len() + 2, "{}", f.name);
        }
    }

    /// The API strips a `v_` prefix from value aliases and names key columns as they are: a
    /// column that starts with it, or a value named like the bucket's own columns, would be
    /// read wrong.
    #[test]
    fn series_columns_cannot_collide_with_the_query_aliases() {
        for f in ALL {
            for c in f.columns {
                assert!(
                    !c.name.starts_with("v_") && !c.name.starts_with("c_"),
                    "{}.{}",
                    f.name,
                    c.name
                );
                assert!(
                    !["time", "row_count", "last_time"].contains(&c.name),
                    "{}.{}",
                    f.name,
                    c.name
                );
            }
        }
    }

    #[test]
    fn roles_decide_keys_values_and_segments() {
        let db = find("database").expect("database");
        assert_eq!(db.series_keys().collect::<Vec<_>>(), ["datname"]);
        assert_eq!(db.segment_by(), ["instance_id", "datname"]);
        let values: Vec<_> = db.series_values().collect();
        assert_eq!(values.first(), Some(&("numbackends", Aggregate::Avg)));
        assert!(values.contains(&("xact_commit", Aggregate::Rate)));
        assert!(
            !values
                .iter()
                .any(|(c, _)| *c == "stats_reset" || *c == "datid")
        );
        assert_eq!(
            find("host_cpu").expect("host_cpu").segment_by(),
            ["agent_id"]
        );
        assert!(find("metric_database").is_none());
    }
}
