//! [`Secret`], the one type of every secret string in Lasect: DSNs that may
//! hold a password, private keys, bearer tokens, decrypted instance DSNs.
//!
//! `Debug` and `Display` print `***`, so a secret inside a config or an error
//! cannot reach a log by accident; there is no `Serialize`, so it cannot reach
//! a response either. The value is read only through
//! [`Secret::expose_secret`], which marks every place that hands it on, and
//! the memory that held it is zeroed when it is dropped (copies a library
//! makes of the exposed text are that library's).
//!
//! secrecy's `SecretString` was the alternative; it prints
//! `SecretBox<str>([REDACTED])` and has no `Display`, so every user would
//! again have wrapped it to print the `***` the logs, the tests and the docs
//! use.

use std::fmt;

use zeroize::Zeroizing;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret itself, for the library or file that needs it; never for a
    /// message.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Config {
        user: String,
        password: Secret,
        nested: Vec<Option<Secret>>,
    }

    #[test]
    fn a_config_holding_secrets_prints_none_of_them() {
        let config: Config = serde_json::from_str(
            r#"{"user": "alice", "password": "hunter2", "nested": [null, "key-pem"]}"#,
        )
        .expect("config");
        let shown = format!("{config:?} {config:#?} {}", config.password);
        assert!(shown.contains("alice"), "{shown}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("key-pem"),
            "{shown}"
        );
        assert_eq!(
            format!("{:?} {}", config.password, config.password),
            "*** ***"
        );
        assert_eq!(config.password.expose_secret(), "hunter2");
        assert_eq!(
            config.nested[1].as_ref().map(Secret::expose_secret),
            Some("key-pem")
        );
    }
}
