//! Where the server writes its log, from `pg_settings` and
//! `pg_current_logfile()`.
//!
//! The agent reads one format per instance, the richest the server writes:
//! jsonlog, else csvlog, else stderr (reading two would report every event
//! twice). Files are only found when `logging_collector` is on: without it
//! the log is the postmaster's stderr, whose target only the service
//! manager knows. A relative `log_directory` is under `data_directory`,
//! which a role sees only with `pg_read_all_settings` (part of pg_monitor).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use tokio_postgres::Client;

use super::entry::Format;
use super::parse::Parser;
use super::prefix::Prefix;
use super::tail::Source;

const SETTINGS: &str = "SELECT name::text, coalesce(setting, '') FROM pg_settings \
     WHERE name IN ('log_destination', 'logging_collector', 'log_directory', \
     'log_filename', 'log_line_prefix', 'data_directory')";

/// The log settings of a server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogSettings {
    pub settings: HashMap<String, String>,
    /// `pg_current_logfile(format)` per format the server writes.
    pub current: HashMap<Format, String>,
}

pub async fn read(client: &Client) -> Result<LogSettings, tokio_postgres::Error> {
    let mut out = LogSettings::default();
    for row in client.query(SETTINGS, &[]).await? {
        out.settings.insert(row.try_get(0)?, row.try_get(1)?);
    }
    // pg_current_logfile() needs superuser or an explicit grant; without it the file pattern
    // alone finds the files. Asked first, because a refused call would write an ERROR into
    // the very log the agent reads, every round.
    let may_ask = client
        .query_one(
            "SELECT has_function_privilege('pg_current_logfile(text)', 'EXECUTE')",
            &[],
        )
        .await
        .ok()
        .and_then(|row| row.try_get::<_, bool>(0).ok())
        .unwrap_or(false);
    for format in [Format::Stderr, Format::Csv, Format::Json] {
        if !may_ask || !destinations(&out).contains(&format) {
            continue;
        }
        if let Ok(row) = client
            .query_one("SELECT pg_current_logfile($1::text)", &[&format.name()])
            .await
            && let Ok(Some(path)) = row.try_get::<_, Option<String>>(0)
        {
            out.current.insert(format, path);
        }
    }
    Ok(out)
}

fn destinations(s: &LogSettings) -> Vec<Format> {
    s.settings
        .get("log_destination")
        .map(String::as_str)
        .unwrap_or("stderr")
        .split(',')
        .filter_map(|d| match d.trim() {
            "stderr" => Some(Format::Stderr),
            "csvlog" => Some(Format::Csv),
            "jsonlog" => Some(Format::Json),
            _ => None,
        })
        .collect()
}

/// Which files to follow and how to parse them, or why the agent cannot.
pub fn plan(s: &LogSettings) -> Result<(Source, Parser), String> {
    let get = |name: &str| s.settings.get(name).map(String::as_str);
    if get("logging_collector") != Some("on") {
        return Err(
            "logging_collector is off: the server log goes to the postmaster's \
                    stderr, which the agent cannot locate; turn logging_collector on to \
                    collect `log` events"
                .into(),
        );
    }
    let formats = destinations(s);
    let format = [Format::Json, Format::Csv, Format::Stderr]
        .into_iter()
        .find(|f| formats.contains(f))
        .ok_or_else(|| {
            "log_destination names no file format (stderr, csvlog, jsonlog)".to_owned()
        })?;
    let data_dir = get("data_directory").filter(|d| !d.is_empty());
    let resolve = |p: &str| -> Result<PathBuf, String> {
        let path = Path::new(p);
        if path.is_absolute() {
            return Ok(path.to_owned());
        }
        data_dir.map(|d| Path::new(d).join(path)).ok_or_else(|| {
            format!(
                "log path {p:?} is relative to data_directory, which this role cannot see \
                 (grant pg_read_all_settings or pg_monitor)"
            )
        })
    };
    let dir = resolve(get("log_directory").unwrap_or("log"))?;
    let filename = get("log_filename").unwrap_or("postgresql-%Y-%m-%d_%H%M%S.log");
    let pattern = filename_pattern(filename, format)
        .map_err(|e| format!("log_filename {filename:?} gives no usable pattern: {e}"))?;
    let current = match s.current.get(&format) {
        Some(c) => Some(resolve(c)?),
        None => None,
    };
    let parser = match format {
        Format::Json => Parser::Json,
        Format::Csv => Parser::Csv,
        Format::Stderr => Parser::Stderr(
            Prefix::compile(get("log_line_prefix").unwrap_or("")).map_err(|e| e.to_string())?,
        ),
    };
    Ok((
        Source {
            format,
            dir,
            pattern,
            current,
        },
        parser,
    ))
}

/// `log_filename` (strftime escapes) as an anchored regex over file names;
/// csvlog and jsonlog replace a `.log` suffix (or append theirs).
pub fn filename_pattern(log_filename: &str, format: Format) -> Result<Regex, regex::Error> {
    let suffix = match format {
        Format::Stderr => None,
        Format::Csv => Some(".csv"),
        Format::Json => Some(".json"),
    };
    let name = match suffix {
        Some(suffix) => match log_filename.strip_suffix(".log") {
            Some(stem) => format!("{stem}{suffix}"),
            None => format!("{log_filename}{suffix}"),
        },
        None => log_filename.to_owned(),
    };
    let mut re = String::from(r"\A");
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('%') => re.push('%'),
                Some(_) => re.push_str(".+?"),
                None => re.push('%'),
            }
        } else {
            re.push_str(&regex::escape(&c.to_string()));
        }
    }
    re.push_str(r"\z");
    Regex::new(&re)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> LogSettings {
        LogSettings {
            settings: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            current: HashMap::new(),
        }
    }

    #[test]
    fn file_patterns_per_format() {
        let p = filename_pattern("postgresql-%Y-%m-%d_%H%M%S.log", Format::Stderr).expect("re");
        assert!(p.is_match("postgresql-2024-05-01_100000.log"));
        assert!(!p.is_match("postgresql-2024-05-01_100000.csv"));
        let c = filename_pattern("postgresql-%Y-%m-%d_%H%M%S.log", Format::Csv).expect("re");
        assert!(c.is_match("postgresql-2024-05-01_100000.csv"));
        let j = filename_pattern("pg-%a", Format::Json).expect("re");
        assert!(j.is_match("pg-Mon.json"));
        assert!(!j.is_match("pg-Mon"));
    }

    #[test]
    fn the_richest_format_and_a_resolved_directory() {
        let s = settings(&[
            ("logging_collector", "on"),
            ("log_destination", "stderr,csvlog,jsonlog"),
            ("log_directory", "log"),
            ("data_directory", "/pg/data"),
        ]);
        let (source, parser) = plan(&s).expect("plan");
        assert_eq!(source.format, Format::Json);
        assert!(matches!(parser, Parser::Json));
        assert_eq!(source.dir, Path::new("/pg/data/log"));
        let s = settings(&[
            ("logging_collector", "on"),
            ("log_destination", "stderr"),
            ("log_directory", "/var/log/pg"),
            ("log_line_prefix", "%m [%p] "),
        ]);
        let (source, parser) = plan(&s).expect("plan");
        assert_eq!(
            (source.format, source.dir),
            (Format::Stderr, "/var/log/pg".into())
        );
        assert!(matches!(parser, Parser::Stderr(_)));
    }

    #[test]
    fn clear_reasons_when_files_cannot_be_found() {
        let off = plan(&settings(&[("logging_collector", "off")])).expect_err("off");
        assert!(off.contains("logging_collector is off"), "{off}");
        let hidden = plan(&settings(&[
            ("logging_collector", "on"),
            ("log_directory", "log"),
        ]))
        .expect_err("no data_directory");
        assert!(hidden.contains("pg_read_all_settings"), "{hidden}");
    }
}
