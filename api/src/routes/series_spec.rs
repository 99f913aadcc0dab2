//! How each metric family becomes a time series (`GET …/metrics/{family}`).
//!
//! Per family: the key columns that tell series apart (one series per distinct key, e.g. per
//! `datname`) and the numeric columns shown, each with the aggregate used inside a bucket:
//!
//! | aggregate | for | value of a bucket |
//! |---|---|---|
//! | `avg` | gauges (sizes, counts of sessions, percentages) | mean of the samples in the bucket |
//! | `max` | "oldest …" ages and progress | largest sample in the bucket |
//! | `rate` | cumulative counters (`xact_commit`, `blks_read`, WAL bytes, …) | per second: the increase from the last sample of the series' previous bucket to the last sample of this one, over the seconds between them (exact for a counter that only grows); when the counter went down it was reset, and its new value is taken as the increase (as Prometheus does); null for a series' first bucket when nothing precedes it |
//! | `sum` | per-interval deltas the agent already computed (`statement`, `wait`) | sum over the samples in the bucket |
//!
//! Every point also has `row_count`: how many rows fell in the bucket. Columns not listed (text,
//! timestamps, flags) are not part of series; the samples endpoint returns them.
//!
//! Keys and aggregates are declared once per column in `lasect-families` (its `Role`), and
//! every name is a literal there: the SQL built from it contains nothing a client sent.

use std::sync::LazyLock;

use lasect_families::Aggregate::{Avg, Max, Rate, Sum};
use lasect_families::ColumnType;
use serde_json::Value;

use super::metric_families::FamilySpec;

/// The aggregate of a value column inside a bucket (declared per column as its role in
/// `lasect-families`: counter = `rate`, delta = `sum`, gauge = `avg`, peak = `max`).
pub use lasect_families::Aggregate;

#[derive(Debug)]
pub struct SeriesSpec {
    pub family: &'static str,
    pub keys: &'static [&'static str],
    pub values: &'static [(&'static str, Aggregate)],
}

/// The series of every family, in the declaration's order, derived once from the roles of its
/// columns (the leaked lists are bounded: one per family).
pub static SERIES: LazyLock<Vec<SeriesSpec>> = LazyLock::new(|| {
    lasect_families::ALL
        .iter()
        .map(|f| SeriesSpec {
            family: f.name,
            keys: f.series_keys().collect::<Vec<_>>().leak(),
            values: f.series_values().collect::<Vec<_>>().leak(),
        })
        .collect()
});

pub fn find(family: &str) -> Option<&'static SeriesSpec> {
    SERIES.iter().find(|s| s.family == family)
}

/// One condition of a request's `key`: a key column of the family (a literal of the
/// declaration), its SQL type, and the value it must have, bound as text and cast to that type;
/// `None` is a missing value (`IS NULL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFilter {
    pub column: &'static str,
    pub sql_type: &'static str,
    pub value: Option<String>,
}

/// Reads a request's `key`: a JSON object from key columns of `family` to the value each must
/// have. Integers may come as strings, since query ids do not fit JavaScript's numbers. The
/// error names what is wrong and the family's key columns.
pub fn key_filters(family: &str, text: &str) -> Result<Vec<KeyFilter>, String> {
    let declared = lasect_families::find(family)
        .ok_or_else(|| format!("family {family:?} has no key columns"))?;
    let keys: Vec<&'static str> = declared.series_keys().collect();
    let known = || {
        if keys.is_empty() {
            format!("family {family} has no key columns")
        } else {
            format!("the key columns of {family} are {}", keys.join(", "))
        }
    };
    let object: serde_json::Map<String, Value> = serde_json::from_str(text).map_err(|_| {
        format!(
            "key must be a JSON object of key columns to values, e.g. {{\"{}\":\"…\"}}; {}",
            keys.first().copied().unwrap_or("column"),
            known()
        )
    })?;
    if let Some(name) = object.keys().find(|n| !keys.contains(&n.as_str())) {
        return Err(format!("{name:?} is not a key column; {}", known()));
    }
    // In the declaration's order, so the SQL of one set of keys is always the same.
    let mut filters = Vec::with_capacity(object.len());
    for (name, value) in keys.iter().filter_map(|k| object.get_key_value(*k)) {
        let column = declared
            .column(name)
            .ok_or_else(|| format!("{name:?} is not a column of {family}"))?;
        let wrong = |what: &str| format!("key {name}: {what}, not {value}");
        let value = match (column.ty, value) {
            (_, Value::Null) => None,
            (ColumnType::Text, Value::String(s)) => Some(s.clone()),
            (ColumnType::Int8, Value::Number(n)) => Some(
                n.as_i64()
                    .ok_or_else(|| wrong("a 64-bit integer"))?
                    .to_string(),
            ),
            (ColumnType::Int8, Value::String(s)) => Some(
                s.parse::<i64>()
                    .map_err(|_| wrong("a 64-bit integer"))?
                    .to_string(),
            ),
            (ColumnType::Int4, Value::Number(n)) => Some(
                n.as_i64()
                    .and_then(|v| i32::try_from(v).ok())
                    .ok_or_else(|| wrong("a 32-bit integer"))?
                    .to_string(),
            ),
            (ColumnType::Int4, Value::String(s)) => Some(
                s.parse::<i32>()
                    .map_err(|_| wrong("a 32-bit integer"))?
                    .to_string(),
            ),
            (ColumnType::Bool, Value::Bool(b)) => Some(b.to_string()),
            (ColumnType::Jsonb, v) => Some(v.to_string()),
            (ColumnType::Text, _) => return Err(wrong("a string")),
            (ColumnType::Int8 | ColumnType::Int4, _) => return Err(wrong("an integer")),
            (ColumnType::Bool, _) => return Err(wrong("true or false")),
            (ColumnType::Float8 | ColumnType::Timestamptz, _) => {
                return Err(format!(
                    "key {name}: a {} key cannot be filtered",
                    column.ty.sql_name()
                ));
            }
        };
        filters.push(KeyFilter {
            column: column.name,
            sql_type: column.ty.sql_name(),
            value,
        });
    }
    Ok(filters)
}

/// The bucketing function of the store's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucketing {
    /// Native partitions: PostgreSQL's `date_bin`.
    DateBin,
    /// TimescaleDB hypertables: `time_bucket`.
    TimeBucket,
}

/// The downsampling query of `family` (whose table and key column come from `spec`).
///
/// Binds: `$1` key (instance id or agent id), `$2` from (aligned on a bucket start), `$3` to
/// (exclusive), `$4` step (interval), `$5` look-back before `from` (interval; the buckets there
/// only serve as the previous value of a rate), `$6` row limit, then from `$7` on the values
/// of `filters` that are not `None`, in order, as text. Buckets are aligned on
/// multiples of the step since the Unix epoch, on both layouts.
///
/// Two steps, so the raw rows are only scanned and hash-aggregated, never sorted: (1) one row
/// per (bucket, key) with the aggregates and, per rate column, its largest value and the
/// bucket's last sample time; (2) rates from consecutive buckets of a series (a window over
/// the few bucket rows): `(max_k - max_prev) / (last_time_k - last_time_prev)`, or
/// `max_k / …` when the counter went down (it was reset and counts from zero again, as
/// Prometheus assumes). For a counter that only grows this is exactly the increase between
/// the last samples of consecutive buckets.
pub fn series_sql(
    spec: &FamilySpec,
    series: &SeriesSpec,
    bucketing: Bucketing,
    filters: &[KeyFilter],
) -> String {
    let key_column = match spec.key {
        super::metric_families::FamilyKey::Instance => "instance_id",
        super::metric_families::FamilyKey::Agent => "agent_id",
    };
    let bucket = match bucketing {
        Bucketing::DateBin => "date_bin($4::interval, time, 'epoch'::timestamptz)",
        Bucketing::TimeBucket => "time_bucket($4::interval, time, 'epoch'::timestamptz)",
    };
    let keys = series.keys.join(", ");
    let mut inner = vec![
        format!("{bucket} AS time"),
        "count(*)::int8 AS row_count".to_owned(),
        "max(time) AS last_time".to_owned(),
    ];
    inner.extend(series.keys.iter().map(|k| (*k).to_owned()));
    let mut outer = vec!["time".to_owned(), "row_count".to_owned()];
    outer.extend(series.keys.iter().map(|k| (*k).to_owned()));
    for (column, aggregate) in series.values {
        // Aliased `v_…` so a value named like a key or `row_count` cannot collide with them;
        // the handler strips the prefix.
        match aggregate {
            Avg => inner.push(format!("avg({column})::float8 AS v_{column}")),
            Max => inner.push(format!("max({column})::float8 AS v_{column}")),
            Sum => inner.push(format!("sum({column})::float8 AS v_{column}")),
            Rate => {
                inner.push(format!("max({column})::float8 AS c_{column}"));
                outer.push(format!(
                    "(CASE WHEN c_{column} >= lag(c_{column}) OVER w \
                     THEN c_{column} - lag(c_{column}) OVER w ELSE c_{column} END) \
                     / nullif(extract(epoch FROM last_time - lag(last_time) OVER w)::float8, 0) \
                     AS v_{column}"
                ));
                continue;
            }
        }
        outer.push(format!("v_{column}"));
    }
    let mut bind = 6;
    let mut conditions = String::new();
    for f in filters {
        match f.value {
            Some(_) => {
                bind += 1;
                conditions.push_str(&format!(" AND {} = ${bind}::{}", f.column, f.sql_type));
            }
            None => conditions.push_str(&format!(" AND {} IS NULL", f.column)),
        }
    }
    let mut group = vec!["1".to_owned()];
    group.extend(series.keys.iter().map(|k| (*k).to_owned()));
    let (window, order) = if series.keys.is_empty() {
        (" WINDOW w AS (ORDER BY time)".to_owned(), "time".to_owned())
    } else {
        (
            format!(" WINDOW w AS (PARTITION BY {keys} ORDER BY time)"),
            format!("{keys}, time"),
        )
    };
    format!(
        "WITH buckets AS (SELECT {inner} FROM {table} \
         WHERE {key_column} = $1 AND time >= $2::timestamptz - $5::interval AND time < $3{conditions} \
         GROUP BY {group}), \
         rates AS (SELECT {outer} FROM buckets{window}) \
         SELECT * FROM rates WHERE time >= $2 ORDER BY {order} LIMIT $6",
        inner = inner.join(", "),
        table = spec.table,
        outer = outer.join(", "),
        group = group.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::metric_families::{FAMILIES, find as find_family};

    #[test]
    fn every_family_has_a_series_made_of_its_own_columns() {
        for family in FAMILIES {
            let series = find(family.name)
                .unwrap_or_else(|| panic!("family {} has no series spec", family.name));
            for column in series
                .keys
                .iter()
                .chain(series.values.iter().map(|(c, _)| c))
            {
                assert!(
                    family.columns.contains(column),
                    "{}: {column} is not a column of the family",
                    family.name
                );
            }
        }
        assert_eq!(SERIES.len(), FAMILIES.len(), "a series spec without family");
    }

    #[test]
    fn bucketing_follows_the_layout() {
        let spec = find_family("database").expect("database");
        let series = find("database").expect("series");
        let native = series_sql(spec, series, Bucketing::DateBin, &[]);
        assert!(native.contains("date_bin($4::interval, time, 'epoch'::timestamptz)"));
        assert!(native.contains("PARTITION BY datname ORDER BY time"));
        assert!(native.contains("GROUP BY 1, datname"));
        assert!(native.contains("FROM metric_database WHERE instance_id = $1"));
        let tsdb = series_sql(spec, series, Bucketing::TimeBucket, &[]);
        assert!(tsdb.contains("time_bucket($4::interval, time, 'epoch'::timestamptz)"));
        assert!(!tsdb.contains("date_bin"));
        let cpu = series_sql(
            find_family("host_cpu").expect("host_cpu"),
            find("host_cpu").expect("series"),
            Bucketing::DateBin,
            &[],
        );
        assert!(cpu.contains("WHERE agent_id = $1"));
        assert!(!cpu.contains("lag("), "no rate, no lag: {cpu}");
    }

    #[test]
    fn key_filters_follow_the_declared_key_columns() {
        let filters = key_filters(
            "wait",
            r#"{"wait_event_type":"Lock","queryid":"-9223372036854775808","wait_event":null}"#,
        )
        .expect("filters");
        assert_eq!(
            filters,
            [
                KeyFilter {
                    column: "wait_event_type",
                    sql_type: "text",
                    value: Some("Lock".into())
                },
                KeyFilter {
                    column: "wait_event",
                    sql_type: "text",
                    value: None
                },
                KeyFilter {
                    column: "queryid",
                    sql_type: "bigint",
                    value: Some("-9223372036854775808".into())
                },
            ]
        );
        let sql = series_sql(
            find_family("wait").expect("wait"),
            find("wait").expect("series"),
            Bucketing::DateBin,
            &filters,
        );
        assert!(
            sql.contains(
                "AND wait_event_type = $7::text AND wait_event IS NULL AND queryid = $8::bigint GROUP BY"
            ),
            "{sql}"
        );
        assert_eq!(
            key_filters("statement", r#"{"queryid":42}"#).expect("a number")[0].value,
            Some("42".into())
        );
        for (family, key, says) in [
            ("statement", r#"{"calls":"1"}"#, "not a key column"),
            ("statement", r#"{"queryid":"twelve"}"#, "64-bit integer"),
            ("statement", r#"{"queryid":1.5}"#, "64-bit integer"),
            ("database", r#"{"datname":7}"#, "a string"),
            ("database", r#"["datname"]"#, "JSON object"),
            ("database", "datname=postgres", "JSON object"),
            ("host_cpu", r#"{"cpu":"0"}"#, "has no key columns"),
        ] {
            let err = key_filters(family, key).expect_err(key);
            assert!(err.contains(says), "{family} {key}: {err}");
        }
    }
}
