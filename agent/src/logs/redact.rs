//! Literal redaction of SQL text found in the server log.
//!
//! String constants (`'…'`, `E'…'`, `B'…'`, `X'…'`, `$tag$…$tag$`) and
//! numeric constants become `?`. Identifiers (also quoted ones and those
//! containing digits, like `t1`), parameters (`$1`), keywords, operators and
//! comments are kept, so the statement's shape survives. An unterminated
//! string swallows the rest of the text (it is redacted too: a cut-off log
//! line must not leak the start of a literal).

/// `sql` with its string and numeric literals replaced by `?`.
pub fn redact_sql(sql: &str) -> String {
    redact(sql, true)
}

/// Only the string literals of `text` replaced (for plans, whose numbers are
/// mostly costs and row counts, not data).
pub fn redact_strings(text: &str) -> String {
    redact(text, false)
}

/// Labels of text-plan lines that hold only the executor's own figures and
/// names (timings, counters, memory, methods), never a constant of the
/// query: kept with their numbers. Every other `Label: value` line
/// (`Filter`, `Index Cond`, `Output`, `Query Parameters`, …) is redacted like
/// SQL, so a label PostgreSQL adds later is redacted until it is listed here.
const PLAN_FIGURES: &[&str] = &[
    "Planning Time",
    "Execution Time",
    "Planning",
    "Buffers",
    "I/O Timings",
    "WAL",
    "Rows Removed by Filter",
    "Rows Removed by Join Filter",
    "Rows Removed by Index Recheck",
    "Heap Fetches",
    "Heap Blocks",
    "Index Searches",
    "Sort Method",
    "Sort Space",
    "Full-sort Groups",
    "Pre-sorted Groups",
    "Buckets",
    "Batches",
    "Memory Usage",
    "Peak Memory Usage",
    "Memory",
    "Disk Usage",
    "Storage",
    "Hits",
    "Workers Planned",
    "Workers Launched",
    "Planned Partitions",
    "Subplans Removed",
    "Tuples Inserted",
    "Conflicting Tuples",
    "Conflict Resolution",
    "Cache Mode",
    "JIT",
    "Functions",
    "Options",
    "Timing",
    "Settings",
    "Query Identifier",
];

/// One line of a text plan (`auto_explain.log_format = text`) redacted:
/// node lines (`->  Seq Scan on t  (cost=…)`, `InitPlan 1`) and lines of
/// [`PLAN_FIGURES`] keep their numbers (they are estimates, timings and
/// counters) and lose only string literals; every other line is a condition,
/// an output list or parameters and loses its string and numeric literals.
pub fn redact_plan_line(line: &str, first: bool) -> String {
    let body = line.trim_start();
    let node = first
        || body.starts_with("->")
        || body.contains("  (cost=")
        || body.contains("  (actual ")
        || body.ends_with("(never executed)")
        || body.starts_with("InitPlan ")
        || body.starts_with("SubPlan ")
        || body.starts_with("CTE ");
    let label = body.split_once(": ").map_or(body, |(label, _)| label);
    if label == "Settings" {
        // Planner settings changed from their defaults: configuration, not data.
        return line.to_owned();
    }
    let figures = PLAN_FIGURES.contains(&label)
        || label.starts_with("Worker ")
        || label.starts_with("Trigger ")
        || label
            .strip_suffix(':')
            .is_some_and(|l| PLAN_FIGURES.contains(&l));
    if node || figures {
        redact_strings(line)
    } else {
        redact_sql(line)
    }
}

/// Keys of a JSON plan whose string values are names or methods, kept as
/// they are; every other string value (`Filter`, `Output` items, `Query
/// Text`, `Query Parameters`, …) is redacted like SQL. Numbers, booleans and
/// keys are kept: a JSON plan's numbers are estimates, timings and counters,
/// its constants live inside the strings.
const PLAN_NAMES: &[&str] = &[
    "Node Type",
    "Strategy",
    "Partial Mode",
    "Operation",
    "Parent Relationship",
    "Subplan Name",
    "Relation Name",
    "Schema",
    "Alias",
    "Index Name",
    "Scan Direction",
    "Join Type",
    "CTE Name",
    "Function Name",
    "Sort Method",
    "Sort Space Type",
    "Cache Mode",
    "Trigger Name",
    "Constraint Name",
    "Relation",
    "Conflict Resolution",
    "Storage",
];

/// A JSON plan (`auto_explain.log_format = json`) redacted token by token, so
/// that its layout and key order stay as PostgreSQL wrote them and a plan cut
/// short or otherwise malformed is redacted as safely as a whole one: a
/// string value is kept only under a key of [`PLAN_NAMES`] or inside
/// `Settings` (planner settings, not data); an unterminated string becomes
/// `"?"`.
pub fn redact_plan_json(text: &str) -> String {
    /// An open object or array and the key it is the value of.
    struct Frame {
        array: bool,
        key: Option<String>,
    }
    let mut out = String::with_capacity(text.len());
    let mut frames: Vec<Frame> = Vec::new();
    // The last key read in the innermost object.
    let mut key: Option<String> = None;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        match c {
            '"' => {
                let (token, after) = json_string(rest);
                let raw = &rest[..rest.len() - after.len()];
                let decoded = token.and_then(|t| serde_json::from_str::<String>(t).ok());
                let is_key =
                    after.trim_start().starts_with(':') && frames.last().is_some_and(|f| !f.array);
                match decoded {
                    Some(s) if is_key => {
                        out.push_str(raw);
                        key = Some(s);
                    }
                    Some(s) => {
                        // Items of an array are under the array's own key.
                        let under = match frames.last() {
                            Some(f) if f.array => f.key.as_deref(),
                            _ => key.as_deref(),
                        };
                        let in_settings =
                            frames.iter().any(|f| f.key.as_deref() == Some("Settings"));
                        if in_settings || under.is_some_and(|k| PLAN_NAMES.contains(&k)) {
                            out.push_str(raw);
                        } else {
                            let redacted = serde_json::to_string(&redact_sql(&s));
                            out.push_str(redacted.as_deref().unwrap_or("\"?\""));
                        }
                    }
                    None => out.push_str("\"?\""),
                }
                rest = after;
                continue;
            }
            '{' | '[' => frames.push(Frame {
                array: c == '[',
                key: key.take(),
            }),
            '}' | ']' => {
                frames.pop();
                key = None;
            }
            _ => {}
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The JSON string token at the start of `s` (from its opening quote to its
/// closing one, `None` when it is never closed) and the text after it.
pub fn json_string(s: &str) -> (Option<&str>, &str) {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return (Some(&s[..=i]), &s[i + 1..]),
            _ => {}
        }
    }
    (None, "")
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

fn redact(sql: &str, numbers: bool) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let prev_ident = out.chars().next_back().is_some_and(is_ident);
        match c {
            '\'' => {
                // E'…', B'…', X'…' and N'…': drop the one-letter prefix.
                let prefix = out.chars().next_back();
                let before = out.chars().rev().nth(1);
                let escapes = matches!(prefix, Some('e' | 'E'));
                if matches!(prefix, Some('e' | 'E' | 'b' | 'B' | 'x' | 'X' | 'n' | 'N'))
                    && !before.is_some_and(is_ident)
                {
                    out.pop();
                }
                i = skip_quoted(&chars, i + 1, escapes);
                out.push('?');
            }
            '"' => {
                let end = skip_identifier(&chars, i + 1);
                out.extend(&chars[i..end]);
                i = end;
            }
            '$' if !prev_ident => match dollar_tag(&chars, i) {
                Some(tag_len) => {
                    i = skip_dollar(&chars, i, tag_len);
                    out.push('?');
                }
                None => {
                    // `$1`: a parameter, kept with its digits.
                    out.push('$');
                    i += 1;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        out.push(chars[i]);
                        i += 1;
                    }
                }
            },
            '-' if chars.get(i + 1) == Some(&'-') => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(chars.len(), |p| i + p);
                out.extend(&chars[i..end]);
                i = end;
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                let end = find_seq(&chars, i + 2, &['*', '/']).map_or(chars.len(), |p| p + 2);
                out.extend(&chars[i..end]);
                i = end;
            }
            c if numbers
                && !prev_ident
                && (c.is_ascii_digit()
                    || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))) =>
            {
                i = skip_number(&chars, i);
                out.push('?');
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Index after the closing quote of a string starting at `i` (inside it).
fn skip_quoted(chars: &[char], mut i: usize, backslash_escapes: bool) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' if backslash_escapes => i += 2,
            '\'' if chars.get(i + 1) == Some(&'\'') => i += 2,
            '\'' => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

fn skip_identifier(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '"' if chars.get(i + 1) == Some(&'"') => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// Length of a `$tag$` opener at `i` (`$$` included), if there is one.
fn dollar_tag(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
        if j == i + 1 && chars[j].is_ascii_digit() {
            return None;
        }
        j += 1;
    }
    (chars.get(j) == Some(&'$')).then_some(j + 1 - i)
}

fn skip_dollar(chars: &[char], i: usize, tag_len: usize) -> usize {
    let tag = &chars[i..i + tag_len];
    find_seq(chars, i + tag_len, tag).map_or(chars.len(), |p| p + tag_len)
}

fn find_seq(chars: &[char], from: usize, needle: &[char]) -> Option<usize> {
    if from > chars.len() {
        return None;
    }
    chars[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

fn skip_number(chars: &[char], mut i: usize) -> usize {
    // Hex, octal and binary literals (PostgreSQL 16+) and plain decimals.
    if chars[i] == '0' && chars.get(i + 1).is_some_and(|c| "xXoObB".contains(*c)) {
        i += 2;
        while i < chars.len() && (chars[i].is_ascii_hexdigit() || chars[i] == '_') {
            i += 1;
        }
        return i;
    }
    while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == '_') {
        i += 1;
    }
    if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
        let sign = usize::from(chars.get(i + 1).is_some_and(|c| *c == '+' || *c == '-'));
        if chars.get(i + 1 + sign).is_some_and(char::is_ascii_digit) {
            i += 1 + sign;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_numbers_become_placeholders() {
        assert_eq!(
            redact_sql("SELECT * FROM t1 WHERE name = 'O''Brien' AND id = 42 AND x > 1.5e-3"),
            "SELECT * FROM t1 WHERE name = ? AND id = ? AND x > ?"
        );
        assert_eq!(redact_sql("SELECT 1/0"), "SELECT ?/?");
        assert_eq!(
            redact_sql("SELECT E'a\\'b', X'ff', $$x'y$$, $f$z$f$, .5"),
            "SELECT ?, ?, ?, ?, ?"
        );
    }

    #[test]
    fn identifiers_parameters_and_comments_are_kept() {
        assert_eq!(
            redact_sql("SELECT \"col 1\", t2.c3 FROM s1.t2 WHERE a = $1 -- 'note' 5"),
            "SELECT \"col 1\", t2.c3 FROM s1.t2 WHERE a = $1 -- 'note' 5"
        );
        assert_eq!(redact_sql("/* 'c' 7 */ SELECT 7"), "/* 'c' 7 */ SELECT ?");
        assert_eq!(redact_sql("SELECT e FROM x"), "SELECT e FROM x");
    }

    #[test]
    fn unterminated_strings_are_redacted_to_the_end() {
        assert_eq!(redact_sql("SELECT 'secret sta"), "SELECT ?");
        assert_eq!(redact_sql("SELECT $$secret"), "SELECT ?");
        assert_eq!(redact_sql("SELECT \"ident"), "SELECT \"ident");
    }

    #[test]
    fn plans_keep_numbers() {
        assert_eq!(
            redact_strings("Filter: (name = 'bob'::text)  (cost=0.00..1.01 rows=1)"),
            "Filter: (name = ?::text)  (cost=0.00..1.01 rows=1)"
        );
    }

    #[test]
    fn text_plans_keep_figures_and_lose_constants() {
        let plan = [
            "Index Scan using accounts_pkey on accounts  (cost=0.29..8.30 rows=1 width=97) (actual time=0.010..0.011 rows=1 loops=1)",
            "  Index Cond: (id = 4211)",
            "  Filter: ((owner = 'alice'::text) AND (balance > 1000.5))",
            "  Rows Removed by Filter: 3",
            "  Buffers: shared hit=4",
            "  ->  Seq Scan on t2  (cost=0.00..1.05 rows=5 width=4)",
            "        Output: t2.a, (t2.b + 17)",
            "Query Parameters: $1 = '4211', $2 = 'alice'",
            "Settings: work_mem = '64MB'",
            "Worker 0:  actual time=0.1..0.2 rows=7 loops=1",
            "InitPlan 1 (returns $0)",
            "Planning Time: 0.120 ms",
        ];
        let redacted: Vec<String> = plan
            .iter()
            .enumerate()
            .map(|(i, l)| redact_plan_line(l, i == 0))
            .collect();
        assert_eq!(
            redacted,
            [
                plan[0].to_owned(),
                "  Index Cond: (id = ?)".into(),
                "  Filter: ((owner = ?::text) AND (balance > ?))".into(),
                plan[3].into(),
                plan[4].into(),
                plan[5].into(),
                "        Output: t2.a, (t2.b + ?)".into(),
                "Query Parameters: $1 = ?, $2 = ?".into(),
                plan[8].into(),
                plan[9].into(),
                plan[10].into(),
                plan[11].into(),
            ]
        );
    }

    #[test]
    fn json_plans_keep_names_and_figures_and_lose_constants() {
        let plan = r#"{
  "Query Text": "SELECT * FROM accounts WHERE id = 4211 AND owner = 'alice'",
  "Query Parameters": "$1 = '7'",
  "Plan": {
    "Node Type": "Index Scan",
    "Relation Name": "accounts",
    "Index Name": "accounts_pkey",
    "Alias": "a",
    "Total Cost": 8.3,
    "Plan Rows": 1,
    "Index Cond": "(id = 4211)",
    "Filter": "(owner = 'alice'::text)",
    "Output": ["a.id", "(a.balance * 2)"],
    "Plans": [{"Node Type": "Seq Scan", "Filter": "(x = 'it\"s')"}]
  },
  "Settings": {"work_mem": "64MB"}
}"#;
        let redacted = redact_plan_json(plan);
        let v: serde_json::Value = serde_json::from_str(&redacted).expect(&redacted);
        assert_eq!(
            v["Query Text"],
            "SELECT * FROM accounts WHERE id = ? AND owner = ?"
        );
        assert_eq!(v["Query Parameters"], "$1 = ?");
        let p = &v["Plan"];
        assert_eq!(p["Node Type"], "Index Scan");
        assert_eq!(p["Relation Name"], "accounts");
        assert_eq!(p["Index Name"], "accounts_pkey");
        assert_eq!(p["Total Cost"], 8.3);
        assert_eq!(p["Index Cond"], "(id = ?)");
        assert_eq!(p["Filter"], "(owner = ?::text)");
        assert_eq!(p["Output"], serde_json::json!(["a.id", "(a.balance * ?)"]));
        assert_eq!(p["Plans"][0]["Node Type"], "Seq Scan");
        assert_eq!(p["Plans"][0]["Filter"], "(x = ?)");
        assert_eq!(v["Settings"]["work_mem"], "64MB");
        // Layout and key order as written.
        assert!(redacted.starts_with("{\n  \"Query Text\": "), "{redacted}");
        // Cut in the middle of a string: the open string becomes "?".
        let cut = &plan[..plan.find("alice'::text").expect("filter")];
        let redacted = redact_plan_json(cut);
        assert!(
            !redacted.contains("alice") && !redacted.contains("4211"),
            "{redacted}"
        );
        assert!(redacted.ends_with("\"Filter\": \"?\""), "{redacted}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_never_keeps_a_closed_string(s in "\\PC*", lit in "[a-z]{1,12}") {
            let _ = redact_sql(&s);
            let _ = redact_strings(&s);
            let _ = redact_plan_json(&s);
            let _ = redact_plan_line(&s, false);
            let sql = format!("SELECT '{lit}zz' FROM t");
            let redacted = redact_sql(&sql);
            let needle = format!("{lit}zz");
            proptest::prop_assert!(!redacted.contains(&needle));
        }
    }
}
