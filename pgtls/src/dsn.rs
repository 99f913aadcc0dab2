//! Splitting a libpq-style DSN into what tokio-postgres understands and the
//! TLS settings it does not (`sslrootcert`, `sslcert`, `sslkey`, and the
//! `sslmode` values past `require`). Pure: no file is read here, so a DSN
//! meant for another host (an instance DSN checked by the API) can be
//! validated where its certificate files do not exist.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use tokio_postgres::config::Host;

use crate::DsnError;

/// `sslmode` as libpq spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = DsnError;

    fn from_str(s: &str) -> Result<Self, DsnError> {
        Ok(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => return Err(DsnError::SslMode(other.to_owned())),
        })
    }
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
    /// `sslrootcert=system`: the operating system's trust store.
    System,
}

impl fmt::Display for RootCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "sslrootcert {}", path.display()),
            Self::System => f.write_str("the system's trusted roots (sslrootcert=system)"),
        }
    }
}

/// What is checked of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Encrypted, but any certificate is accepted.
    None,
    /// The chain must lead to a trusted root; the host name is not checked.
    Chain,
    /// The chain and the host name.
    Full,
}

/// The TLS half of a DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub mode: SslMode,
    /// Given in the DSN, or libpq's default `~/.postgresql/root.crt` for the
    /// verifying modes (filled by [`TlsOptions::resolve_defaults`]).
    pub root_cert: Option<RootCert>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Every host is a unix socket: PostgreSQL has no TLS there, and libpq
    /// ignores `sslmode` for them.
    pub unix_only: bool,
}

impl TlsOptions {
    /// Whether TLS is attempted at all.
    pub fn tries_tls(&self) -> bool {
        self.mode != SslMode::Disable && !self.unix_only
    }

    /// Whether a server without TLS is refused.
    pub fn requires_tls(&self) -> bool {
        matches!(
            self.mode,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        ) && !self.unix_only
    }

    /// Like libpq: `require` with a root certificate checks the chain.
    pub fn verification(&self) -> Verification {
        match self.mode {
            SslMode::VerifyFull => Verification::Full,
            SslMode::VerifyCa => Verification::Chain,
            SslMode::Require if self.root_cert.is_some() => Verification::Chain,
            _ => Verification::None,
        }
    }

    /// libpq's default root file for the verifying modes when the DSN names none.
    pub fn resolve_defaults(&mut self) -> Result<(), DsnError> {
        if self.root_cert.is_none() && matches!(self.mode, SslMode::VerifyCa | SslMode::VerifyFull)
        {
            let default = std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".postgresql/root.crt"));
            match default {
                Some(path) if path.is_file() => self.root_cert = Some(RootCert::File(path)),
                _ => return Err(DsnError::NoRootCert { mode: self.mode }),
            }
        }
        Ok(())
    }
}

const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Parses `dsn` (key=value or `postgres://` URI). The returned config has
/// tokio-postgres' own `ssl_mode` set from ours (`verify-*` → `Require`).
pub fn parse(dsn: &str) -> Result<(tokio_postgres::Config, TlsOptions), DsnError> {
    let trimmed = dsn.trim_start();
    let (rest, tls) = if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://")
    {
        split_uri(trimmed)?
    } else {
        split_key_value(trimmed)?
    };
    let mut config =
        tokio_postgres::Config::from_str(&rest).map_err(|e| DsnError::Parse(crate::chain(&e)))?;
    let mut options = TlsOptions {
        mode: SslMode::Prefer,
        root_cert: None,
        client_cert: None,
        client_key: None,
        unix_only: false,
    };
    let mut mode = None;
    for (key, value) in tls {
        match key.as_str() {
            "sslmode" => mode = Some(value.parse::<SslMode>()?),
            "sslrootcert" if value == "system" => options.root_cert = Some(RootCert::System),
            "sslrootcert" => options.root_cert = Some(RootCert::File(value.into())),
            "sslcert" => options.client_cert = Some(value.into()),
            "sslkey" => options.client_key = Some(value.into()),
            _ => {}
        }
    }
    // libpq: sslrootcert=system makes verify-full the default and refuses weaker modes,
    // which would trust any certificate a public CA signed for anyone.
    options.mode = match (mode, &options.root_cert) {
        (None, Some(RootCert::System)) => SslMode::VerifyFull,
        (Some(m), Some(RootCert::System)) if m != SslMode::VerifyFull && m != SslMode::Disable => {
            return Err(DsnError::WeakSystemRoots(m));
        }
        (m, _) => m.unwrap_or_default(),
    };
    if options.client_cert.is_some() != options.client_key.is_some() {
        return Err(DsnError::ClientCertPair);
    }
    let hosts = config.get_hosts();
    options.unix_only = !hosts.is_empty()
        && config.get_hostaddrs().is_empty()
        && hosts.iter().all(|h| !matches!(h, Host::Tcp(_)));
    config.ssl_mode(if options.tries_tls() {
        if options.requires_tls() {
            tokio_postgres::config::SslMode::Require
        } else {
            tokio_postgres::config::SslMode::Prefer
        }
    } else {
        tokio_postgres::config::SslMode::Disable
    });
    Ok((config, options))
}

type Split = (String, Vec<(String, String)>);

/// `key = value` pairs separated by white space; values may be single-quoted;
/// a backslash escapes the next character (libpq's rules).
fn split_key_value(dsn: &str) -> Result<Split, DsnError> {
    let mut kept = String::new();
    let mut tls = Vec::new();
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(DsnError::Syntax(format!("`{key}` is not followed by `=`")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(DsnError::Syntax(format!(
                            "the quoted value of `{key}` is not closed"
                        )));
                    }
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => {
                            return Err(DsnError::Syntax(format!(
                                "the value of `{key}` ends with a backslash"
                            )));
                        }
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    match chars.next() {
                        Some(c) => value.push(c),
                        None => {
                            return Err(DsnError::Syntax(format!(
                                "the value of `{key}` ends with a backslash"
                            )));
                        }
                    }
                } else {
                    value.push(c);
                }
            }
        }
        if TLS_KEYS.contains(&key.as_str()) {
            tls.push((key, value));
        } else {
            let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push_str(&format!("{key}='{escaped}' "));
        }
    }
    Ok((kept, tls))
}

/// Takes the TLS parameters out of a URI's query string.
fn split_uri(dsn: &str) -> Result<Split, DsnError> {
    let Some((base, query)) = dsn.split_once('?') else {
        return Ok((dsn.to_owned(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut tls = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key_decoded = percent_decode(key)?;
        if TLS_KEYS.contains(&key_decoded.as_str()) {
            tls.push((key_decoded, percent_decode(value)?));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, tls))
}

fn percent_decode(s: &str) -> Result<String, DsnError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| DsnError::Syntax("a bad %-escape in the URI".to_owned()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| DsnError::Syntax("a %-escape in the URI is not UTF-8".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(dsn: &str) -> (tokio_postgres::Config, TlsOptions) {
        parse(dsn).unwrap_or_else(|e| panic!("{dsn}: {e}"))
    }

    #[test]
    fn key_value_form_keeps_the_rest_and_takes_the_tls_keys() {
        let (pg, tls) = ok(
            "host=db.example port=5433 user=u password='its \\'q\\' x' dbname=app \
             sslmode=verify-full sslrootcert='/etc/ca dir/root.pem'",
        );
        assert_eq!(pg.get_hosts(), &[Host::Tcp("db.example".into())]);
        assert_eq!(pg.get_ports(), &[5433]);
        assert_eq!(pg.get_dbname(), Some("app"));
        assert_eq!(pg.get_password(), Some(&b"its 'q' x"[..]));
        assert_eq!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(
            tls.root_cert,
            Some(RootCert::File("/etc/ca dir/root.pem".into()))
        );
        assert_eq!(tls.verification(), Verification::Full);
    }

    #[test]
    fn uri_form_takes_the_tls_query_parameters() {
        let (pg, tls) = ok(
            "postgresql://u:p%40ss@127.0.0.1:5433/app?application_name=x&sslmode=verify-ca&sslrootcert=%2Ftmp%2Fca.pem",
        );
        assert_eq!(pg.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(pg.get_application_name(), Some("x"));
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(tls.root_cert, Some(RootCert::File("/tmp/ca.pem".into())));
        assert_eq!(tls.verification(), Verification::Chain);
    }

    #[test]
    fn modes_map_onto_tokio_postgres() {
        use tokio_postgres::config::SslMode as Tp;
        for (mode, want) in [
            ("disable", Tp::Disable),
            ("allow", Tp::Prefer),
            ("prefer", Tp::Prefer),
            ("require", Tp::Require),
            ("verify-ca", Tp::Require),
            ("verify-full", Tp::Require),
        ] {
            let (pg, _) = ok(&format!("host=h sslmode={mode} sslrootcert=/x"));
            assert_eq!(pg.get_ssl_mode(), want, "{mode}");
        }
        let (pg, tls) = ok("host=h");
        assert_eq!((pg.get_ssl_mode(), tls.mode), (Tp::Prefer, SslMode::Prefer));
    }

    #[test]
    fn require_verifies_the_chain_only_when_a_root_is_given() {
        assert_eq!(
            ok("host=h sslmode=require").1.verification(),
            Verification::None
        );
        assert_eq!(
            ok("host=h sslmode=require sslrootcert=/ca.pem")
                .1
                .verification(),
            Verification::Chain
        );
    }

    #[test]
    fn unix_sockets_never_negotiate_tls() {
        let (pg, tls) = ok("host=/run/postgresql sslmode=require");
        assert!(tls.unix_only && !tls.requires_tls());
        assert_eq!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
    }

    #[test]
    fn system_roots_default_to_verify_full_and_refuse_weaker_modes() {
        assert_eq!(ok("host=h sslrootcert=system").1.mode, SslMode::VerifyFull);
        assert!(matches!(
            parse("host=h sslrootcert=system sslmode=verify-ca"),
            Err(DsnError::WeakSystemRoots(SslMode::VerifyCa))
        ));
    }

    #[test]
    fn bad_input_is_refused_without_echoing_the_password() {
        for dsn in [
            "host=h password=hunter2 sslmode=verify-everything",
            "host=h password=hunter2 sslcert=/c.pem",
            "host=h password='hunter2",
            "host=h password=hunter2 bogus=1",
            "postgres://u:hunter2@h/db?sslmode=nope",
        ] {
            let err = parse(dsn).expect_err(dsn).to_string();
            assert!(!err.contains("hunter2"), "{dsn}: {err}");
        }
        let err = parse("host=h sslmode=verify-everything").expect_err("bad mode");
        assert!(err.to_string().contains("verify-full"), "{err}");
    }
}
