//! Bearer secrets that Lasect hands out once and stores only hashed: agent enrollment tokens,
//! API tokens and refresh tokens.
//!
//! Format: `<prefix>_<43 chars>`: a short kind prefix (so a leaked secret is recognisable in a
//! scan) and 32 random bytes in unpadded base64url. The store keeps [`hash_token`] of it: SHA-256
//! in lowercase hex. The secrets carry 256 bits of entropy, so a fast hash is enough: there is
//! nothing to brute-force, unlike a password (see argon2 in the API for those).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Prefix of agent enrollment tokens.
pub const ENROLLMENT_TOKEN_PREFIX: &str = "lset";
/// Prefix of API tokens used by scripts and the CLI.
pub const API_TOKEN_PREFIX: &str = "lsat";
/// Prefix of refresh tokens.
pub const REFRESH_TOKEN_PREFIX: &str = "lsrt";

const SECRET_BYTES: usize = 32;

/// A fresh random secret `<prefix>_<base64url(32 random bytes)>`.
pub fn new_token(prefix: &str) -> String {
    let bytes: [u8; SECRET_BYTES] = rand::random();
    format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// What the store keeps of a secret: SHA-256 of its UTF-8 bytes, lowercase hex (64 chars).
pub fn hash_token(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether `token` has the shape [`new_token`] makes with `prefix`. A cheap check before any
/// store lookup, so garbage is refused with a clear message.
pub fn looks_like_token(token: &str, prefix: &str) -> bool {
    let Some(rest) = token
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
    else {
        return false;
    };
    rest.len() == 43
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_well_formed_and_hash_to_hex() {
        let a = new_token(ENROLLMENT_TOKEN_PREFIX);
        let b = new_token(ENROLLMENT_TOKEN_PREFIX);
        assert_ne!(a, b);
        assert!(looks_like_token(&a, ENROLLMENT_TOKEN_PREFIX));
        assert!(!looks_like_token(&a, API_TOKEN_PREFIX));
        assert!(!looks_like_token("lset_short", ENROLLMENT_TOKEN_PREFIX));
        let hash = hash_token(&a);
        assert_eq!(hash.len(), 64);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(hash, hash_token(&b));
        // Known answer: SHA-256("abc").
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
