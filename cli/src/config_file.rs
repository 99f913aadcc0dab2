//! `~/.config/lasect/config.toml` (or `$XDG_CONFIG_HOME/lasect/config.toml`), written by
//! `lasect login` with mode 0600 because it holds an API token:
//!
//! ```toml
//! url = "https://127.0.0.1:8443"
//! token = "lsat_…"
//! ca_file = "/etc/lasect/tls/ca.pem"   # optional
//! ```

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::api_client::ClientEnv;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Where the file lives, from `XDG_CONFIG_HOME` or `HOME`; `None` when neither is set.
pub fn path(xdg_config_home: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    let base = xdg_config_home
        .filter(|p| p.is_absolute())
        .or_else(|| home.map(|h| h.join(".config")))?;
    Some(base.join("lasect").join("config.toml"))
}

pub fn default_path() -> Option<PathBuf> {
    path(
        std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

/// Reads the file; a missing file is `None`.
pub fn load(path: &Path) -> anyhow::Result<Option<ClientEnv>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let file: ConfigFile =
        toml::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    Ok(Some(ClientEnv {
        url: file.url,
        ca_file: file.ca_file,
        token: file.token,
    }))
}

/// Writes the file with mode 0600 (through a temp file and rename).
pub fn save(path: &Path, file: &ConfigFile) -> anyhow::Result<()> {
    let text = toml::to_string(file).context("format the config file")?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let tmp = path.with_extension("toml.tmp");
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("write {}", tmp.display()))?;
    out.write_all(text.as_bytes())
        .and_then(|()| out.sync_all())
        .with_context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdg_wins_over_home() {
        assert_eq!(
            path(Some("/x".into()), Some("/h".into())),
            Some(PathBuf::from("/x/lasect/config.toml"))
        );
        assert_eq!(
            path(Some("relative".into()), Some("/h".into())),
            Some(PathBuf::from("/h/.config/lasect/config.toml"))
        );
        assert_eq!(path(None, None), None);
    }
}
