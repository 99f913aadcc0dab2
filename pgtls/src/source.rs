//! Where a server's store DSN comes from: the one precedence rule that
//! `lasect-ingest` and every `lasect-api` subcommand apply.
//!
//! 1. `--store-dsn` on the command line;
//! 2. `store_dsn` of a config file named with `--config`;
//! 3. `LASECT_STORE_DSN` (set and not empty);
//! 4. `store_dsn` of the default config file (`/etc/lasect/…`).
//!
//! A file the operator named says more about what they meant than a
//! variable a shell may have inherited (`make bench` run from a shell that
//! had sourced the demo's environment once sent its load into the demo's
//! store). The environment still beats the default file, which deployments
//! that pass the DSN by environment rely on.

use std::fmt;
use std::path::PathBuf;

/// The environment variable of the store DSN.
pub const STORE_DSN_ENV: &str = "LASECT_STORE_DSN";

/// Which of the four places gave the DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DsnSource {
    Flag,
    /// The file named with `--config`.
    ConfigFile(PathBuf),
    Env,
    DefaultConfigFile(PathBuf),
}

impl fmt::Display for DsnSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag => f.write_str("--store-dsn"),
            Self::ConfigFile(p) => write!(f, "store_dsn of --config {}", p.display()),
            Self::Env => f.write_str(STORE_DSN_ENV),
            Self::DefaultConfigFile(p) => {
                write!(f, "store_dsn of the default config file {}", p.display())
            }
        }
    }
}

/// What each place says; `None` where it says nothing.
#[derive(Debug, Clone)]
pub struct DsnCandidates<T> {
    pub flag: Option<T>,
    /// The config file read, and whether `--config` named it.
    pub config_path: PathBuf,
    pub config_explicit: bool,
    pub file: Option<T>,
    pub env: Option<T>,
}

/// The DSN that won, where from, and whether `LASECT_STORE_DSN` was set
/// but lost (worth a warning: someone may have expected it to apply).
#[derive(Debug, Clone)]
pub struct ChosenDsn<T> {
    pub dsn: T,
    pub source: DsnSource,
    pub env_ignored: bool,
}

impl<T> DsnCandidates<T> {
    /// Applies the precedence; `None` when no place gives a DSN.
    pub fn choose(self) -> Option<ChosenDsn<T>> {
        let env_set = self.env.is_some();
        let (dsn, source) = match (self.flag, self.config_explicit, self.file, self.env) {
            (Some(dsn), ..) => (dsn, DsnSource::Flag),
            (None, true, Some(dsn), _) => (dsn, DsnSource::ConfigFile(self.config_path)),
            (None, _, _, Some(dsn)) => (dsn, DsnSource::Env),
            (None, false, Some(dsn), None) => (dsn, DsnSource::DefaultConfigFile(self.config_path)),
            (None, _, None, None) => return None,
        };
        Some(ChosenDsn {
            env_ignored: env_set && source != DsnSource::Env,
            dsn,
            source,
        })
    }
}

impl<T: AsRef<str>> ChosenDsn<T> {
    /// One line for the start-up log: the source and the server it names,
    /// never the password.
    pub fn describe(&self) -> String {
        let mut line = format!(
            "store DSN from {} ({})",
            self.source,
            target(self.dsn.as_ref())
        );
        if self.env_ignored {
            line.push_str(&format!(
                "; {STORE_DSN_ENV} is set but not used: {} takes precedence",
                self.source
            ));
        }
        line
    }
}

/// `LASECT_STORE_DSN`, if set and not empty.
pub fn env_store_dsn() -> Result<Option<String>, EnvDsnError> {
    match std::env::var(STORE_DSN_ENV) {
        Ok(dsn) if !dsn.trim().is_empty() => Ok(Some(dsn)),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(EnvDsnError),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{STORE_DSN_ENV} is not valid UTF-8")]
pub struct EnvDsnError;

/// `host=… port=… dbname=… user=…` of a DSN, for logs; no password, no
/// TLS keys. An unparsable DSN is described as such (it is refused with its
/// own message elsewhere).
pub fn target(dsn: &str) -> String {
    let Ok((config, _)) = crate::dsn::parse(dsn) else {
        return "unparsable DSN".to_owned();
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    let mut parts = Vec::new();
    if !hosts.is_empty() {
        parts.push(format!("host={}", hosts.join(",")));
    }
    if !ports.is_empty() {
        parts.push(format!("port={}", ports.join(",")));
    }
    if let Some(db) = config.get_dbname() {
        parts.push(format!("dbname={db}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(
        flag: Option<&'static str>,
        explicit: bool,
        file: Option<&'static str>,
        env: Option<&'static str>,
    ) -> DsnCandidates<&'static str> {
        DsnCandidates {
            flag,
            config_path: PathBuf::from("/c.toml"),
            config_explicit: explicit,
            file,
            env,
        }
    }

    #[test]
    fn precedence_flag_explicit_file_env_default_file() {
        let c = |flag, explicit, file, env| {
            candidates(flag, explicit, file, env)
                .choose()
                .map(|c| (c.dsn, c.source, c.env_ignored))
        };
        let file = DsnSource::ConfigFile(PathBuf::from("/c.toml"));
        let default = DsnSource::DefaultConfigFile(PathBuf::from("/c.toml"));
        assert_eq!(
            c(Some("f"), true, Some("x"), Some("e")),
            Some(("f", DsnSource::Flag, true))
        );
        assert_eq!(
            c(None, true, Some("x"), Some("e")),
            Some(("x", file.clone(), true))
        );
        assert_eq!(
            c(None, true, None, Some("e")),
            Some(("e", DsnSource::Env, false))
        );
        assert_eq!(
            c(None, false, Some("x"), Some("e")),
            Some(("e", DsnSource::Env, false))
        );
        assert_eq!(c(None, false, Some("x"), None), Some(("x", default, false)));
        assert_eq!(c(None, true, Some("x"), None), Some(("x", file, false)));
        assert_eq!(c(None, true, None, None), None);
        assert_eq!(c(None, false, None, None), None);
    }

    #[test]
    fn description_names_the_source_and_server_but_not_the_password() {
        let chosen = candidates(
            None,
            true,
            Some("host=/run/pg port=5432 dbname=a user=u password=hunter2"),
            Some("host=b"),
        )
        .choose()
        .expect("a DSN");
        let line = chosen.describe();
        assert_eq!(
            line,
            "store DSN from store_dsn of --config /c.toml (host=/run/pg port=5432 dbname=a \
             user=u); LASECT_STORE_DSN is set but not used: store_dsn of --config /c.toml takes \
             precedence"
        );
        let url = candidates(None, false, None, Some("postgres://u:hunter2@db:6432/x"))
            .choose()
            .expect("a DSN");
        assert_eq!(
            url.describe(),
            "store DSN from LASECT_STORE_DSN (host=db port=6432 dbname=x user=u)"
        );
        assert_eq!(target("host='"), "unparsable DSN");
    }
}
