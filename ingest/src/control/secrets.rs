//! The key file shared with lasect-api, re-read when it changes (a rotation
//! must not need an ingest restart).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use lasect_pki::secrets::Keyring;

/// Associated data of instance DSN ciphertexts (docs/CONTROL.md).
pub const DSN_AAD: &[u8] = b"instance-dsn";

/// The key file as last read, with its modification time.
type Loaded = (SystemTime, Arc<Keyring>);

#[derive(Clone)]
pub struct DsnDecryptor {
    path: Option<PathBuf>,
    cached: Arc<Mutex<Option<Loaded>>>,
}

impl DsnDecryptor {
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            cached: Arc::default(),
        }
    }

    /// The plaintext DSN, or why it cannot be had (never the DSN itself).
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<String, String> {
        let keyring = self.keyring()?;
        keyring
            .decrypt_string(ciphertext, DSN_AAD)
            .map_err(|e| e.to_string())
    }

    fn keyring(&self) -> Result<Arc<Keyring>, String> {
        let Some(path) = &self.path else {
            return Err("ingest has no [secrets] key_file to decrypt DSNs with".to_owned());
        };
        let modified = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, keyring)) = cached.as_ref()
            && *at == modified
        {
            return Ok(Arc::clone(keyring));
        }
        let keyring = Arc::new(Keyring::load(path).map_err(|e| e.to_string())?);
        *cached = Some((modified, Arc::clone(&keyring)));
        Ok(keyring)
    }
}
