//! One parsed log entry, whatever the file format, and its classification
//! into what the agent sends: a [`LogEvent`], or a [`LogPlan`] for
//! auto_explain output.
//!
//! Classification reads the message the way PostgreSQL writes it:
//! `duration: 1.234 ms  plan:\n…` is an auto_explain plan;
//! `duration: 1.234 ms  statement: …` (or `execute <name>: …`, `bind …`,
//! `parse …`) is a slow statement with its duration; `statement: …` is
//! `log_statement` output. The statement part of such messages, the
//! entry's own statement and `parameters: …` details are redacted when
//! redaction is on.

use std::sync::LazyLock;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone};
use lasect_proto::v1::{LogEvent, LogPlan};
use regex::Regex;

use super::redact::{json_string, redact_plan_json, redact_plan_line, redact_sql};

/// The format an entry came from (`LogEvent.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    Stderr,
    Csv,
    Json,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Stderr => "stderr",
            Format::Csv => "csvlog",
            Format::Json => "jsonlog",
        }
    }
}

/// A log entry with the fields all formats share (empty = not present).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Entry {
    pub time_unix_micros: Option<i64>,
    pub severity: String,
    pub sqlstate: String,
    pub message: String,
    pub detail: String,
    pub hint: String,
    pub context: String,
    pub statement: String,
    pub user_name: String,
    pub database: String,
    pub application: String,
    pub pid: Option<i32>,
    pub query_id: Option<i64>,
    /// The message was cut while it was read (a stderr line over the line
    /// cap): an auto_explain plan from it is marked truncated.
    pub message_cut: bool,
}

/// Longest auto_explain plan sent, in bytes, after redaction; a longer one
/// is cut at a character boundary and marked truncated (`LogPlan.truncated`)
/// so that one huge plan cannot make its batch too large for ingest (which
/// refuses a text over 1 MiB, and with it the whole batch).
pub const MAX_PLAN_BYTES: usize = 256 << 10;
/// Longest query text of a plan sent, in bytes (a plan's query may be a
/// giant `IN (…)` list).
pub const MAX_PLAN_QUERY_BYTES: usize = 64 << 10;

/// True for an auto_explain message (`duration: 1.2 ms  plan:\n…`): the
/// readers keep such a message whole, since it is capped only after it is
/// redacted (cutting first could leave half a literal, and would cut a JSON
/// plan where its query text should be read).
pub fn is_plan_message(message: &str) -> bool {
    if !message.starts_with("duration: ") {
        return false;
    }
    let mut end = message.len().min(64);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].contains(" ms  plan:")
}

/// What an entry becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Event(LogEvent),
    Plan(LogPlan),
}

/// Limits applied to every text field of an entry.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Longest field kept, in bytes (cut at a character boundary).
    pub max_field_bytes: usize,
}

static DURATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)\Aduration: ([0-9]+(?:\.[0-9]+)?) ms(?:\s+(.*))?\z").unwrap_or_else(|e| {
        unreachable!("constant regex: {e}");
    })
});
/// PL/pgSQL context lines quote the SQL they ran.
static CONTEXT_SQL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?m)^(SQL statement ")(.*)("\s*)$"#)
        .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
});
static STATEMENT_PART: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)\A((?:statement|(?:execute|bind|parse) [^:\n]*): )(.*)\z")
        .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
});

impl Entry {
    /// The event or plan this entry is, redacted when `redact` is set.
    pub fn classify(self, format: Format, redact: bool) -> Record {
        let sql = |s: &str| if redact { redact_sql(s) } else { s.to_owned() };
        let mut duration_ms = None;
        let mut rest: &str = &self.message;
        if let Some(c) = DURATION.captures(&self.message) {
            duration_ms = c
                .get(1)
                .and_then(|m| m.as_str().parse::<f64>().ok())
                .filter(|d| d.is_finite());
            rest = c.get(2).map_or("", |m| m.as_str());
            if let Some(plan) = rest.strip_prefix("plan:") {
                return Record::Plan(self.plan(plan, duration_ms, redact));
            }
        }
        let mut statement = sql(&self.statement);
        let mut message = self.message.clone();
        if let Some(c) = STATEMENT_PART.captures(rest) {
            let (label, text) = (&c[1], &c[2]);
            let redacted = sql(text);
            let head = &self.message[..self.message.len() - rest.len()];
            message = format!("{head}{label}{redacted}");
            if statement.is_empty() {
                statement = redacted;
            }
        }
        let detail = if redact && self.detail.starts_with("parameters: ") {
            redact_sql(&self.detail)
        } else {
            self.detail
        };
        let context = if redact {
            CONTEXT_SQL
                .replace_all(&self.context, |c: &regex::Captures<'_>| {
                    format!("{}{}{}", &c[1], redact_sql(&c[2]), &c[3])
                })
                .into_owned()
        } else {
            self.context
        };
        Record::Event(LogEvent {
            time_unix_micros: self.time_unix_micros,
            severity: self.severity,
            sqlstate: self.sqlstate,
            message,
            detail,
            hint: self.hint,
            context,
            statement,
            user_name: self.user_name,
            database: self.database,
            application: self.application,
            pid: self.pid,
            query_id: self.query_id,
            duration_ms,
            source: format.name().to_owned(),
        })
    }

    fn plan(&self, body: &str, duration_ms: Option<f64>, redact: bool) -> LogPlan {
        let body = body.trim_start_matches([' ', '\n', '\r']).trim_end();
        let json = body.starts_with('{');
        // The plan's own query id first: for a nested statement
        // (`auto_explain.log_nested_statements`) the log line's query id is
        // the top-level statement's. Only `log_verbose` prints it (PostgreSQL 16+).
        let (mut query_text, mut own_id) = (String::new(), None);
        if json {
            // auto_explain.log_format = json; a plan cut short or otherwise
            // malformed is kept as text.
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
                if let Some(q) = v.get("Query Text").and_then(|q| q.as_str()) {
                    query_text = q.to_owned();
                }
                own_id = v
                    .get("Query Identifier")
                    .and_then(serde_json::Value::as_i64);
            } else if let Some((_, after)) = body.split_once("\"Query Text\":") {
                // auto_explain writes the query text first: a cut plan has it.
                let (token, _) = json_string(after.trim_start());
                if let Some(q) = token.and_then(|t| serde_json::from_str::<String>(t).ok()) {
                    query_text = q;
                }
            }
        }
        // auto_explain.log_format = yaml: its strings are JSON-quoted
        // (PostgreSQL's escape_yaml), its keys bare; read and redacted like a
        // JSON plan, kept as text.
        let yaml = !json
            && (body.starts_with("Query Text: \"")
                || body
                    .lines()
                    .any(|l| l.trim_start().starts_with("Node Type: \"")));
        if yaml {
            for line in body.lines() {
                if let Some(q) = line.strip_prefix("Query Text: ") {
                    let (token, _) = json_string(q);
                    query_text = token
                        .and_then(|t| serde_json::from_str::<String>(t).ok())
                        .unwrap_or_default();
                } else if let Some(id) = line.trim_start().strip_prefix("Query Identifier: ") {
                    own_id = own_id.or_else(|| id.trim().parse().ok());
                }
            }
        }
        let mut plan_lines = Vec::new();
        // A multi-line query text runs until the plan starts: the first
        // line with a node's estimates or timings, or the query id.
        let plan_starts = |l: &str| {
            l.contains("(cost=") || l.contains("(actual ") || l.starts_with("Query Identifier: ")
        };
        let mut in_query = false;
        if !json && !yaml {
            for line in body.lines() {
                let trimmed = line.trim_start();
                if let Some(q) = trimmed.strip_prefix("Query Text: ")
                    && query_text.is_empty()
                {
                    query_text = q.to_owned();
                    in_query = true;
                } else if in_query && !plan_starts(trimmed) {
                    query_text.push('\n');
                    query_text.push_str(line);
                } else if let Some(id) = trimmed.strip_prefix("Query Identifier: ") {
                    in_query = false;
                    own_id = own_id.or_else(|| id.trim().parse().ok());
                } else {
                    in_query = false;
                    plan_lines.push(line);
                }
            }
        }
        if in_query {
            // No recognisable plan line (costs off): keep only the first line
            // as the query, the rest is the plan.
            let mut lines = query_text.lines();
            let first = lines.next().unwrap_or_default().to_owned();
            plan_lines = body
                .lines()
                .skip_while(|l| !l.trim_start().starts_with("Query Text: "))
                .skip(1)
                .collect();
            query_text = first;
        }
        let (mut query_text, mut plan) = match (redact, json || yaml) {
            (true, true) => (redact_sql(&query_text), redact_plan_json(body)),
            (true, false) => (
                redact_sql(&query_text),
                plan_lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| redact_plan_line(l, i == 0))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            (false, true) => (query_text, body.to_owned()),
            (false, false) => (query_text, plan_lines.join("\n")),
        };
        let mut truncated = self.message_cut;
        truncated |= cap_text(&mut plan, MAX_PLAN_BYTES);
        truncated |= cap_text(&mut query_text, MAX_PLAN_QUERY_BYTES);
        LogPlan {
            time_unix_micros: self.time_unix_micros,
            pid: self.pid,
            query_id: own_id.filter(|id| *id != 0).or(self.query_id),
            duration_ms,
            database: self.database.clone(),
            user_name: self.user_name.clone(),
            query_text,
            plan,
            truncated: Some(truncated),
        }
    }

    /// Cuts every text field to `caps`, removes NUL characters (the store's
    /// text cannot hold them) and drops values ingest refuses; true when
    /// something was cut.
    pub fn apply_caps(&mut self, caps: Caps) -> bool {
        let mut cut = false;
        for field in [
            &mut self.severity,
            &mut self.sqlstate,
            &mut self.detail,
            &mut self.hint,
            &mut self.context,
            &mut self.statement,
            &mut self.user_name,
            &mut self.database,
            &mut self.application,
        ] {
            cut |= cap_text(field, caps.max_field_bytes);
        }
        if is_plan_message(&self.message) {
            // Capped once redacted ([`MAX_PLAN_BYTES`]); only NUL goes now.
            cap_text(&mut self.message, usize::MAX);
        } else {
            cut |= cap_text(&mut self.message, caps.max_field_bytes);
        }
        // Names are identifiers (63 bytes) in PostgreSQL; longer ones are
        // not names but damage.
        for field in [&mut self.user_name, &mut self.database] {
            cut |= cap_text(field, 63);
        }
        cut |= cap_text(&mut self.application, 255);
        cut |= cap_text(&mut self.severity, 16);
        if self.sqlstate.len() != 5 || !self.sqlstate.bytes().all(|b| b.is_ascii_alphanumeric()) {
            self.sqlstate.clear();
        }
        // What ingest would refuse (and with it the whole batch) is dropped
        // here: a time outside 2000..now+1h, a pid that is not positive.
        let latest = chrono::Utc::now().timestamp_micros() + 3_600_000_000;
        self.time_unix_micros = self
            .time_unix_micros
            .filter(|t| (EARLIEST_MICROS..=latest).contains(t));
        self.pid = self.pid.filter(|p| *p > 0);
        if self.severity.is_empty() {
            self.severity = "LOG".into();
        }
        cut
    }
}

/// 2000-01-01 UTC: ingest refuses older times.
const EARLIEST_MICROS: i64 = 946_684_800_000_000;

/// Cuts `s` to at most `max` bytes at a character boundary and replaces NUL.
pub fn cap_text(s: &mut String, max: usize) -> bool {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{fffd}");
    }
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}

/// PostgreSQL's log time (`%m`, `%t`, csvlog and jsonlog): `YYYY-MM-DD
/// HH:MM:SS[.fff] TZ`, where TZ is `UTC`/`GMT` or a numeric offset
/// (`+02`, `-0530`, `+05:30`). Other zone abbreviations are ambiguous and
/// give `None` (the sample time stands in).
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let (stamp, zone) = match s.rsplit_once(' ') {
        Some((stamp, zone)) if !zone.contains(':') || zone.starts_with(['+', '-']) => (stamp, zone),
        _ => (s, "UTC"),
    };
    let naive = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.f").ok()?;
    let offset_secs = match zone {
        "UTC" | "GMT" | "Z" | "Etc/UTC" => 0,
        z if z.starts_with(['+', '-']) => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let digits: String = z[1..].chars().filter(char::is_ascii_digit).collect();
            let (h, m) = match digits.len() {
                2 => (digits.parse::<i32>().ok()?, 0),
                4 => (
                    digits[..2].parse::<i32>().ok()?,
                    digits[2..].parse::<i32>().ok()?,
                ),
                _ => return None,
            };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let offset = FixedOffset::east_opt(offset_secs)?;
    let time: DateTime<FixedOffset> = offset.from_local_datetime(&naive).single()?;
    Some(time.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(message: &str) -> Entry {
        Entry {
            severity: "LOG".into(),
            message: message.into(),
            pid: Some(7),
            ..Entry::default()
        }
    }

    #[test]
    fn times_in_utc_and_offsets() {
        assert_eq!(parse_time("1970-01-01 00:00:01.500 UTC"), Some(1_500_000));
        assert_eq!(parse_time("1970-01-01 01:00:01 +01"), Some(1_000_000));
        assert_eq!(parse_time("1970-01-01 00:00:01 -0030"), Some(1_801_000_000));
        assert_eq!(parse_time("1970-01-01 00:00:01 CEST"), None);
        assert_eq!(parse_time("garbage"), None);
        assert_eq!(parse_time(""), None);
    }

    #[test]
    fn slow_statements_carry_their_duration_and_a_redacted_statement() {
        let Record::Event(e) = entry("duration: 12.5 ms  statement: SELECT 'secret', 42")
            .classify(Format::Stderr, true)
        else {
            panic!("not an event")
        };
        assert_eq!(e.duration_ms, Some(12.5));
        assert_eq!(e.message, "duration: 12.5 ms  statement: SELECT ?, ?");
        assert_eq!(e.statement, "SELECT ?, ?");
        let Record::Event(e) =
            entry("duration: 0.1 ms  execute S_1: SELECT $1").classify(Format::Csv, false)
        else {
            panic!("not an event")
        };
        assert_eq!(
            (e.duration_ms, e.statement.as_str()),
            (Some(0.1), "SELECT $1")
        );
        let huge = format!("duration: {} ms", "9".repeat(400));
        let Record::Event(e) = entry(&huge).classify(Format::Csv, true) else {
            panic!("not an event")
        };
        assert_eq!(e.duration_ms, None, "not finite");
        let Record::Event(e) = entry("duration: 3 ms").classify(Format::Csv, true) else {
            panic!("not an event")
        };
        assert_eq!(e.duration_ms, Some(3.0));
    }

    #[test]
    fn statements_and_parameters_are_redacted_only_when_asked() {
        let mut e = entry("statement: UPDATE t SET a = 'x'");
        e.detail = "parameters: $1 = 'alice', $2 = '7'".into();
        e.statement = "SELECT 1".into();
        e.context =
            "SQL statement \"SELECT 'k' || 9\"\nPL/pgSQL function f() line 3 at SQL statement"
                .into();
        let Record::Event(r) = e.clone().classify(Format::Json, true) else {
            panic!("not an event")
        };
        assert_eq!(
            r.context,
            "SQL statement \"SELECT ? || ?\"\nPL/pgSQL function f() line 3 at SQL statement"
        );
        assert_eq!(r.message, "statement: UPDATE t SET a = ?");
        assert_eq!(r.detail, "parameters: $1 = ?, $2 = ?");
        assert_eq!(r.statement, "SELECT ?");
        let Record::Event(r) = e.classify(Format::Json, false) else {
            panic!("not an event")
        };
        assert_eq!(r.message, "statement: UPDATE t SET a = 'x'");
    }

    #[test]
    fn auto_explain_output_is_a_plan() {
        let msg = "duration: 0.021 ms  plan:\nQuery Text: SELECT * FROM t WHERE a = 5\nQuery Identifier: -77\nSeq Scan on t  (cost=0.00..1.01 rows=1 width=4)\n  Filter: (a = 5)";
        let Record::Plan(p) = entry(msg).classify(Format::Stderr, true) else {
            panic!("not a plan")
        };
        assert_eq!(p.duration_ms, Some(0.021));
        assert_eq!(p.query_id, Some(-77));
        assert_eq!(p.query_text, "SELECT * FROM t WHERE a = ?");
        assert!(
            p.plan.starts_with("Seq Scan on t  (cost=0.00..1.01"),
            "{}",
            p.plan
        );
        let json =
            "duration: 1.0 ms  plan:\n{\n  \"Query Text\": \"SELECT 'k'\",\n  \"Plan\": {}\n}";
        let Record::Plan(p) = entry(json).classify(Format::Json, true) else {
            panic!("not a plan")
        };
        assert_eq!(p.query_text, "SELECT ?");
        assert!(p.plan.contains("\"Plan\""));
        let multi = "duration: 2 ms  plan:\nQuery Text: SELECT a\n  FROM t\n  WHERE b = 'x'\nSeq Scan on t  (cost=0.00..1.01 rows=1 width=4)\n  Filter: (b = 'x'::text)";
        let Record::Plan(p) = entry(multi).classify(Format::Stderr, true) else {
            panic!("not a plan")
        };
        assert_eq!(p.query_text, "SELECT a\n  FROM t\n  WHERE b = ?");
        assert_eq!(
            p.plan,
            "Seq Scan on t  (cost=0.00..1.01 rows=1 width=4)\n  Filter: (b = ?::text)"
        );
        let costs_off = "duration: 2 ms  plan:\nQuery Text: SELECT 1\nResult";
        let Record::Plan(p) = entry(costs_off).classify(Format::Stderr, false) else {
            panic!("not a plan")
        };
        assert_eq!(
            (p.query_text.as_str(), p.plan.as_str()),
            ("SELECT 1", "Result")
        );
    }

    #[test]
    fn caps_cut_at_character_boundaries_and_drop_nul() {
        let mut e = entry("ééé\0");
        e.sqlstate = "2201".into();
        assert!(e.apply_caps(Caps { max_field_bytes: 5 }));
        assert_eq!(e.message, "éé");
        assert_eq!(e.sqlstate, "");
        let mut e = entry("a\0b");
        assert!(!e.apply_caps(Caps {
            max_field_bytes: 100
        }));
        assert_eq!(e.message, "a\u{fffd}b");
    }
}
