//! Label matchers: `env=prod, tier!=batch`. Rule scopes use them over an instance's labels,
//! silences over an alert's labels. Only equality and inequality: what a DBA scopes by (an
//! environment, a cluster, a role) needs nothing more, and each matcher stays a bind parameter.

use std::collections::BTreeMap;

use serde::Serialize;

/// Longest selector accepted (characters).
pub const MAX_LEN: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Matcher {
    pub key: String,
    /// `=` or `!=`.
    pub op: &'static str,
    pub value: String,
}

impl Matcher {
    /// Whether `labels` satisfy this matcher; a missing label is the empty string, so
    /// `team!=db` holds for an instance without `team`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let have = labels.get(&self.key).map_or("", String::as_str);
        (have == self.value) == (self.op == "=")
    }
}

/// A selector that does not parse: where (a character position, from 1) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("position {position}: {message}")]
pub struct SelectorError {
    pub position: usize,
    pub message: String,
}

fn err(position: usize, message: impl Into<String>) -> SelectorError {
    SelectorError {
        position,
        message: message.into(),
    }
}

/// Parses `key=value, key!=value, …`. Keys are `[A-Za-z_][A-Za-z0-9_.-]*`; values are any
/// text without a comma (blank around it is trimmed), or double-quoted with `\"` and `\\`.
/// An empty selector matches everything.
pub fn parse(text: &str) -> Result<Vec<Matcher>, SelectorError> {
    if text.chars().count() > MAX_LEN {
        return Err(err(
            MAX_LEN + 1,
            format!("longer than {MAX_LEN} characters"),
        ));
    }
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_blank = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    skip_blank(&mut i);
    if i == chars.len() {
        return Ok(out);
    }
    loop {
        skip_blank(&mut i);
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '.' | '-'))
        {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        if key.is_empty() {
            return Err(err(start + 1, "expected a label name"));
        }
        if !(chars[start].is_ascii_alphabetic() || chars[start] == '_') {
            return Err(err(
                start + 1,
                format!("label name `{key}` must start with a letter or _"),
            ));
        }
        if key.len() > 100 {
            return Err(err(start + 1, "label name longer than 100 characters"));
        }
        skip_blank(&mut i);
        let op = if chars.get(i) == Some(&'=') {
            i += 1;
            "="
        } else if chars.get(i) == Some(&'!') && chars.get(i + 1) == Some(&'=') {
            i += 2;
            "!="
        } else {
            return Err(err(i + 1, format!("expected = or != after `{key}`")));
        };
        skip_blank(&mut i);
        let value = if chars.get(i) == Some(&'"') {
            let open = i;
            i += 1;
            let mut v = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(err(open + 1, "unclosed quote")),
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') if matches!(chars.get(i + 1), Some('"' | '\\')) => {
                        v.push(chars[i + 1]);
                        i += 2;
                    }
                    Some(c) => {
                        v.push(*c);
                        i += 1;
                    }
                }
            }
            v
        } else {
            let vstart = i;
            while i < chars.len() && chars[i] != ',' {
                if chars[i] == '"' || chars[i] == '=' || chars[i] == '!' {
                    return Err(err(
                        i + 1,
                        format!("unexpected `{}` in a value (quote the value)", chars[i]),
                    ));
                }
                i += 1;
            }
            chars[vstart..i]
                .iter()
                .collect::<String>()
                .trim()
                .to_owned()
        };
        if value.chars().any(char::is_control) {
            return Err(err(i, "control characters are not allowed in a value"));
        }
        out.push(Matcher { key, op, value });
        skip_blank(&mut i);
        match chars.get(i) {
            None => return Ok(out),
            Some(',') => i += 1,
            Some(c) => return Err(err(i + 1, format!("expected , or the end, found `{c}`"))),
        }
    }
}

/// The matchers as the JSON array the evaluation SQL binds (`[{"key","op","value"}]`).
pub fn to_json(matchers: &[Matcher]) -> serde_json::Value {
    serde_json::to_value(matchers).unwrap_or_else(|_| serde_json::Value::Array(Vec::new()))
}

/// Whether every matcher holds for `labels`.
pub fn matches_all(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_equality_and_inequality() {
        let m = parse(" env = prod, tier!=\"batch, nightly\" ,x=").expect("parses");
        assert_eq!(m.len(), 3);
        assert_eq!(
            (m[0].key.as_str(), m[0].op, m[0].value.as_str()),
            ("env", "=", "prod")
        );
        assert_eq!(m[1].op, "!=");
        assert_eq!(m[1].value, "batch, nightly");
        assert_eq!(m[2].value, "");
        assert!(parse("").expect("empty").is_empty());
    }

    #[test]
    fn errors_name_the_position() {
        assert_eq!(parse("env prod").expect_err("refused").position, 5);
        assert_eq!(parse("env=prod,").expect_err("refused").position, 10);
        assert_eq!(parse("1env=x").expect_err("refused").position, 1);
        assert_eq!(parse("a=\"x").expect_err("refused").position, 3);
        assert_eq!(parse("a=b c=d").expect_err("refused").position, 6);
    }

    #[test]
    fn matching_treats_missing_labels_as_empty() {
        let labels: BTreeMap<String, String> = [("env".to_owned(), "prod".to_owned())].into();
        assert!(matches_all(
            &parse("env=prod,team!=db").expect("p"),
            &labels
        ));
        assert!(!matches_all(&parse("env!=prod").expect("p"), &labels));
        assert!(matches_all(&parse("team=").expect("p"), &labels));
    }
}
