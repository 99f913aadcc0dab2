//! The key file shared with lasect-api (re-read when it changes: a rotation
//! needs no ingest restart). DSNs are decrypted here only to be handed to
//! their agent; neither they nor their plaintext errors are logged.

use std::path::PathBuf;
use std::sync::Arc;

use lasect_pki::secrets::KeyFile;

/// Associated data of instance DSN ciphertexts (docs/CONTROL.md).
pub const DSN_AAD: &[u8] = b"instance-dsn";

#[derive(Clone)]
pub struct DsnDecryptor {
    file: Option<Arc<KeyFile>>,
}

impl DsnDecryptor {
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            file: path.map(|p| Arc::new(KeyFile::lazy(&p))),
        }
    }

    /// The plaintext DSN, or why it cannot be had (never the DSN itself).
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<String, String> {
        let Some(file) = &self.file else {
            return Err("ingest has no [secrets] key_file to decrypt DSNs with".to_owned());
        };
        file.keyring()
            .and_then(|k| k.decrypt_string(ciphertext, DSN_AAD))
            .map_err(|e| e.to_string())
    }
}
