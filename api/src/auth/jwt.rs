//! Access tokens: JWTs signed with HS256 only (the algorithm is pinned: a token whose header
//! names any other algorithm, `none` included, is refused), with `exp`, `iat`, `iss`, `aud` and
//! `sub` all required. `sub` is the user id as a decimal string; `sid`, the session (the
//! refresh token family) the token belongs to, lets logout end the access token too.
//!
//! The key is 64 random bytes, kept base64 in a file of mode 0600 that is created on first start
//! when missing (written atomically and durably, see [`lasect_pki::atomic_file`]).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::settings::{JWT_AUDIENCE, JWT_ISSUER};

pub const JWT_ALGORITHM: Algorithm = Algorithm::HS256;
const KEY_BYTES: usize = 64;
/// Clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// What a verified access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user_id: i64,
    /// The session (refresh token family); the session must still be live.
    pub session: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("read JWT key file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("write JWT key file {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("JWT key file {} must be base64 of at least 32 bytes", path.display())]
    Invalid { path: PathBuf },
    #[error("JWT key file {} is readable by others (mode {mode:o}); chmod 600 it", path.display())]
    Permissions { path: PathBuf, mode: u32 },
}

/// The signing key, both ways. No `Debug`: it is a secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(***)")
    }
}

impl JwtKeys {
    pub fn from_secret(secret: &[u8]) -> Self {
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// A random key that lives as long as the process (tests, or a router without config).
    pub fn ephemeral() -> Self {
        let secret: [u8; KEY_BYTES] = rand::random();
        Self::from_secret(&secret)
    }

    /// Loads the key at `path`, creating it (0600) when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyFileError> {
        match fs::read_to_string(path) {
            Ok(text) => {
                let mode = fs::metadata(path)
                    .map_err(|source| KeyFileError::Read {
                        path: path.to_owned(),
                        source,
                    })?
                    .permissions()
                    .mode()
                    & 0o777;
                if mode & 0o077 != 0 {
                    return Err(KeyFileError::Permissions {
                        path: path.to_owned(),
                        mode,
                    });
                }
                let secret = STANDARD
                    .decode(text.trim())
                    .ok()
                    .filter(|s| s.len() >= 32)
                    .ok_or_else(|| KeyFileError::Invalid {
                        path: path.to_owned(),
                    })?;
                Ok(Self::from_secret(&secret))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret: [u8; KEY_BYTES] = rand::random();
                write_private(path, STANDARD.encode(secret).as_bytes()).map_err(|source| {
                    KeyFileError::Write {
                        path: path.to_owned(),
                        source,
                    }
                })?;
                tracing::info!(path = %path.display(), "created a new JWT signing key");
                Ok(Self::from_secret(&secret))
            }
            Err(source) => Err(KeyFileError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Signs an access token for user `user_id` in session `session`, valid `ttl_secs` from
    /// `now` (unix seconds).
    pub fn issue(
        &self,
        user_id: i64,
        session: Option<&str>,
        now: i64,
        ttl_secs: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = Claims {
            sub: user_id.to_string(),
            iss: JWT_ISSUER.to_owned(),
            aud: JWT_AUDIENCE.to_owned(),
            iat: now,
            exp: now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX)),
            sid: session.map(str::to_owned),
        };
        jsonwebtoken::encode(&Header::new(JWT_ALGORITHM), &claims, &self.encoding)
    }

    /// Verifies signature, algorithm, expiry, issuer and audience.
    pub fn verify(&self, token: &str) -> Result<Verified, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(JWT_ALGORITHM);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[JWT_ISSUER]);
        validation.set_audience(&[JWT_AUDIENCE]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)?;
        let user_id = data.claims.sub.parse::<i64>().map_err(|_| {
            jsonwebtoken::errors::Error::from(jsonwebtoken::errors::ErrorKind::InvalidSubject)
        })?;
        Ok(Verified {
            user_id,
            session: data.claims.sid,
        })
    }
}

/// Writes `bytes` to `path` with mode 0600, atomically and durably
/// ([`lasect_pki::atomic_file`]), creating the directory when missing.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    lasect_pki::atomic_file::write_atomic(path, bytes, 0o600)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sub/jwt.key");
        let keys = JwtKeys::load_or_create(&path).expect("create");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let token = keys
            .issue(7, Some("s"), chrono::Utc::now().timestamp(), 60)
            .expect("sign");
        let again = JwtKeys::load_or_create(&path).expect("reload");
        assert_eq!(
            again.verify(&token).expect("verify"),
            Verified {
                user_id: 7,
                session: Some("s".to_owned())
            }
        );

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            JwtKeys::load_or_create(&path),
            Err(KeyFileError::Permissions { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        fs::write(&path, "short").expect("write");
        assert!(matches!(
            JwtKeys::load_or_create(&path),
            Err(KeyFileError::Invalid { .. })
        ));
    }
}
