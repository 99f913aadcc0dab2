//! `log_line_prefix`, compiled into a matcher for stderr log lines.
//!
//! Each escape becomes a regex piece of the shape PostgreSQL prints for it;
//! the ones the agent keeps are captured: `%m`/`%t`/`%n` (time), `%p`
//! (pid), `%u` (user), `%d` (database), `%a` (application), `%e`
//! (SQLSTATE), `%Q` (query id). Others (`%h %r %c %l %x %v %i %s %b %P`)
//! are matched and skipped, unknown escapes match any text, and everything
//! else is literal. `%q` ends the part printed for non-session processes,
//! so what follows it is optional. Padding (`%-10u`, `%5p`) is allowed.
//! After the prefix comes `SEVERITY:  message`.

use regex::Regex;

use super::entry::parse_time;

/// A compiled `log_line_prefix`.
#[derive(Debug, Clone)]
pub struct Prefix {
    re: Regex,
}

/// What the prefix and severity of one line say.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Head<'a> {
    pub time_unix_micros: Option<i64>,
    pub pid: Option<i32>,
    pub user_name: &'a str,
    pub database: &'a str,
    pub application: &'a str,
    pub sqlstate: &'a str,
    pub query_id: Option<i64>,
    pub severity: &'a str,
    pub message: &'a str,
}

const SEVERITIES: &str = "DEBUG[1-5]?|INFO|NOTICE|WARNING|ERROR|LOG|FATAL|PANIC|\
                          DETAIL|HINT|QUERY|CONTEXT|LOCATION|STATEMENT";

#[derive(Debug, thiserror::Error)]
#[error("log_line_prefix {prefix:?} cannot be compiled: {source}")]
pub struct PrefixError {
    prefix: String,
    #[source]
    source: Box<regex::Error>,
}

impl Prefix {
    pub fn compile(log_line_prefix: &str) -> Result<Self, PrefixError> {
        let mut re = String::from(r"\A");
        let mut used = std::collections::HashSet::new();
        let mut optional_open = false;
        let mut chars = log_line_prefix.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                re.push_str(&regex::escape(&c.to_string()));
                continue;
            }
            // Padding: `%-10u`, `%5p`.
            let mut padded = false;
            while let Some(&p) = chars.peek() {
                if p == '-' || p.is_ascii_digit() {
                    padded = true;
                    chars.next();
                } else {
                    break;
                }
            }
            let Some(escape) = chars.next() else {
                re.push('%');
                break;
            };
            let mut group = |name: &str, pattern: &str| {
                if used.insert(name.to_owned()) {
                    format!("(?P<{name}>{pattern})")
                } else {
                    format!("(?:{pattern})")
                }
            };
            let piece = match escape {
                '%' => "%".to_owned(),
                'q' => {
                    if !optional_open {
                        optional_open = true;
                        re.push_str("(?:");
                    }
                    continue;
                }
                'm' => group(
                    "m",
                    r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]+ \S+",
                ),
                't' => group(
                    "t",
                    r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} \S+",
                ),
                'n' => group("n", r"[0-9]+\.[0-9]+"),
                'p' => group("p", r"[0-9]+"),
                'u' => group("u", r".*?"),
                'd' => group("d", r".*?"),
                'a' => group("a", r".*?"),
                'e' => group("e", r"[0-9A-Z]{5}"),
                'Q' => group("Q", r"-?[0-9]+"),
                'c' => r"[0-9a-f]+\.[0-9a-f]+".to_owned(),
                'l' | 'P' => r"[0-9]*".to_owned(),
                's' => r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} \S+".to_owned(),
                'x' => r"[0-9]+".to_owned(),
                _ => r".*?".to_owned(),
            };
            if padded {
                re.push_str(&format!(r" *{piece} *"));
            } else {
                re.push_str(&piece);
            }
        }
        if optional_open {
            re.push_str(")?");
        }
        re.push_str(&format!(r"(?P<sev>{SEVERITIES}):  (?P<msg>.*)\z"));
        let re = Regex::new(&re).map_err(|source| PrefixError {
            prefix: log_line_prefix.to_owned(),
            source: Box::new(source),
        })?;
        Ok(Self { re })
    }

    /// The head of a line that starts a message part, or `None` (a
    /// continuation line or garbage).
    pub fn parse<'a>(&self, line: &'a str) -> Option<Head<'a>> {
        let c = self.re.captures(line)?;
        let text = |name: &str| c.name(name).map_or("", |m| m.as_str().trim());
        let time_unix_micros = c
            .name("m")
            .or_else(|| c.name("t"))
            .and_then(|m| parse_time(m.as_str()))
            .or_else(|| {
                let secs: f64 = c.name("n")?.as_str().parse().ok()?;
                // Epoch seconds with milliseconds; far below 2^53 µs.
                Some((secs * 1e6).round() as i64)
            });
        Some(Head {
            time_unix_micros,
            pid: text("p").parse().ok(),
            user_name: text("u"),
            database: text("d"),
            application: text("a"),
            sqlstate: text("e"),
            query_id: text("Q").parse().ok().filter(|q| *q != 0),
            severity: c.name("sev").map_or("", |m| m.as_str()),
            message: c.name("msg").map_or("", |m| m.as_str()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_prefix() {
        let p = Prefix::compile("%m [%p] ").expect("compile");
        let h = p
            .parse("2024-05-01 10:00:00.123 UTC [4242] ERROR:  division by zero")
            .expect("matches");
        assert_eq!(h.pid, Some(4242));
        assert_eq!(h.severity, "ERROR");
        assert_eq!(h.message, "division by zero");
        assert_eq!(
            h.time_unix_micros,
            parse_time("2024-05-01 10:00:00.123 UTC")
        );
        assert!(p.parse("\tcontinuation").is_none());
        assert!(p.parse("garbage line").is_none());
    }

    #[test]
    fn every_common_escape() {
        let p = Prefix::compile("%t %m %n [%p-%l] %c %r %h %x %v %e %Q %%%q%u@%d/%a: ")
            .expect("compile");
        let line = "2024-05-01 10:00:00 UTC 2024-05-01 10:00:00.500 UTC 1714557600.500 \
                    [77-3] 6632b1a0.4d 10.0.0.1(5432) 10.0.0.1 0 3/12 22012 -123 %\
                    alice@app db/psql x: ERROR:  boom: yes";
        let h = p.parse(line).expect("matches");
        assert_eq!(h.pid, Some(77));
        assert_eq!(h.user_name, "alice");
        assert_eq!(h.database, "app db");
        assert_eq!(h.application, "psql x");
        assert_eq!(h.sqlstate, "22012");
        assert_eq!(h.query_id, Some(-123));
        assert_eq!(h.severity, "ERROR");
        assert_eq!(h.message, "boom: yes");
        // Time from the first of %t/%m: %m wins when both are there.
        assert_eq!(
            h.time_unix_micros,
            parse_time("2024-05-01 10:00:00.500 UTC")
        );
    }

    #[test]
    fn q_makes_the_session_part_optional() {
        let p = Prefix::compile("%m [%p] %q%u@%d ").expect("compile");
        let bg = p
            .parse("2024-05-01 10:00:00.123 UTC [9] LOG:  checkpoint starting: time")
            .expect("background process");
        assert_eq!((bg.user_name, bg.severity), ("", "LOG"));
        let s = p
            .parse("2024-05-01 10:00:00.123 UTC [9] bob@shop STATEMENT:  SELECT 1")
            .expect("session");
        assert_eq!(
            (s.user_name, s.database, s.severity),
            ("bob", "shop", "STATEMENT")
        );
    }

    #[test]
    fn padding_empty_prefix_and_repeated_escapes() {
        let p = Prefix::compile("%-8u|%5p|%p|").expect("compile");
        let h = p.parse("bob     |   12|12|WARNING:  w").expect("matches");
        assert_eq!((h.user_name, h.pid), ("bob", Some(12)));
        let empty = Prefix::compile("").expect("compile");
        assert_eq!(empty.parse("LOG:  hi").map(|h| h.message), Some("hi"));
        let dangling = Prefix::compile("x %").expect("compile");
        assert!(dangling.parse("x %LOG:  hi").is_some());
    }
}
