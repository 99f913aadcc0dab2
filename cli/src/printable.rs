//! Text that came from a database or the API, made safe to print on a terminal.
//!
//! A table cell, a label or a server error is data, never terminal commands: a value holding
//! `ESC ] 0 ; … BEL` would retitle the window, `ESC [ 2 J` clear the screen, a CR or backspace
//! overwrite what was printed before it, and U+202E reverse the text after it. Every plain
//! renderer passes such text through [`escape`] (one value) or [`escape_lines`] (a whole
//! message whose own line breaks are layout); an export or dump streamed to a terminal goes
//! through [`TerminalWriter`]. JSON output needs none of them: serde escapes control
//! characters, and a JSON consumer is a program, not a terminal.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

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

/// A byte stream (a CSV export, a dump) on its way to a terminal: written through
/// [`escape_lines`], with a UTF-8 sequence cut between two chunks kept until it is whole and
/// bytes that are not UTF-8 shown as `\xHH`. Only for a terminal: a file gets the bytes as
/// they are.
pub struct TerminalWriter<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> TerminalWriter<W> {
    pub fn new(inner: W) -> Self {
        TerminalWriter {
            inner,
            pending: Vec::new(),
        }
    }

    pub fn write_chunk(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.pending.extend_from_slice(chunk);
        let data = std::mem::take(&mut self.pending);
        let mut out = String::new();
        let mut chunks = data.utf8_chunks().peekable();
        while let Some(c) = chunks.next() {
            out.push_str(&escape_lines(c.valid()));
            let last = chunks.peek().is_none();
            let incomplete = std::str::from_utf8(c.invalid())
                .err()
                .is_some_and(|e| e.error_len().is_none());
            if last && incomplete {
                self.pending = c.invalid().to_vec();
            } else {
                for b in c.invalid() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            }
        }
        self.inner.write_all(out.as_bytes())
    }

    /// Writes what is left (a sequence the stream ended in the middle of) and flushes.
    pub fn finish(mut self) -> std::io::Result<()> {
        let mut out = String::new();
        for b in std::mem::take(&mut self.pending) {
            let _ = write!(out, "\\x{b:02x}");
        }
        self.inner.write_all(out.as_bytes())?;
        self.inner.flush()
    }
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
    fn streams_to_a_terminal_are_escaped_across_chunks() {
        let mut shown = Vec::new();
        let mut w = TerminalWriter::new(&mut shown);
        // "é" (c3 a9) and U+202E (e2 80 ae) cut between chunks; ESC and CR in the data.
        for chunk in [
            &b"id,v\n1,caf\xc3"[..],
            b"\xa9\x1b]0;pwned\x07\r\n2,\xe2\x80",
            b"\xaex\xff\n3,\xe2",
        ] {
            w.write_chunk(chunk).expect("write");
        }
        w.finish().expect("finish");
        assert_eq!(
            String::from_utf8(shown).expect("UTF-8"),
            "id,v\n1,caf\u{e9}\\x1b]0;pwned\\x07\\r\n2,\\u{202e}x\\xff\n3,\\xe2"
        );
    }

    #[test]
    fn messages_keep_their_lines() {
        assert_eq!(
            escape_lines("run 1 failed: \x1b[2J\n  detail: x\ry"),
            "run 1 failed: \\x1b[2J\n  detail: x\\ry"
        );
    }
}
