//! Tables of JSON rows: a column is a header and the key of a field, rendered as plain text
//! (null as `-`, arrays and objects compactly).

use serde_json::Value;

use crate::instance_table::new_table;
use crate::printable::escape;

/// Renders `rows` (JSON objects) with `columns` of (header, key).
pub fn render(rows: &[Value], columns: &[(&str, &str)]) -> String {
    if rows.is_empty() {
        return "nothing to show\n".to_owned();
    }
    let mut table = new_table();
    table.set_header(columns.iter().map(|(h, _)| *h));
    for row in rows {
        table.add_row(columns.iter().map(|(_, key)| cell(&row[*key])));
    }
    format!("{table}\n")
}

/// One object as a two-column key/value table.
pub fn render_one(row: &Value, columns: &[(&str, &str)]) -> String {
    let mut table = new_table();
    for (header, key) in columns {
        table.add_row([header.to_string(), cell(&row[*key])]);
    }
    format!("{table}\n")
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => escape(s).into_owned(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        Value::Object(map) if map.contains_key("key") && map.contains_key("role") => format!(
            "{}={}:{}",
            cell(&map["key"]),
            cell(&map["value"]),
            cell(&map["role"])
        ),
        other => escape(&other.to_string()).into_owned(),
    }
}

/// `30s`, `15m`, `12h`, `30d` (or plain seconds) as seconds; the API bounds them.
pub fn parse_duration_secs(text: &str) -> Option<u64> {
    lasect_duration::parse(text, &lasect_duration::SECONDS)
        .ok()
        .map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_and_cells() {
        assert_eq!(parse_duration_secs("90s"), Some(90));
        assert_eq!(parse_duration_secs("1h"), Some(3600));
        assert_eq!(parse_duration_secs("30d"), Some(2_592_000));
        assert_eq!(parse_duration_secs("1x"), None);
        assert_eq!(parse_duration_secs(""), None);
        let text = render(
            &[json!({"a": null, "b": [{"key": "env", "value": "prod", "role": "viewer"}]})],
            &[("A", "a"), ("B", "b")],
        );
        assert!(
            text.contains("env=prod:viewer") && text.contains('-'),
            "{text}"
        );
    }

    #[test]
    fn cells_escape_terminal_controls() {
        let row = json!({"a": "x\x1b]0;pwned\x07", "b": [{"key": "k", "value": "\x1b[2J", "role": "user"}],
                         "c": {"n": "\u{202e}"}});
        let text = render(
            std::slice::from_ref(&row),
            &[("A", "a"), ("B", "b"), ("C", "c")],
        ) + &render_one(&row, &[("A", "a")]);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n') && !text.contains('\u{202e}'),
            "{text:?}"
        );
        assert!(
            text.contains("x\\x1b]0;pwned\\x07") && text.contains("k=\\x1b[2J:user"),
            "{text}"
        );
    }
}
