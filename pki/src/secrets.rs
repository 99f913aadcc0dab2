//! Encryption of secrets at rest (DSN passwords of instances added through
//! the API): AES-256-GCM with keys from a key file.
//!
//! # Key file
//! Text, mode 0600, one key per line: `<key id> <base64 of 32 bytes>`;
//! blank lines and `#` comments are ignored. The **first** key encrypts; every
//! key decrypts. Rotation ([`Keyring::rotate_file`]) puts a new key first and
//! keeps the old ones, so existing ciphertexts stay readable until they are
//! re-encrypted; only then may an old line be deleted.
//!
//! # Ciphertext
//! `"LSK1" | id length (1 byte) | key id | nonce (12 bytes) | sealed data + tag (16 bytes)`.
//! The nonce is random (96 bits; far below the birthday bound for the
//! number of secrets a store holds). The caller's `aad` is authenticated, so a
//! ciphertext cannot be moved to another purpose unnoticed.
//!
//! # Secrets of instances
//! Every secret of an instance row (its `dsn`, its `run_dsn`) goes through
//! [`encrypt_instance_secret`] and [`decrypt_instance_secret`] and nothing
//! else: their associated data is `lasect-instance-secret:v2|<field>|<instance
//! id>|<agent id>`, so a ciphertext copied to another row, another agent or
//! another column of the same row does not decrypt.
//!
//! Ciphertexts written before that binding (AAD `instance-dsn`, only ever used
//! for `dsn`) still decrypt, and [`Decrypted::legacy`] says so: lasect-api
//! re-encrypts such rows with the bound AAD when it starts (and `secrets
//! rotate` re-encrypts every row), so the unbound form only lives until the
//! first start of an upgraded API that can read the key file.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::Secret;
use crate::key_file::{KEY_MODE, write_atomic};

const MAGIC: &[u8; 4] = b"LSK1";
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
const MAX_KEY_ID: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} is readable by others (mode {mode:o}); it must be 0600")]
    Permissions { path: String, mode: u32 },
    #[error("key file {path}, line {line}: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("key file {path} has no key")]
    Empty { path: String },
    #[error("cannot write key file: {0}")]
    Write(#[from] crate::PkiError),
    #[error("not a Lasect ciphertext (bad header)")]
    Malformed,
    #[error("ciphertext was made with key {0:?}, which is not in the key file")]
    UnknownKey(String),
    #[error("ciphertext does not decrypt (wrong key, wrong purpose or tampered)")]
    Tampered,
    #[error("cannot draw random bytes")]
    Random,
}

/// Associated data of instance DSNs before they were bound to their row.
pub const LEGACY_DSN_AAD: &[u8] = b"instance-dsn";

/// Column name of an instance's own DSN, for [`encrypt_instance_secret`].
pub const FIELD_DSN: &str = "dsn";
/// Column name of an instance's run DSN, for [`encrypt_instance_secret`].
pub const FIELD_RUN_DSN: &str = "run_dsn";

/// The associated data binding a secret to `field` of instance `instance_id`
/// served by `agent_id`. The agent id cannot hold `|` (validated ids are
/// `[A-Za-z0-9._-]`), and it comes last, so the encoding is unambiguous.
fn instance_aad(instance_id: i64, agent_id: &str, field: &str) -> Vec<u8> {
    format!("lasect-instance-secret:v2|{field}|{instance_id}|{agent_id}").into_bytes()
}

/// Encrypts `plaintext`, a secret held in column `field` (e.g. [`FIELD_DSN`],
/// [`FIELD_RUN_DSN`]) of instance `instance_id` served by `agent_id`.
pub fn encrypt_instance_secret(
    keyring: &Keyring,
    instance_id: i64,
    agent_id: &str,
    field: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, SecretsError> {
    keyring.encrypt(plaintext, &instance_aad(instance_id, agent_id, field))
}

/// A decrypted instance secret.
#[derive(Debug)]
pub struct Decrypted {
    pub plaintext: Secret,
    /// Made with the unbound [`LEGACY_DSN_AAD`]: re-encrypt it.
    pub legacy: bool,
}

/// Decrypts what [`encrypt_instance_secret`] made for the same row and field
/// (or, for `dsn` only, a ciphertext from before the binding).
pub fn decrypt_instance_secret(
    keyring: &Keyring,
    instance_id: i64,
    agent_id: &str,
    field: &str,
    ciphertext: &[u8],
) -> Result<Decrypted, SecretsError> {
    match keyring.decrypt_string(ciphertext, &instance_aad(instance_id, agent_id, field)) {
        Ok(plaintext) => Ok(Decrypted {
            plaintext: Secret::new(plaintext),
            legacy: false,
        }),
        Err(SecretsError::Tampered) if field == FIELD_DSN => {
            match keyring.decrypt_string(ciphertext, LEGACY_DSN_AAD) {
                Ok(plaintext) => Ok(Decrypted {
                    plaintext: Secret::new(plaintext),
                    legacy: true,
                }),
                // The bound form is the one that should have matched.
                Err(_) => Err(SecretsError::Tampered),
            }
        }
        Err(e) => Err(e),
    }
}

struct Key {
    id: String,
    key: LessSafeKey,
}

/// The keys of a key file; the first encrypts.
pub struct Keyring {
    keys: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// Reads a key file; refuses one that group or others may read.
    pub fn load(path: &Path) -> Result<Self, SecretsError> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| SecretsError::Read {
            path: shown.clone(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretsError::Permissions { path: shown, mode });
        }
        let text = std::fs::read_to_string(path).map_err(|source| SecretsError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// Loads `path`, first creating it with one fresh key if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretsError> {
        if !path.exists() {
            let line = new_key_line()?;
            write_atomic(path, line.as_bytes(), KEY_MODE)?;
        }
        Self::load(path)
    }

    /// Adds a new first key to the file at `path` (keeping the others) and
    /// returns the new keyring. Re-encrypt stored secrets afterwards.
    pub fn rotate_file(path: &Path) -> Result<Self, SecretsError> {
        let shown = path.display().to_string();
        let old = std::fs::read_to_string(path).map_err(|source| SecretsError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&old, &shown)?;
        let text = format!("{}{old}", new_key_line()?);
        write_atomic(path, text.as_bytes(), KEY_MODE)?;
        Self::load(path)
    }

    fn parse(text: &str, path: &str) -> Result<Self, SecretsError> {
        let mut keys: Vec<Key> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: &str| SecretsError::Parse {
                path: path.to_owned(),
                line: n + 1,
                reason: reason.to_owned(),
            };
            let mut parts = line.split_whitespace();
            let (Some(id), Some(b64), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(err("expected `<key id> <base64 key>`"));
            };
            if id.len() > MAX_KEY_ID || !id.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(err("key id must be 1..=64 printable ASCII characters"));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(err("duplicate key id"));
            }
            let bytes = STANDARD
                .decode(b64)
                .map_err(|_| err("key is not valid base64"))?;
            if bytes.len() != KEY_LEN {
                return Err(err("key must be 32 bytes (AES-256)"));
            }
            let unbound =
                UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| err("key rejected by AES"))?;
            keys.push(Key {
                id: id.to_owned(),
                key: LessSafeKey::new(unbound),
            });
        }
        if keys.is_empty() {
            return Err(SecretsError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Self { keys })
    }

    /// Id of the key new ciphertexts are made with.
    pub fn current_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Key id a ciphertext was made with (without decrypting it).
    pub fn key_id_of(ciphertext: &[u8]) -> Result<&str, SecretsError> {
        let (id, _, _) = split(ciphertext)?;
        Ok(id)
    }

    pub fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SecretsError::Random)?;
        let mut sealed = plaintext.to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed,
            )
            .map_err(|_| SecretsError::Random)?;
        let id = key.id.as_bytes();
        let mut out = Vec::with_capacity(MAGIC.len() + 1 + id.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        // Key ids are at most MAX_KEY_ID (64) bytes, checked when parsed.
        out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn decrypt(&self, ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let (id, nonce, sealed) = split(ciphertext)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SecretsError::UnknownKey(id.to_owned()))?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretsError::Malformed)?;
        let mut buf = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| SecretsError::Tampered)?;
        Ok(plain.to_vec())
    }

    /// Convenience for UTF-8 secrets.
    pub fn decrypt_string(&self, ciphertext: &[u8], aad: &[u8]) -> Result<String, SecretsError> {
        String::from_utf8(self.decrypt(ciphertext, aad)?).map_err(|_| SecretsError::Tampered)
    }
}

/// A key file, re-read whenever it changes on disk, so a rotation
/// (`Keyring::rotate_file`, run by another process) takes effect without a
/// restart of the API or ingest.
#[derive(Debug)]
pub struct KeyFile {
    path: std::path::PathBuf,
    cached: std::sync::Mutex<Option<Loaded>>,
}

/// The keys as last read, with the file's modification time.
type Loaded = (std::time::SystemTime, std::sync::Arc<Keyring>);

impl KeyFile {
    /// Reads the file now (it must exist and be valid).
    pub fn open(path: &Path) -> Result<Self, SecretsError> {
        let file = Self {
            path: path.to_owned(),
            cached: std::sync::Mutex::new(None),
        };
        file.keyring()?;
        Ok(file)
    }

    /// Like [`Self::open`], first creating the file with one key if it is missing.
    pub fn open_or_create(path: &Path) -> Result<Self, SecretsError> {
        Keyring::load_or_create(path)?;
        Self::open(path)
    }

    /// A file that is read only when first needed (it may not exist yet).
    pub fn lazy(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            cached: std::sync::Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current keys, re-read if the file changed since the last call.
    pub fn keyring(&self) -> Result<std::sync::Arc<Keyring>, SecretsError> {
        let shown = self.path.display().to_string();
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .map_err(|source| SecretsError::Read {
                path: shown,
                source,
            })?;
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, keyring)) = cached.as_ref()
            && *at == modified
        {
            return Ok(std::sync::Arc::clone(keyring));
        }
        let keyring = std::sync::Arc::new(Keyring::load(&self.path)?);
        *cached = Some((modified, std::sync::Arc::clone(&keyring)));
        Ok(keyring)
    }
}

fn split(ciphertext: &[u8]) -> Result<(&str, &[u8], &[u8]), SecretsError> {
    let rest = ciphertext
        .strip_prefix(MAGIC.as_slice())
        .ok_or(SecretsError::Malformed)?;
    let (&id_len, rest) = rest.split_first().ok_or(SecretsError::Malformed)?;
    let id_len = usize::from(id_len);
    if rest.len() < id_len + NONCE_LEN + TAG_LEN {
        return Err(SecretsError::Malformed);
    }
    let (id, rest) = rest.split_at(id_len);
    let id = std::str::from_utf8(id).map_err(|_| SecretsError::Malformed)?;
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    Ok((id, nonce, sealed))
}

fn new_key_line() -> Result<String, SecretsError> {
    let rng = SystemRandom::new();
    let mut key = [0u8; KEY_LEN];
    rng.fill(&mut key).map_err(|_| SecretsError::Random)?;
    let mut id = [0u8; 6];
    rng.fill(&mut id).map_err(|_| SecretsError::Random)?;
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let stamp = time::OffsetDateTime::now_utc().date();
    Ok(format!("k{stamp}-{id} {}\n", STANDARD.encode(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(dir: &tempfile::TempDir) -> (std::path::PathBuf, Keyring) {
        let path = dir.path().join("secrets.key");
        let k = Keyring::load_or_create(&path).expect("create key file");
        (path, k)
    }

    #[test]
    fn round_trip_and_purpose_binding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, k) = ring(&dir);
        let c = k
            .encrypt(b"password=hunter2", b"instance-dsn")
            .expect("encrypt");
        assert!(!c.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            k.decrypt(&c, b"instance-dsn").expect("decrypt"),
            b"password=hunter2"
        );
        assert!(matches!(
            k.decrypt(&c, b"other"),
            Err(SecretsError::Tampered)
        ));
        let mut bad = c.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            k.decrypt(&bad, b"instance-dsn"),
            Err(SecretsError::Tampered)
        ));
        assert!(matches!(
            k.decrypt(b"LSK", b""),
            Err(SecretsError::Malformed)
        ));
        assert!(matches!(
            k.decrypt(&c[..20], b"instance-dsn"),
            Err(SecretsError::Malformed)
        ));
    }

    #[test]
    fn instance_secrets_are_bound_to_their_row_and_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, k) = ring(&dir);
        let c = encrypt_instance_secret(&k, 7, "db-1", FIELD_DSN, b"host=a password=x")
            .expect("encrypt");
        let d = decrypt_instance_secret(&k, 7, "db-1", FIELD_DSN, &c).expect("decrypt");
        assert_eq!(d.plaintext.expose_secret(), "host=a password=x");
        assert!(!d.legacy);
        for (id, agent, field) in [
            (8, "db-1", FIELD_DSN),
            (7, "db-2", FIELD_DSN),
            (7, "db-1", FIELD_RUN_DSN),
        ] {
            assert!(
                matches!(
                    decrypt_instance_secret(&k, id, agent, field, &c),
                    Err(SecretsError::Tampered)
                ),
                "{id} {agent} {field}"
            );
        }
        // Rows from before the binding still decrypt, flagged for re-encryption.
        let old = k.encrypt(b"host=b", LEGACY_DSN_AAD).expect("encrypt");
        let d = decrypt_instance_secret(&k, 3, "db-9", FIELD_DSN, &old).expect("legacy");
        assert_eq!(d.plaintext.expose_secret(), "host=b");
        assert!(d.legacy);
        assert!(!format!("{d:?}").contains("host=b"));
        // Only `dsn` ever had a legacy form.
        assert!(decrypt_instance_secret(&k, 3, "db-9", FIELD_RUN_DSN, &old).is_err());
    }

    #[test]
    fn rotation_keeps_old_ciphertexts_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, old) = ring(&dir);
        let c_old = old.encrypt(b"one", b"x").expect("encrypt");
        let new = Keyring::rotate_file(&path).expect("rotate");
        assert_ne!(new.current_key_id(), old.current_key_id());
        assert_eq!(
            new.decrypt(&c_old, b"x").expect("old still readable"),
            b"one"
        );
        let c_new = new.encrypt(b"two", b"x").expect("encrypt");
        assert_eq!(
            Keyring::key_id_of(&c_new).expect("id"),
            new.current_key_id()
        );
        assert!(matches!(
            old.decrypt(&c_new, b"x"),
            Err(SecretsError::UnknownKey(_))
        ));
    }

    #[test]
    fn a_key_file_follows_rotations_made_elsewhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secrets.key");
        let file = KeyFile::open_or_create(&path).expect("open");
        let first = file.keyring().expect("keys").current_key_id().to_owned();
        // Same second as the creation on a coarse clock: make the change visible.
        std::thread::sleep(std::time::Duration::from_millis(20));
        Keyring::rotate_file(&path).expect("rotate");
        let now = file.keyring().expect("keys");
        assert_ne!(now.current_key_id(), first);
        assert!(
            KeyFile::lazy(&dir.path().join("missing"))
                .keyring()
                .is_err()
        );
    }

    #[test]
    fn bad_key_files_are_clear_errors() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        for (text, want) in [
            ("", "has no key"),
            ("only-id\n", "expected"),
            ("a !!!\n", "base64"),
            ("a AAAA\n", "32 bytes"),
        ] {
            std::fs::write(&path, text).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            let e = Keyring::load(&path).expect_err(text).to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let (good, _) = ring(&dir);
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            Keyring::load(&good),
            Err(SecretsError::Permissions { .. })
        ));
    }
}
