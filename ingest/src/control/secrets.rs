//! The key file shared with lasect-api (re-read when it changes: a rotation
//! needs no ingest restart). DSNs are decrypted here only to be handed to
//! their agent; neither they nor their plaintext errors are logged.
//!
//! Every ciphertext is bound to its row (`lasect_pki::secrets`,
//! [`decrypt_instance_secret`]): the instance id, the serving agent and the
//! column name are its associated data, so one copied to another instance,
//! agent or column does not decrypt, and that instance is not assigned.
//! Ciphertexts from before the binding still decrypt here (lasect-api
//! re-encrypts them when it starts).

use std::path::PathBuf;
use std::sync::Arc;

use lasect_pki::secrets::{KeyFile, decrypt_instance_secret};

pub use lasect_pki::secrets::{FIELD_DSN, FIELD_RUN_DSN};

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

    /// The plaintext of column `field` of instance `instance` served by
    /// `agent`, or why it cannot be had (never the secret itself).
    pub fn decrypt(
        &self,
        instance: i64,
        agent: &str,
        field: &str,
        ciphertext: &[u8],
    ) -> Result<String, String> {
        let Some(file) = &self.file else {
            return Err("ingest has no [secrets] key_file to decrypt DSNs with".to_owned());
        };
        let keyring = file.keyring().map_err(|e| e.to_string())?;
        let secret = decrypt_instance_secret(&keyring, instance, agent, field, ciphertext)
            .map_err(|e| {
                format!("the {field} of instance {instance} (agent {agent}) does not decrypt: {e}")
            })?;
        if secret.legacy {
            tracing::debug!(
                instance,
                %agent,
                "a DSN encrypted before its binding to the row; lasect-api re-encrypts it at start"
            );
        }
        Ok(secret.plaintext.expose_secret().to_owned())
    }
}
