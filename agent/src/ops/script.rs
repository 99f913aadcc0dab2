//! Reading a SQL script the way the server will: statements split at
//! top-level semicolons, with quotes, quoted identifiers, comments (nested
//! block comments included) and dollar-quoted bodies skipped, so a keyword
//! inside a string or a function body is never mistaken for a statement.

/// One statement: its offset (in chars) in the script and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub offset: usize,
    pub text: String,
}

impl Statement {
    /// The statement's first words, upper-cased, comments removed.
    pub fn leading_words(&self, n: usize) -> Vec<String> {
        strip_comments(&self.text)
            .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
            .filter(|w| !w.is_empty())
            .take(n)
            .map(str::to_ascii_uppercase)
            .collect()
    }
}

fn strip_comments(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
            i = skip_block_comment(&chars, i);
            out.push(' ');
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn skip_block_comment(chars: &[char], start: usize) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
            depth += 1;
            i += 2;
        } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// `$tag$` starting at `i`, if there is one.
fn dollar_tag(chars: &[char], i: usize) -> Option<String> {
    if chars.get(i) != Some(&'$') {
        return None;
    }
    let mut j = i + 1;
    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    if chars.get(j) == Some(&'$') {
        // A tag cannot start with a digit ($1 is a parameter).
        if chars.get(i + 1).is_some_and(char::is_ascii_digit) {
            return None;
        }
        Some(chars[i..=j].iter().collect())
    } else {
        None
    }
}

/// Splits a script into its top-level statements (empty ones dropped).
pub fn split(script: &str) -> Vec<Statement> {
    let chars: Vec<char> = script.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let push = |out: &mut Vec<Statement>, from: usize, to: usize| {
        let text: String = chars[from..to].iter().collect();
        if !strip_comments(&text).trim().is_empty() {
            out.push(Statement { offset: from, text });
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' => {
                i += 1;
                while i < chars.len() {
                    if chars[i] == c {
                        if chars.get(i + 1) == Some(&c) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => i = skip_block_comment(&chars, i),
            '$' => match dollar_tag(&chars, i) {
                Some(tag) => {
                    let tag: Vec<char> = tag.chars().collect();
                    i += tag.len();
                    while i < chars.len() && !chars[i..].starts_with(&tag) {
                        i += 1;
                    }
                    i += tag.len();
                }
                None => i += 1,
            },
            ';' => {
                push(&mut out, start, i);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < chars.len() {
        push(&mut out, start, chars.len());
    }
    out
}

/// Why a script cannot run inside one transaction, if it cannot.
pub fn transaction_breaker(script: &str, statements: &[Statement]) -> Option<String> {
    for s in statements {
        let words = s.leading_words(4);
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let reason = match w.as_slice() {
            [
                "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT",
                ..,
            ] => "transaction control (the migration runs in one transaction of its own)",
            ["PREPARE", "TRANSACTION", ..] => "two-phase commit",
            ["VACUUM", ..] => "VACUUM cannot run inside a transaction",
            ["CREATE" | "DROP" | "REINDEX", ..] if w.contains(&"CONCURRENTLY") => {
                "CONCURRENTLY cannot run inside a transaction"
            }
            ["CREATE" | "DROP", "DATABASE", ..] | ["CREATE" | "DROP", "TABLESPACE", ..] => {
                "CREATE/DROP DATABASE or TABLESPACE cannot run inside a transaction"
            }
            ["ALTER", "SYSTEM", ..] => "ALTER SYSTEM cannot run inside a transaction",
            _ => continue,
        };
        let lead = s.text.chars().take_while(|c| c.is_whitespace()).count();
        return Some(format!(
            "statement at line {}: {reason}",
            line_of_char(script, s.offset + lead)
        ));
    }
    None
}

/// 1-based line of the char at `offset` (0-based) of `script`.
pub fn line_of_char(script: &str, offset: usize) -> usize {
    script.chars().take(offset).filter(|c| *c == '\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_inside_strings_comments_and_bodies_are_not_statements() {
        let script = "CREATE TABLE a (t text DEFAULT 'x; COMMIT');\n\
                      -- COMMIT;\n\
                      /* BEGIN; /* nested */ still comment; */\n\
                      CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $fn$ SELECT 1; $fn$;\n\
                      SELECT \"semi;colon\" FROM a";
        let s = split(script);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(transaction_breaker(script, &s), None);
    }

    #[test]
    fn escaping_statements_are_refused() {
        for bad in [
            "CREATE TABLE a (i int); COMMIT;",
            "begin; select 1",
            "CREATE INDEX CONCURRENTLY i ON a (i)",
            "VACUUM a",
            "ALTER SYSTEM SET work_mem = '1MB'",
        ] {
            assert!(transaction_breaker(bad, &split(bad)).is_some(), "{bad}");
        }
        assert!(transaction_breaker("SELECT $1::int", &split("SELECT $1::int")).is_none());
        let e = transaction_breaker("SELECT 1;\n\nCOMMIT;", &split("SELECT 1;\n\nCOMMIT;"));
        assert!(e.is_some_and(|e| e.starts_with("statement at line 3")));
    }

    #[test]
    fn lines_are_counted_in_chars() {
        assert_eq!(line_of_char("é\nb\nc", 4), 3);
        assert_eq!(line_of_char("abc", 0), 1);
    }
}
