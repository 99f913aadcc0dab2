//! `~/.config/lasect/config.toml` (or `$XDG_CONFIG_HOME/lasect/config.toml`), written by
//! `lasect login` with mode 0600 because it holds an API token:
//!
//! ```toml
//! url = "https://127.0.0.1:8443"
//! token = "lsat_…"
//! ca_file = "/etc/lasect/tls/ca.pem"   # optional
//! ```

use std::fs;
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
        token: file.token.map(lasect_pki::Secret::new),
    }))
}

/// Writes the file with mode 0600, atomically and durably ([`lasect_pki::atomic_file`]).
pub fn save(path: &Path, file: &ConfigFile) -> anyhow::Result<()> {
    let text = toml::to_string(file).context("format the config file")?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    lasect_pki::atomic_file::write_atomic(path, text.as_bytes(), 0o600)
        .with_context(|| format!("write {}", path.display()))
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

    #[test]
    fn save_writes_a_private_file_that_load_reads_and_replaces_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("lasect/config.toml");
        let mut file = ConfigFile {
            url: Some("https://127.0.0.1:8443".into()),
            token: Some("lsat_one".into()),
            ca_file: None,
        };
        save(&path, &file).expect("first save");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        file.token = Some("lsat_two".into());
        save(&path, &file).expect("second save");
        let env = load(&path).expect("load").expect("present");
        assert_eq!(
            env.token.as_ref().map(lasect_pki::Secret::expose_secret),
            Some("lsat_two")
        );
        let names: Vec<_> = fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["config.toml"], "no temp file left behind");
    }
}
