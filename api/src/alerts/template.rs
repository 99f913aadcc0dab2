//! Annotation templates: text with `{{ name }}` or `{{ name | format }}` holes.
//!
//! Names: `value`, `threshold`, `rule`, `severity`, `instance`, `agent`, `labels.<key>`.
//! Formats: `bytes` (1.5 GiB), `duration` (2h 5m), `percent` (a value already in percent),
//! `ratio` (a fraction shown in percent), `round`. Templates are checked when a rule is
//! written, so rendering never fails: an unknown label renders empty.

use std::collections::BTreeMap;

/// Longest template accepted (characters).
pub const MAX_LEN: usize = 2000;

const NAMES: &[&str] = &[
    "value",
    "threshold",
    "rule",
    "severity",
    "instance",
    "agent",
];
const FORMATS: &[&str] = &["bytes", "duration", "percent", "ratio", "round"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("position {position}: {message}")]
pub struct TemplateError {
    pub position: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Hole {
        name: String,
        format: Option<String>,
    },
}

fn parse(text: &str) -> Result<Vec<Part>, TemplateError> {
    if text.chars().count() > MAX_LEN {
        return Err(TemplateError {
            position: MAX_LEN + 1,
            message: format!("longer than {MAX_LEN} characters"),
        });
    }
    let mut parts = Vec::new();
    let mut rest = text;
    let mut offset = 0; // characters consumed so far
    while let Some(open) = rest.find("{{") {
        let before = &rest[..open];
        if !before.is_empty() {
            parts.push(Part::Text(before.to_owned()));
        }
        let hole_pos = offset + before.chars().count() + 1;
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(TemplateError {
                position: hole_pos,
                message: "`{{` is not closed by `}}`".to_owned(),
            });
        };
        let inner = &after[..close];
        let (name, format) = match inner.split_once('|') {
            Some((n, f)) => (n.trim(), Some(f.trim())),
            None => (inner.trim(), None),
        };
        let known = NAMES.contains(&name)
            || name.strip_prefix("labels.").is_some_and(|k| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            });
        if !known {
            return Err(TemplateError {
                position: hole_pos,
                message: format!(
                    "unknown name `{name}` (known: {}, labels.<key>)",
                    NAMES.join(", ")
                ),
            });
        }
        if let Some(f) = format
            && !FORMATS.contains(&f)
        {
            return Err(TemplateError {
                position: hole_pos,
                message: format!("unknown format `{f}` (known: {})", FORMATS.join(", ")),
            });
        }
        parts.push(Part::Hole {
            name: name.to_owned(),
            format: format.map(str::to_owned),
        });
        let consumed = open + 2 + close + 2;
        offset += rest[..consumed].chars().count();
        rest = &rest[consumed..];
    }
    if rest.contains("}}") {
        let at = rest.find("}}").unwrap_or(0);
        return Err(TemplateError {
            position: offset + rest[..at].chars().count() + 1,
            message: "`}}` without `{{`".to_owned(),
        });
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    Ok(parts)
}

/// Checks a template; the error names the character position (from 1).
pub fn check(text: &str) -> Result<(), TemplateError> {
    parse(text).map(|_| ())
}

/// What a template can show about one alert.
#[derive(Debug, Clone, Default)]
pub struct Context<'a> {
    pub value: Option<f64>,
    pub threshold: f64,
    pub rule: &'a str,
    pub severity: &'a str,
    pub instance: &'a str,
    pub agent: &'a str,
    pub labels: Option<&'a BTreeMap<String, String>>,
}

/// Renders a template checked earlier; one that does not parse (a rule written before a
/// change of syntax) renders as its own text.
pub fn render(text: &str, ctx: &Context<'_>) -> String {
    let Ok(parts) = parse(text) else {
        return text.to_owned();
    };
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(&t),
            Part::Hole { name, format } => {
                let number = match name.as_str() {
                    "value" => Some(ctx.value),
                    "threshold" => Some(Some(ctx.threshold)),
                    _ => None,
                };
                match number {
                    Some(Some(v)) => out.push_str(&format_number(v, format.as_deref())),
                    Some(None) => out.push_str("n/a"),
                    None => {
                        let text = match name.as_str() {
                            "rule" => ctx.rule,
                            "severity" => ctx.severity,
                            "instance" => ctx.instance,
                            "agent" => ctx.agent,
                            other => other
                                .strip_prefix("labels.")
                                .and_then(|k| ctx.labels.and_then(|l| l.get(k)))
                                .map_or("", String::as_str),
                        };
                        out.push_str(text);
                    }
                }
            }
        }
    }
    out
}

fn format_number(v: f64, format: Option<&str>) -> String {
    match format {
        Some("bytes") => {
            const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
            let mut x = v;
            let mut unit = 0;
            while x.abs() >= 1024.0 && unit + 1 < UNITS.len() {
                x /= 1024.0;
                unit += 1;
            }
            if unit == 0 {
                format!("{x:.0} B")
            } else {
                format!("{x:.1} {}", UNITS[unit])
            }
        }
        Some("duration") => {
            let s = v.max(0.0).round() as u64;
            match s {
                0..60 => format!("{s}s"),
                60..3600 => format!("{}m {}s", s / 60, s % 60),
                3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
                _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
            }
        }
        Some("percent") => format!("{v:.1}%"),
        Some("ratio") => format!("{:.1}%", v * 100.0),
        Some("round") => format!("{v:.0}"),
        _ => {
            if v.fract() == 0.0 && v.abs() < 1e15 {
                format!("{v:.0}")
            } else {
                format!("{v:.3}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_names_labels_and_formats() {
        let labels: BTreeMap<String, String> = [("datname".to_owned(), "app".to_owned())].into();
        let ctx = Context {
            value: Some(1610612736.0),
            threshold: 0.5,
            rule: "r",
            severity: "warning",
            instance: "prod",
            agent: "db-01",
            labels: Some(&labels),
        };
        assert_eq!(
            render(
                "{{labels.datname}} on {{ instance }}: {{ value | bytes }} > {{threshold}}",
                &ctx
            ),
            "app on prod: 1.5 GiB > 0.500"
        );
        assert_eq!(render("{{ labels.nope }}|", &ctx), "|");
        let ctx = Context {
            value: Some(3725.0),
            ..ctx
        };
        assert_eq!(render("{{ value | duration }}", &ctx), "1h 2m");
    }

    #[test]
    fn errors_name_the_position() {
        assert_eq!(check("ab {{ value").expect_err("refused").position, 4);
        let e = check("é {{ valeu }}").expect_err("refused");
        assert_eq!(e.position, 3);
        assert!(e.message.contains("valeu"), "{e}");
        assert!(
            check("{{ value | kb }}")
                .expect_err("refused")
                .message
                .contains("kb")
        );
        assert_eq!(check("x }}").expect_err("refused").position, 3);
        assert!(check("plain").is_ok());
    }
}
