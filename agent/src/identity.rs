//! The agent's client certificate: either files named in `[tls]`, or the
//! identity `lasect-agent enroll` stored in the state dir (and that the
//! agent renews by itself).
//!
//! Precedence: when `[tls] cert_file` and `key_file` are both set, they are
//! used as they are (and never renewed: whoever manages them replaces
//! them; they are read again at every reconnect). When neither is set, the
//! enrolled identity in `<state_dir>/identity` is used.
//!
//! Layout of an enrolled identity:
//!
//! ```text
//! <state_dir>/identity             symlink → identity.<serial>
//! <state_dir>/identity.<serial>/   0700
//!     agent.key                    0600, PKCS#8 PEM private key (made on this host)
//!     agent.pem                    0644, the certificate followed by the CA certificate
//! ```
//!
//! A new identity is written into a fresh `identity.<serial>` directory
//! (files fsynced), which is then made current by renaming a new symlink over
//! `identity` (atomic), after which older `identity.*` directories are
//! removed. A reader resolves the symlink once and reads both files from
//! that one directory, so it never pairs a key with another key's
//! certificate; a crash at any point leaves the previous identity or the
//! new one in force, never a half-written one.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use lasect_pki::{CertInfo, SecretPem};

const CURRENT: &str = "identity";
const KEY_FILE: &str = "agent.key";
const CERT_FILE: &str = "agent.pem";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no enrolled identity in {}: run `lasect-agent enroll` or set [tls] cert_file and key_file",
        .0.display()
    )]
    NotEnrolled(PathBuf),
    #[error("the certificate in {}: {source}", path.display())]
    Certificate {
        path: PathBuf,
        #[source]
        source: lasect_pki::PkiError,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError {
    let path = path.to_owned();
    move |source| IdentityError::Io {
        action,
        path,
        source,
    }
}

/// A certificate chain and its key, as PEM.
#[derive(Clone)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: SecretPem,
}

impl Pair {
    pub fn info(&self, path: &Path) -> Result<CertInfo, IdentityError> {
        CertInfo::from_pem(&self.cert_pem).map_err(|source| IdentityError::Certificate {
            path: path.to_owned(),
            source,
        })
    }
}

/// Where the agent's client certificate comes from.
#[derive(Debug, Clone)]
pub enum ClientIdentity {
    /// `[tls] cert_file` and `key_file`, managed outside the agent.
    Files {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
    /// The identity stored by `lasect-agent enroll` (renewed by the agent).
    Enrolled(IdentityStore),
}

impl ClientIdentity {
    /// Reads the current certificate and key.
    pub fn load(&self) -> Result<Pair, IdentityError> {
        match self {
            ClientIdentity::Files {
                cert_file,
                key_file,
            } => Ok(Pair {
                cert_pem: fs::read_to_string(cert_file).map_err(io("read", cert_file))?,
                key_pem: SecretPem::new(
                    fs::read_to_string(key_file).map_err(io("read", key_file))?,
                ),
            }),
            ClientIdentity::Enrolled(store) => store.load(),
        }
    }

    /// Short description for logs.
    pub fn describe(&self) -> String {
        match self {
            ClientIdentity::Files { cert_file, .. } => cert_file.display().to_string(),
            ClientIdentity::Enrolled(store) => {
                format!("enrolled identity in {}", store.current().display())
            }
        }
    }
}

/// The enrolled identity of a state dir.
#[derive(Debug, Clone)]
pub struct IdentityStore {
    state_dir: PathBuf,
}

impl IdentityStore {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            state_dir: state_dir.to_owned(),
        }
    }

    /// `<state_dir>/identity` (the symlink to the current generation).
    pub fn current(&self) -> PathBuf {
        self.state_dir.join(CURRENT)
    }

    /// Whether an identity has been stored.
    pub fn exists(&self) -> bool {
        fs::symlink_metadata(self.current()).is_ok()
    }

    /// The current certificate and key; both read from the one directory
    /// the symlink names when it is resolved.
    pub fn load(&self) -> Result<Pair, IdentityError> {
        let link = self.current();
        let target = match fs::read_link(&link) {
            Ok(target) => target,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(IdentityError::NotEnrolled(self.state_dir.clone()));
            }
            Err(e) => return Err(io("read the symlink", &link)(e)),
        };
        let dir = self.state_dir.join(target);
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        Ok(Pair {
            cert_pem: fs::read_to_string(&cert_path).map_err(io("read", &cert_path))?,
            key_pem: SecretPem::new(fs::read_to_string(&key_path).map_err(io("read", &key_path))?),
        })
    }

    /// Stores a new identity and makes it current (see the module docs).
    /// `generation` names its directory (the certificate serial). Returns the
    /// directory written.
    pub fn save(
        &self,
        generation: &str,
        key: &SecretPem,
        cert_chain_pem: &str,
    ) -> Result<PathBuf, IdentityError> {
        let state = &self.state_dir;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state)
            .map_err(io("create", state))?;
        let name = format!("{CURRENT}.{}", safe(generation));
        let dir = state.join(&name);
        let staging = state.join(format!(".{name}.tmp"));
        let _ = fs::remove_dir_all(&staging);
        DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(io("create", &staging))?;
        write_synced(
            &staging.join(KEY_FILE),
            key.expose_secret().as_bytes(),
            0o600,
        )?;
        write_synced(&staging.join(CERT_FILE), cert_chain_pem.as_bytes(), 0o644)?;
        sync_dir(&staging)?;
        let _ = fs::remove_dir_all(&dir);
        fs::rename(&staging, &dir).map_err(io("rename into place", &dir))?;
        sync_dir(state)?;

        let link_tmp = state.join(format!(".{CURRENT}.link.tmp"));
        let _ = fs::remove_file(&link_tmp);
        std::os::unix::fs::symlink(&name, &link_tmp).map_err(io("create symlink", &link_tmp))?;
        let current = self.current();
        fs::rename(&link_tmp, &current).map_err(io("replace", &current))?;
        sync_dir(state)?;
        self.remove_old(&name);
        Ok(dir)
    }

    /// Removes generations other than `keep` (best effort: a leftover only
    /// takes a little space and is removed next time).
    fn remove_old(&self, keep: &str) {
        let Ok(entries) = fs::read_dir(&self.state_dir) else {
            return;
        };
        let prefix = format!("{CURRENT}.");
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix)
                && name != keep
                && let Err(error) = fs::remove_dir_all(entry.path())
            {
                tracing::debug!(%error, name, "cannot remove an old identity");
            }
        }
    }
}

/// Only characters that are safe in a file name.
fn safe(generation: &str) -> String {
    generation
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(64)
        .collect()
}

fn write_synced(path: &Path, contents: &[u8], mode: u32) -> Result<(), IdentityError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io("create", path))?;
    file.write_all(contents).map_err(io("write", path))?;
    file.sync_all().map_err(io("fsync", path))
}

fn sync_dir(dir: &Path) -> Result<(), IdentityError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn saves_replaces_and_loads_atomically_with_private_key_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let store = IdentityStore::new(&state);
        assert!(matches!(store.load(), Err(IdentityError::NotEnrolled(_))));
        assert!(!store.exists());

        let first = store
            .save("aa01", &SecretPem::new("KEY-1"), "CERT-1")
            .expect("save first");
        assert_eq!(mode(&first.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&first), 0o700);
        let pair = store.load().expect("load first");
        assert_eq!(
            (pair.cert_pem.as_str(), pair.key_pem.expose_secret()),
            ("CERT-1", "KEY-1")
        );

        let second = store
            .save("bb:02", &SecretPem::new("KEY-2"), "CERT-2")
            .expect("save second");
        assert!(second.ends_with("identity.bb02"));
        let pair = store.load().expect("load second");
        assert_eq!(
            (pair.cert_pem.as_str(), pair.key_pem.expose_secret()),
            ("CERT-2", "KEY-2")
        );
        assert!(!first.exists(), "the old generation is removed");
        let leftovers: Vec<_> = fs::read_dir(&state)
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
