//! The three log file formats, as pure functions from bytes to entries.
//!
//! Every parser takes the bytes read from a file since the last consumed
//! position and returns the entries that are complete, how many bytes they
//! (and any skipped garbage) took, and what it had to cut or skip. Bytes
//! after the last complete entry are left for the next read: a line without
//! its newline may still be being written, and a stderr message's
//! `DETAIL`/`STATEMENT` lines or tab-indented continuation lines belong to
//! the entry before them. With `flush` set, an entry that ends at the end
//! of the input is taken as complete (PostgreSQL writes a whole message at
//! once, so at the end of the file it is).
//!
//! - stderr: lines `<log_line_prefix>SEVERITY:  message`; the secondary
//!   parts (`DETAIL`, `HINT`, `QUERY`, `CONTEXT`, `LOCATION`, `STATEMENT`)
//!   of the same process join the entry; lines starting with a tab continue
//!   the part before them.
//! - csvlog: RFC 4180 records (quoted fields may hold newlines) with
//!   PostgreSQL's columns, read a line at a time by [`CsvStream`]; an unbalanced quote cannot swallow the file: a
//!   line that starts like a new record ends the broken one.
//! - jsonlog: one JSON object per line.
//!
//! Nothing here can panic on any input: bytes that are not UTF-8 are
//! replaced, and lines that fit no entry are counted as unparsed.

use serde::Deserialize;

use super::entry::{Entry, is_plan_message, parse_time};
use super::prefix::Prefix;
use crate::csv_stream::CsvStream;

/// How to read a file.
#[derive(Debug, Clone)]
pub enum Parser {
    Stderr(Prefix),
    Csv,
    Json,
}

/// What one parse produced.
#[derive(Debug, Default)]
pub struct Parsed {
    pub entries: Vec<Entry>,
    /// Bytes of the input that are done with (entries and skipped lines).
    pub consumed: usize,
    pub unparsed_lines: u64,
    pub truncated_lines: u64,
}

impl Parser {
    pub fn parse(&self, input: &[u8], flush: bool, max_line_bytes: usize) -> Parsed {
        match self {
            Parser::Stderr(prefix) => parse_stderr(prefix, input, flush, max_line_bytes),
            Parser::Csv => parse_csv(input, max_line_bytes),
            Parser::Json => parse_json(input, max_line_bytes),
        }
    }
}

/// Complete lines of `input` with their end offsets (after the newline).
fn lines(input: &[u8]) -> impl Iterator<Item = (&[u8], usize)> {
    let mut start = 0;
    std::iter::from_fn(move || {
        let len = input.get(start..)?.iter().position(|&b| b == b'\n')?;
        let line = &input[start..start + len];
        start += len + 1;
        Some((line.strip_suffix(b"\r").unwrap_or(line), start))
    })
}

/// A line as text, cut to `max` bytes; the flag says whether it was cut.
fn line_text(line: &[u8], max: usize) -> (String, bool) {
    let cut = line.len() > max;
    let line = &line[..line.len().min(max)];
    let mut text = String::from_utf8_lossy(line).into_owned();
    if text.contains('\0') {
        text = text.replace('\0', "\u{fffd}");
    }
    (text, cut)
}

/// Which field a stderr continuation line extends.
#[derive(Debug, Clone, Copy)]
enum Part {
    Message,
    Detail,
    Hint,
    Context,
    Statement,
    Ignored,
}

fn append(entry: &mut Entry, part: Part, text: &str) {
    let field = match part {
        Part::Message => &mut entry.message,
        Part::Detail => &mut entry.detail,
        Part::Hint => &mut entry.hint,
        Part::Context => &mut entry.context,
        Part::Statement => &mut entry.statement,
        Part::Ignored => return,
    };
    if !field.is_empty() {
        field.push('\n');
    }
    field.push_str(text);
}

fn parse_stderr(prefix: &Prefix, input: &[u8], flush: bool, max: usize) -> Parsed {
    let mut out = Parsed::default();
    // The open entry, the part its continuation lines extend, and where it began.
    let mut open: Option<(Entry, Part, usize)> = None;
    let mut line_start = 0;
    for (raw, end) in lines(input) {
        let (line, cut) = line_text(raw, max);
        out.truncated_lines += u64::from(cut);
        let start = line_start;
        line_start = end;
        if let Some(rest) = line.strip_prefix('\t') {
            match &mut open {
                Some((entry, part, _)) => {
                    entry.message_cut |= cut && matches!(part, Part::Message);
                    append(entry, *part, rest);
                }
                None => out.unparsed_lines += 1,
            }
            continue;
        }
        let Some(head) = prefix.parse(&line) else {
            out.unparsed_lines += 1;
            continue;
        };
        let secondary = match head.severity {
            "DETAIL" => Some(Part::Detail),
            "HINT" => Some(Part::Hint),
            "CONTEXT" => Some(Part::Context),
            "STATEMENT" => Some(Part::Statement),
            "QUERY" | "LOCATION" => Some(Part::Ignored),
            _ => None,
        };
        if let Some(part) = secondary {
            match &mut open {
                Some((entry, open_part, _))
                    if entry.pid.is_none() || head.pid.is_none() || entry.pid == head.pid =>
                {
                    append(entry, part, head.message);
                    *open_part = part;
                }
                _ => out.unparsed_lines += 1,
            }
            continue;
        }
        if let Some((entry, _, _)) = open.take() {
            out.entries.push(entry);
        }
        let entry = Entry {
            time_unix_micros: head.time_unix_micros,
            severity: head.severity.to_owned(),
            sqlstate: head.sqlstate.to_owned(),
            message: head.message.to_owned(),
            user_name: head.user_name.to_owned(),
            database: head.database.to_owned(),
            application: head.application.to_owned(),
            pid: head.pid,
            query_id: head.query_id,
            message_cut: cut,
            ..Entry::default()
        };
        open = Some((entry, Part::Message, start));
    }
    // `line_start` is now the end of the last complete line.
    let ends_cleanly = line_start == input.len();
    match open {
        Some((entry, _, _)) if flush && ends_cleanly => {
            out.entries.push(entry);
            out.consumed = line_start;
        }
        Some((_, _, start)) => out.consumed = start,
        None => out.consumed = line_start,
    }
    out
}

/// Looks like the start of a csvlog record: `YYYY-MM-DD HH:MM:SS`.
fn starts_like_record(bytes: &[u8]) -> bool {
    let shape = b"0000-00-00 00:00:00";
    bytes.len() >= shape.len()
        && bytes.iter().zip(shape).all(|(b, s)| {
            if *s == b'0' {
                b.is_ascii_digit()
            } else {
                b == s
            }
        })
}

fn parse_csv(input: &[u8], max: usize) -> Parsed {
    let mut out = Parsed::default();
    let mut record = CsvStream::new();
    let mut line_start = 0;
    for (_, end) in lines(input) {
        let start = line_start;
        line_start = end;
        let line = &input[start..end];
        if record.is_open() && starts_like_record(line) {
            // An unbalanced quote: the record is broken, the next begins.
            out.unparsed_lines += 1;
            record.reset();
            out.consumed = start;
        }
        let mut at = 0;
        while at < line.len() {
            let (used, done) = record.feed(&line[at..]);
            at += used;
            if !done {
                continue;
            }
            match csv_entry(&record.fields(), line.ends_with(b"\r\n"), max) {
                Some((entry, cut)) => {
                    out.truncated_lines += u64::from(cut);
                    out.entries.push(entry);
                }
                None => out.unparsed_lines += 1,
            }
            out.consumed = start + at;
        }
    }
    if record.is_open() && starts_like_record(&input[line_start..]) {
        out.unparsed_lines += 1;
        out.consumed = line_start;
    }
    out
}

/// `crlf`: the record ended with `\r\n`, whose `\r` is not data.
fn csv_entry(fields: &[&[u8]], crlf: bool, max: usize) -> Option<(Entry, bool)> {
    // PostgreSQL 13 writes 24 columns, 14+ 26; anything much shorter is not csvlog.
    if fields.len() < 23 {
        return None;
    }
    let last = fields.len() - 1;
    let mut cut = false;
    // An auto_explain plan is kept whole here and capped once redacted.
    let plan = fields
        .get(13)
        .is_some_and(|m| is_plan_message(&String::from_utf8_lossy(&m[..m.len().min(64)])));
    let mut text = |i: usize| {
        let (t, c) = fields.get(i).map_or((String::new(), false), |&f| {
            let f = if crlf && i == last {
                f.strip_suffix(b"\r").unwrap_or(f)
            } else {
                f
            };
            line_text(f, if plan && i == 13 { usize::MAX } else { max })
        });
        cut |= c;
        t
    };
    let time = text(0);
    let time_unix_micros = Some(parse_time(&time)?);
    let entry = Entry {
        time_unix_micros,
        user_name: text(1),
        database: text(2),
        pid: text(3).parse().ok(),
        severity: text(11),
        sqlstate: text(12),
        message: text(13),
        detail: text(14),
        hint: text(15),
        context: text(18),
        statement: text(19),
        application: text(22),
        query_id: text(25).parse().ok().filter(|q| *q != 0),
        message_cut: false,
    };
    if entry.severity.is_empty() {
        return None;
    }
    Some((entry, cut))
}

/// The jsonlog keys the agent keeps (PostgreSQL 15+ writes these names).
#[derive(Debug, Deserialize)]
struct JsonEntry {
    timestamp: Option<String>,
    user: Option<String>,
    dbname: Option<String>,
    pid: Option<i64>,
    error_severity: Option<String>,
    state_code: Option<String>,
    message: Option<String>,
    detail: Option<String>,
    hint: Option<String>,
    context: Option<String>,
    statement: Option<String>,
    application_name: Option<String>,
    query_id: Option<i64>,
}

fn parse_json(input: &[u8], max: usize) -> Parsed {
    let mut out = Parsed::default();
    for (line, end) in lines(input) {
        out.consumed = end;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(j) = serde_json::from_slice::<JsonEntry>(line) else {
            out.unparsed_lines += 1;
            continue;
        };
        let Some(severity) = j.error_severity else {
            out.unparsed_lines += 1;
            continue;
        };
        let mut entry = Entry {
            time_unix_micros: j.timestamp.as_deref().and_then(parse_time),
            severity,
            sqlstate: j.state_code.unwrap_or_default(),
            message: j.message.unwrap_or_default(),
            detail: j.detail.unwrap_or_default(),
            hint: j.hint.unwrap_or_default(),
            context: j.context.unwrap_or_default(),
            statement: j.statement.unwrap_or_default(),
            user_name: j.user.unwrap_or_default(),
            database: j.dbname.unwrap_or_default(),
            application: j.application_name.unwrap_or_default(),
            pid: j.pid.and_then(|p| i32::try_from(p).ok()),
            query_id: j.query_id.filter(|q| *q != 0),
            message_cut: false,
        };
        // The line cap bounds every field but an auto_explain plan's message
        // (kept whole, capped once redacted).
        let plan_bytes = if is_plan_message(&entry.message) {
            entry.message.len()
        } else {
            0
        };
        if line.len().saturating_sub(plan_bytes) > max {
            out.truncated_lines += 1;
            entry.apply_caps(super::entry::Caps {
                max_field_bytes: max,
            });
        }
        out.entries.push(entry);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::entry::{Caps, Format, Record};

    fn stderr(prefix: &str) -> Parser {
        Parser::Stderr(Prefix::compile(prefix).expect("prefix"))
    }

    #[test]
    fn stderr_joins_parts_and_continuations() {
        let log = "2024-05-01 10:00:00.001 UTC [10] ERROR:  division by zero\n\
                   2024-05-01 10:00:00.001 UTC [10] STATEMENT:  SELECT 1/0\n\
                   \tFROM t\n\
                   2024-05-01 10:00:01.000 UTC [11] LOG:  duration: 0.5 ms  plan:\n\
                   \tQuery Text: SELECT 1\n\
                   \tResult  (cost=0.00..0.01 rows=1 width=4)\n\
                   2024-05-01 10:00:02.000 UTC [12] LOG:  checkpoint starting: time\n";
        let p = stderr("%m [%p] ");
        let open = p.parse(log.as_bytes(), false, 1000);
        assert_eq!(open.entries.len(), 2, "the last entry may still grow");
        let last_start = log.find("2024-05-01 10:00:02").expect("in log");
        assert_eq!(open.consumed, last_start);
        let all = p.parse(log.as_bytes(), true, 1000);
        assert_eq!(all.consumed, log.len());
        assert_eq!(all.unparsed_lines, 0);
        let e = &all.entries;
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].message, "division by zero");
        assert_eq!(e[0].statement, "SELECT 1/0\nFROM t");
        assert_eq!(e[0].pid, Some(10));
        assert_eq!(
            e[1].message,
            "duration: 0.5 ms  plan:\nQuery Text: SELECT 1\nResult  (cost=0.00..0.01 rows=1 width=4)"
        );
        assert_eq!(e[2].severity, "LOG");
    }

    #[test]
    fn stderr_keeps_a_partial_last_line_and_counts_garbage() {
        let p = stderr("%m [%p] %e ");
        let log = "junk\n2024-05-01 10:00:00.001 UTC [10] 22012 ERROR:  division by zero\n\
                   2024-05-01 10:00:00.001 UTC [10] 00000 LOG:  half";
        // The ERROR could still get a continuation: it waits for the next line.
        let r = p.parse(log.as_bytes(), true, 1000);
        assert_eq!(r.unparsed_lines, 1);
        assert!(r.entries.is_empty());
        assert_eq!(r.consumed, "junk\n".len());
        let done = format!("{}\n", &log["junk\n".len()..]);
        let r = p.parse(done.as_bytes(), true, 1000);
        assert_eq!(r.entries.len(), 2);
        assert_eq!(r.entries[0].sqlstate, "22012");
        assert_eq!(r.entries[1].message, "half");
        assert_eq!(r.consumed, done.len());
    }

    #[test]
    fn stderr_cuts_long_lines() {
        let p = stderr("");
        let log = format!("LOG:  {}\n", "x".repeat(100));
        let r = p.parse(log.as_bytes(), true, 20);
        assert_eq!(r.truncated_lines, 1);
        assert_eq!(r.entries[0].message, "x".repeat(14));
    }

    const CSV: &str = "2024-05-01 10:00:00.001 UTC,\"alice\",\"app\",4242,\"127.0.0.1:5000\",\
        6632b1a0.1092,3,\"SELECT\",2024-05-01 09:59:00 UTC,3/7,0,ERROR,22012,\
        \"division by zero\",,,,,,\"SELECT 1/0,\n \"\"x\"\"\",,,\"psql\",\"client backend\",,-5\n";

    #[test]
    fn csvlog_with_quoted_newlines() {
        let r = Parser::Csv.parse(CSV.as_bytes(), true, 1000);
        assert_eq!(r.unparsed_lines, 0);
        assert_eq!(r.consumed, CSV.len());
        let e = &r.entries[0];
        assert_eq!(e.user_name, "alice");
        assert_eq!(e.database, "app");
        assert_eq!(e.pid, Some(4242));
        assert_eq!(e.severity, "ERROR");
        assert_eq!(e.sqlstate, "22012");
        assert_eq!(e.message, "division by zero");
        assert_eq!(e.statement, "SELECT 1/0,\n \"x\"");
        assert_eq!(e.application, "psql");
        assert_eq!(e.query_id, Some(-5));
        // Cut inside the quoted newline: nothing is complete yet.
        let cut = CSV.find("\n \"\"x").expect("newline") + 1;
        let r = Parser::Csv.parse(&CSV.as_bytes()[..cut], true, 1000);
        assert!(r.entries.is_empty());
        assert_eq!(r.consumed, 0);
    }

    #[test]
    fn csvlog_unbalanced_quote_does_not_swallow_the_next_record() {
        let input = format!("garbage \"open quote\n{CSV}");
        let r = Parser::Csv.parse(input.as_bytes(), true, 1000);
        assert_eq!(r.unparsed_lines, 1);
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.consumed, input.len());
    }

    #[test]
    fn csvlog_nul_invalid_utf8_and_crlf() {
        let mut bytes = CSV
            .replace("division by zero", "bad \0 byte \u{1}")
            .into_bytes();
        let at = CSV.find("alice").expect("user");
        bytes[at] = 0xff;
        let crlf = [&bytes[..bytes.len() - 1], b"\r\n"].concat();
        for input in [&bytes, &crlf] {
            let r = Parser::Csv.parse(input, true, 1000);
            assert_eq!((r.entries.len(), r.unparsed_lines), (1, 0));
            assert_eq!(r.consumed, input.len());
            let e = &r.entries[0];
            assert_eq!(e.user_name, "\u{fffd}lice");
            assert_eq!(e.message, "bad \u{fffd} byte \u{1}");
            assert_eq!(
                e.query_id,
                Some(-5),
                "the \\r is not part of the last field"
            );
        }
    }

    #[test]
    fn csvlog_growing_file_consumes_whole_records_only() {
        let two = format!("{CSV}\n{}", CSV.replace("alice", "bob"));
        let bytes = two.as_bytes();
        let first_end = CSV.len();
        for cut in 0..=bytes.len() {
            let r = Parser::Csv.parse(&bytes[..cut], false, 1000);
            let (want_entries, want_consumed, want_unparsed) = if cut == bytes.len() {
                (2, cut, 1)
            } else if cut > first_end {
                (1, first_end + 1, 1)
            } else if cut == first_end {
                (1, first_end, 0)
            } else {
                (0, 0, 0)
            };
            assert_eq!(r.entries.len(), want_entries, "cut at {cut}");
            assert_eq!(r.consumed, want_consumed, "cut at {cut}");
            assert_eq!(
                r.unparsed_lines, want_unparsed,
                "cut at {cut}: the empty line"
            );
        }
    }

    #[test]
    fn jsonlog_lines() {
        let input = "{\"timestamp\":\"2024-05-01 10:00:00.001 UTC\",\"user\":\"bob\",\"dbname\":\"db\",\
            \"pid\":99,\"error_severity\":\"ERROR\",\"state_code\":\"22012\",\
            \"message\":\"division by zero\",\"statement\":\"SELECT 1/0\",\
            \"application_name\":\"psql\",\"query_id\":123}\nnot json\n{\"a\":1}\n{\"partial\":";
        let r = Parser::Json.parse(input.as_bytes(), true, 1000);
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.unparsed_lines, 2);
        assert_eq!(r.consumed, input.find("{\"partial").expect("x"));
        let e = &r.entries[0];
        assert_eq!((e.pid, e.query_id), (Some(99), Some(123)));
        assert_eq!(
            (e.sqlstate.as_str(), e.statement.as_str()),
            ("22012", "SELECT 1/0")
        );
        assert!(e.time_unix_micros.is_some());
    }

    /// A PostgreSQL 15 csvlog record of auto_explain output (`message` is
    /// column 14, `query_id` the last), as the server writes it.
    fn csv_plan(message: &str, query_id: i64) -> String {
        format!(
            "2024-05-01 10:00:00.001 UTC,\"alice\",\"app\",4242,\"[local]\",6632b1a0.1092,3,\"SELECT\",\
             2024-05-01 09:59:00 UTC,3/7,0,LOG,00000,\"{}\",,,,,,,,,\"psql\",\"client backend\",,{query_id}\n",
            message.replace('"', "\"\"")
        )
    }

    /// A PostgreSQL 15 jsonlog line of auto_explain output.
    fn json_plan(message: &str, query_id: i64) -> String {
        let line = serde_json::json!({
            "timestamp": "2024-05-01 10:00:00.001 UTC", "user": "bob", "dbname": "shop",
            "pid": 99, "backend_type": "client backend", "error_severity": "LOG",
            "state_code": "00000", "message": message, "application_name": "psql",
            "query_id": query_id,
        });
        format!("{line}\n")
    }

    fn only_plan(parser: &Parser, input: &str, max_line_bytes: usize) -> lasect_proto::v1::LogPlan {
        let r = parser.parse(input.as_bytes(), true, max_line_bytes);
        assert_eq!((r.entries.len(), r.unparsed_lines), (1, 0), "{input}");
        let mut entry = r.entries.into_iter().next().expect("one entry");
        entry.apply_caps(Caps {
            max_field_bytes: max_line_bytes * 8,
        });
        match entry.classify(Format::Csv, true) {
            Record::Plan(p) => p,
            Record::Event(e) => panic!("not a plan: {e:?}"),
        }
    }

    const TEXT_PLAN: &str = "duration: 12.345 ms  plan:\n\
        Query Text: SELECT * FROM orders WHERE customer_id = 4211 AND note = 'call me'\n\
        Index Scan using orders_customer on orders  (cost=0.29..8.31 rows=1 width=44)\n\
        \x20 Index Cond: (customer_id = 4211)\n\
        \x20 Filter: (note = 'call me'::text)";

    #[test]
    fn csvlog_text_plan_is_redacted_and_linked_by_query_id() {
        let p = only_plan(&Parser::Csv, &csv_plan(TEXT_PLAN, -8_123_456_789), 1000);
        assert_eq!(p.query_id, Some(-8_123_456_789));
        assert_eq!(p.duration_ms, Some(12.345));
        assert_eq!(
            (p.database.as_str(), p.user_name.as_str()),
            ("app", "alice")
        );
        assert_eq!(
            p.query_text,
            "SELECT * FROM orders WHERE customer_id = ? AND note = ?"
        );
        assert_eq!(
            p.plan,
            "Index Scan using orders_customer on orders  (cost=0.29..8.31 rows=1 width=44)\n\
             \x20 Index Cond: (customer_id = ?)\n  Filter: (note = ?::text)"
        );
        assert_eq!(p.truncated, Some(false));
    }

    /// auto_explain.log_format = json, log_verbose: the plan's own query id
    /// wins over the log line's (a nested statement's line carries the
    /// top-level one).
    #[test]
    fn jsonlog_json_plan_stays_json_with_its_own_query_id() {
        let plan = serde_json::json!({
            "Query Text": "SELECT count(*) FROM orders WHERE placed_at > '2026-01-01'",
            "Query Identifier": 77,
            "Plan": {"Node Type": "Aggregate", "Total Cost": 41.5, "Plans": [
                {"Node Type": "Seq Scan", "Relation Name": "orders",
                 "Filter": "(placed_at > '2026-01-01'::date)", "Output": ["id", "(id + 5)"]}
            ]}
        });
        let message = format!(
            "duration: 3.5 ms  plan:\n{}",
            serde_json::to_string_pretty(&plan).expect("json")
        );
        for (parser, input) in [
            (Parser::Json, json_plan(&message, 5)),
            (Parser::Csv, csv_plan(&message, 5)),
        ] {
            let p = only_plan(&parser, &input, 1000);
            assert_eq!(p.query_id, Some(77), "{parser:?}");
            assert_eq!(
                p.query_text,
                "SELECT count(*) FROM orders WHERE placed_at > ?"
            );
            let v: serde_json::Value = serde_json::from_str(&p.plan).expect("a JSON plan");
            let scan = &v["Plan"]["Plans"][0];
            assert_eq!(scan["Relation Name"], "orders");
            assert_eq!(scan["Filter"], "(placed_at > ?::date)");
            assert_eq!(scan["Output"], serde_json::json!(["id", "(id + ?)"]));
            assert_eq!(v["Plan"]["Total Cost"], 41.5);
            assert_eq!(p.truncated, Some(false));
        }
        // Without its own id, the log line's.
        let message = message.replace("\"Query Identifier\": 77,", "");
        let p = only_plan(&Parser::Json, &json_plan(&message, 5), 1000);
        assert_eq!(p.query_id, Some(5));
    }

    /// A plan longer than the line cap is read whole (not cut at
    /// `max_line_bytes` like other messages), redacted, then cut to
    /// MAX_PLAN_BYTES and marked; its query text survives the cut.
    #[test]
    fn huge_plans_are_capped_after_redaction_and_marked() {
        use crate::logs::entry::MAX_PLAN_BYTES;
        let items: Vec<String> = (0..40_000).map(|i| format!("(t.c{i} + 123456)")).collect();
        let plan = serde_json::json!({
            "Query Text": "SELECT 'secret' FROM t",
            "Plan": {"Node Type": "Seq Scan", "Output": items}
        });
        let message = format!(
            "duration: 1 ms  plan:\n{}",
            serde_json::to_string_pretty(&plan).expect("json")
        );
        assert!(message.len() > 2 * MAX_PLAN_BYTES);
        for (parser, input) in [
            (Parser::Json, json_plan(&message, 9)),
            (Parser::Csv, csv_plan(&message, 9)),
        ] {
            let p = only_plan(&parser, &input, 8192);
            assert_eq!(p.truncated, Some(true), "{parser:?}");
            assert!(p.plan.len() <= MAX_PLAN_BYTES && p.plan.len() > MAX_PLAN_BYTES - 8);
            assert!(!p.plan.contains("123456"), "redacted before the cut");
            assert!(p.plan.contains("\"Output\": ["), "{}", &p.plan[..200]);
            assert_eq!(p.query_text, "SELECT ? FROM t");
            assert_eq!(p.query_id, Some(9));
        }
        // A normal message of the same size is still cut at the line cap.
        let long = json_plan(&format!("checkpoint {}", "x".repeat(20_000)), 0);
        let r = Parser::Json.parse(long.as_bytes(), true, 8192);
        assert_eq!(r.truncated_lines, 1);
        assert!(r.entries[0].message.len() <= 8192);
    }

    /// stderr: a plan line over the line cap is cut there; the plan says so.
    #[test]
    fn stderr_plan_with_a_cut_line_is_marked_truncated() {
        let log = format!(
            "2024-05-01 10:00:01.000 UTC [11] LOG:  duration: 0.5 ms  plan:\n\
             \tQuery Text: SELECT 1\n\
             \tResult  (cost=0.00..0.01 rows=1 width=4)\n\
             \t  Output: {}\n",
            "1 + ".repeat(100)
        );
        let p = only_plan(&stderr("%m [%p] "), &log, 256);
        assert_eq!(p.truncated, Some(true));
        assert!(
            p.plan
                .starts_with("Result  (cost=0.00..0.01 rows=1 width=4)\n  Output: ? + ?")
        );
        let whole = only_plan(&stderr("%m [%p] "), &log, 1000);
        assert_eq!(whole.truncated, Some(false));
    }

    /// A JSON plan that does not parse (cut by the server, or not JSON at
    /// all) is kept as text, redacted string by string, never a panic.
    #[test]
    fn malformed_json_plan_is_kept_as_redacted_text() {
        let message = "duration: 2 ms  plan:\n{\n  \"Query Text\": \"SELECT * FROM t WHERE a = 'k1'\",\n  \"Plan\": {\n    \"Node Type\": \"Seq Scan\",\n    \"Filter\": \"(a = 'k1";
        let p = only_plan(&Parser::Json, &json_plan(message, 3), 1000);
        assert!(serde_json::from_str::<serde_json::Value>(&p.plan).is_err());
        assert!(!p.plan.contains("k1"), "{}", p.plan);
        assert!(p.plan.contains("\"Node Type\": \"Seq Scan\""), "{}", p.plan);
        assert_eq!(p.query_text, "SELECT * FROM t WHERE a = ?");
        assert_eq!(p.query_id, Some(3));
        let odd = "duration: 2 ms  plan:\n{ \"\u{0}\\ ]]]] }}}}";
        let p = only_plan(&Parser::Json, &json_plan(odd, 0), 1000);
        assert_eq!(p.query_id, None);
    }

    /// auto_explain.log_format = yaml or xml: not parsed, but kept as text and
    /// redacted line by line, so no constant of the query survives.
    #[test]
    fn yaml_and_xml_plans_leak_no_constant() {
        for body in [
            "Query Text: \"SELECT * FROM t WHERE a = 4242 AND b = 'hush'\"\n\
             Plan: \n  Node Type: \"Seq Scan\"\n  Relation Name: \"t\"\n\
             \x20 Filter: \"((a = 4242) AND (b = 'hush'::text))\"",
            "<explain xmlns=\"http://www.postgresql.org/2009/explain\">\n  <Query>\n\
             \x20   <Query-Text>SELECT * FROM t WHERE a = 4242 AND b = 'hush'</Query-Text>\n\
             \x20   <Plan>\n      <Node-Type>Seq Scan</Node-Type>\n\
             \x20     <Filter>((a = 4242) AND (b = 'hush'::text))</Filter>\n\
             \x20   </Plan>\n  </Query>\n</explain>",
        ] {
            let message = format!("duration: 1.5 ms  plan:\n{body}");
            let p = only_plan(&Parser::Json, &json_plan(&message, 11), 1000);
            let all = format!("{}\n{}", p.query_text, p.plan);
            assert!(!all.contains("4242") && !all.contains("hush"), "{all}");
            assert!(p.plan.contains("Seq Scan"), "{}", p.plan);
            assert_eq!(p.query_id, Some(11));
            if body.starts_with("Query Text") {
                assert_eq!(p.query_text, "SELECT * FROM t WHERE a = ? AND b = ?");
                assert!(
                    p.plan.contains("Filter: \"((a = ?) AND (b = ?::text))\""),
                    "{}",
                    p.plan
                );
            }
        }
    }

    proptest::proptest! {
        /// Garbage, truncated and binary input never panics, and what is
        /// consumed never exceeds the input.
        #[test]
        fn any_bytes_are_safe(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            flush in proptest::prelude::any::<bool>(),
            cut in 0usize..700,
        ) {
            let csv = CSV.as_bytes();
            let mixes: [Vec<u8>; 3] = [
                bytes.clone(),
                [&bytes[..], csv].concat(),
                [&csv[..cut.min(csv.len())], &bytes[..]].concat(),
            ];
            for input in &mixes {
                for parser in [stderr("%m [%p] %q%u@%d "), Parser::Csv, Parser::Json] {
                    let r = parser.parse(input, flush, 64);
                    proptest::prop_assert!(r.consumed <= input.len());
                    for mut entry in r.entries {
                        entry.apply_caps(Caps { max_field_bytes: 64 });
                        let event = match entry.classify(Format::Csv, true) {
                            Record::Event(e) => e,
                            Record::Plan(_) => continue,
                        };
                        // What ingest requires of every event.
                        proptest::prop_assert!(!event.severity.is_empty());
                        proptest::prop_assert!(event.sqlstate.is_empty() || event.sqlstate.len() == 5);
                        proptest::prop_assert!(event.pid.is_none_or(|p| p > 0));
                        proptest::prop_assert!(event.duration_ms.is_none_or(f64::is_finite));
                        proptest::prop_assert!(!event.message.contains('\0'));
                    }
                }
            }
        }
    }
}
