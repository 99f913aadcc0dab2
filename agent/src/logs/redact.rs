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

    proptest::proptest! {
        #[test]
        fn never_panics_and_never_keeps_a_closed_string(s in "\\PC*", lit in "[a-z]{1,12}") {
            let _ = redact_sql(&s);
            let _ = redact_strings(&s);
            let sql = format!("SELECT '{lit}zz' FROM t");
            let redacted = redact_sql(&sql);
            let needle = format!("{lit}zz");
            proptest::prop_assert!(!redacted.contains(&needle));
        }
    }
}
