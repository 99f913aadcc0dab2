//! `[control.pgbackrest]`: which pgBackRest the agent runs, and how it becomes the database OS
//! user to run it (docs/BACKUPS.md, "On the database host").
//!
//! ```toml
//! [control.pgbackrest]
//! # An absolute path, or a name looked up on the agent's PATH.
//! command = "/usr/bin/pgbackrest"
//! # Unset: `runuser -u {user} --` when the agent runs as root, else pgBackRest directly.
//! # `{user}` is the owner of the server's data directory; [] runs it directly.
//! run_as = ["sudo", "-n", "-u", "{user}", "--"]
//! ```
//!
//! `run_as` is used for every program a backup, restore or drill starts as the database OS
//! user (`pgbackrest`, the restored cluster's `pg_ctl`). An agent that is not root must be
//! that user: it could not hand pgBackRest's config to another one, so any other user is
//! refused when a run starts (`ops::backup::server`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::Deserialize;

/// What `{user}` in `run_as` stands for.
pub const USER_PLACEHOLDER: &str = "{user}";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PgBackRestConfig {
    /// The pgBackRest executable (default `pgbackrest`, on `PATH`).
    pub command: String,
    /// The command prefix that runs a program as the database OS user; `None`: `runuser` when
    /// the agent is root and that user is not, else nothing.
    pub run_as: Option<Vec<String>>,
}

impl Default for PgBackRestConfig {
    fn default() -> Self {
        Self {
            command: "pgbackrest".to_owned(),
            run_as: None,
        }
    }
}

/// Why the configured pgBackRest cannot be started, for the run's error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandProblem {
    #[error(
        "the pgBackRest command {0} does not exist ([control.pgbackrest] command; apt-get install pgbackrest)"
    )]
    Missing(String),
    #[error("the pgBackRest command {0} is not an executable file ([control.pgbackrest] command)")]
    NotExecutable(String),
}

fn is_program(text: &str) -> bool {
    !text.is_empty()
        && !text.contains(['\0', '\n', '\r'])
        && (text.starts_with('/') || !text.contains('/'))
        && !text.starts_with('-')
}

impl PgBackRestConfig {
    /// Problems as (field, message), all at once.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !is_program(&self.command) {
            out.push((
                "control.pgbackrest.command".to_owned(),
                format!(
                    "must be an absolute path or a program name on PATH, not {:?}",
                    self.command
                ),
            ));
        }
        if let Some(prefix) = &self.run_as {
            if let Some(first) = prefix.first()
                && !is_program(first)
            {
                out.push((
                    "control.pgbackrest.run_as".to_owned(),
                    format!(
                        "must start with an absolute path or a program name on PATH, not {first:?}"
                    ),
                ));
            }
            if prefix.iter().any(|a| a.is_empty() || a.contains('\0')) {
                out.push((
                    "control.pgbackrest.run_as".to_owned(),
                    "holds an empty argument or a NUL".to_owned(),
                ));
            }
        }
        out
    }

    /// The prefix that runs a program as `user`: `run_as` with `{user}` replaced, or by
    /// default `runuser -u <user> --` when the agent is root and `user` is not.
    pub fn prefix(&self, user: &str, agent_is_root: bool, user_is_root: bool) -> Vec<String> {
        match &self.run_as {
            Some(prefix) => prefix
                .iter()
                .map(|a| a.replace(USER_PLACEHOLDER, user))
                .collect(),
            None if agent_is_root && !user_is_root => {
                ["runuser", "-u", user, "--"].map(str::to_owned).to_vec()
            }
            None => Vec::new(),
        }
    }

    /// An absolute `command` must be an executable file; a bare name is left to `PATH` (the
    /// prefix may change it), where a missing one fails with the launcher's own message.
    pub fn check_command(&self) -> Result<(), CommandProblem> {
        let path = Path::new(&self.command);
        if !path.is_absolute() {
            return Ok(());
        }
        match std::fs::metadata(path) {
            Err(_) => Err(CommandProblem::Missing(self.command.clone())),
            Ok(m) if !m.is_file() || m.permissions().mode() & 0o111 == 0 => {
                Err(CommandProblem::NotExecutable(self.command.clone()))
            }
            Ok(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_runs_pgbackrest_from_path_through_runuser_as_root_only() {
        let c = PgBackRestConfig::default();
        assert!(c.problems().is_empty());
        assert_eq!(
            c.prefix("postgres", true, false),
            ["runuser", "-u", "postgres", "--"]
        );
        assert!(c.prefix("postgres", false, false).is_empty());
        assert!(c.prefix("root", true, true).is_empty());
        assert_eq!(c.check_command(), Ok(()));
    }

    #[test]
    fn a_configured_prefix_names_the_database_user() {
        let c = PgBackRestConfig {
            command: "/usr/bin/pgbackrest".into(),
            run_as: Some(
                ["sudo", "-n", "-u", "{user}", "--"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
        };
        assert!(c.problems().is_empty());
        assert_eq!(
            c.prefix("pg16", false, false),
            ["sudo", "-n", "-u", "pg16", "--"]
        );
        let direct = PgBackRestConfig {
            run_as: Some(Vec::new()),
            ..PgBackRestConfig::default()
        };
        assert!(direct.prefix("postgres", true, false).is_empty());
    }

    #[test]
    fn bad_commands_and_prefixes_name_their_field() {
        let c = PgBackRestConfig {
            command: "bin/pgbackrest".into(),
            run_as: Some(vec!["./sudo".into(), String::new()]),
        };
        let fields: Vec<String> = c.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "control.pgbackrest.command",
                "control.pgbackrest.run_as",
                "control.pgbackrest.run_as"
            ]
        );
        for bad in ["", "-x", "a\nb"] {
            let c = PgBackRestConfig {
                command: bad.into(),
                run_as: None,
            };
            assert_eq!(c.problems().len(), 1, "{bad:?}");
        }
    }

    #[test]
    fn a_missing_or_unexecutable_command_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("pgbackrest");
        let c = |p: &Path| PgBackRestConfig {
            command: p.display().to_string(),
            run_as: None,
        };
        assert!(matches!(
            c(&missing).check_command(),
            Err(CommandProblem::Missing(_))
        ));
        std::fs::write(&missing, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&missing, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            c(&missing).check_command(),
            Err(CommandProblem::NotExecutable(_))
        ));
        assert!(matches!(
            c(dir.path()).check_command(),
            Err(CommandProblem::NotExecutable(_))
        ));
        std::fs::set_permissions(&missing, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(c(&missing).check_command(), Ok(()));
    }
}
