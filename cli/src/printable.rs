//! Text that came from a database or the API, made safe to print on a terminal.
//!
//! A table cell, a label or a server error is data, never terminal commands: a value holding
//! `ESC ] 0 ; … BEL` would retitle the window, `ESC [ 2 J` clear the screen, a CR or backspace
//! overwrite what was printed before it, and U+202E reverse the text after it. Every plain
//! renderer passes such text through [`escape`] (one value) or [`escape_lines`] (a whole
//! message whose own line breaks are layout). JSON output needs neither: serde escapes
//! control characters, and a JSON consumer is a program, not a terminal.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` with every control character written as an escape (`\n`, `\r`, `\t`, `\x1b`,
/// `\u{202e}`…), so that it prints as one visible line. Other text, backslashes included, is
/// unchanged (a backslash is not dangerous, and doubling it would garble paths and regexes).
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_with(s, false)
}

/// Like [`escape`], but `\n` stays a line break: for a message of several lines.
pub fn escape_lines(s: &str) -> Cow<'_, str> {
    escape_with(s, true)
}

/// The string in `v`, escaped, or `missing` when `v` is not a string.
pub fn str_or<'a>(v: &'a serde_json::Value, missing: &'a str) -> Cow<'a, str> {
    escape(v.as_str().unwrap_or(missing))
}

fn escape_with(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && !(keep_newlines && c == '\n');
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !unsafe_char(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) <= 0xFF => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// C0 controls, DEL, C1 controls, and the characters that reorder or break text: bidi
/// embeddings, overrides, isolates and marks, and the Unicode line and paragraph separators.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_become_visible() {
        assert_eq!(escape("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
        assert_eq!(escape("\x1b[2Jgone"), "\\x1b[2Jgone");
        assert_eq!(escape("ok\rfake\x08\x7f"), "ok\\rfake\\x08\\x7f");
        assert_eq!(escape("a\nb\tc\0"), "a\\nb\\tc\\x00");
        assert_eq!(escape("\u{9b}31m"), "\\x9b31m", "C1 CSI");
        assert_eq!(escape("abc\u{202e}gpj.exe"), "abc\\u{202e}gpj.exe");
        assert_eq!(
            escape("\u{2066}x\u{2069}\u{200f}"),
            "\\u{2066}x\\u{2069}\\u{200f}"
        );
    }

    #[test]
    fn ordinary_text_is_untouched() {
        for s in [
            "",
            "plain",
            "C:\\temp\\x1b",
            "émoji 🐘 日本語",
            "a = 'b' -- c",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(_)), "{s}");
            assert_eq!(escape(s), s);
        }
    }

    #[test]
    fn messages_keep_their_lines() {
        assert_eq!(
            escape_lines("run 1 failed: \x1b[2J\n  detail: x\ry"),
            "run 1 failed: \\x1b[2J\n  detail: x\\ry"
        );
    }
}
