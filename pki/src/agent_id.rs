//! Agent ids: the Common Name of an agent's client certificate.
//!
//! An id matches `^[a-z0-9][a-z0-9._-]{0,62}$`, so it is safe as a file name
//! (`agents/<id>.pem`), in logs and in the store.

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::PkiError;

const MAX_LEN: usize = 63;

/// Checks that `id` is a valid agent id.
pub fn validate_agent_id(id: &str) -> Result<(), PkiError> {
    let invalid = |reason| {
        Err(PkiError::InvalidAgentId {
            id: id.to_owned(),
            reason,
        })
    };
    let Some(first) = id.bytes().next() else {
        return invalid("must not be empty");
    };
    if id.len() > MAX_LEN {
        return invalid("must be at most 63 characters");
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return invalid("must start with a lowercase letter or a digit");
    }
    let allowed =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-');
    if !id.bytes().all(allowed) {
        return invalid("may only contain a-z, 0-9, '.', '_' and '-'");
    }
    Ok(())
}

/// Reads the agent id (the single Common Name of the subject) from a DER certificate and checks
/// its format. It does not verify the certificate: the TLS layer has done that.
pub fn agent_id_from_cert_der(der: &[u8]) -> Result<String, PkiError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::ParseCertificate(e.to_string()))?;
    let mut names = cert.subject().iter_common_name();
    let (Some(cn), None) = (names.next(), names.next()) else {
        return Err(PkiError::MissingCommonName);
    };
    let id = cn.as_str().map_err(|_| PkiError::MissingCommonName)?;
    validate_agent_id(id)?;
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        for id in ["a", "0", "db-01", "db_01.prod", "x".repeat(63).as_str()] {
            validate_agent_id(id).expect(id);
        }
    }

    #[test]
    fn rejects_bad_ids() {
        let long = "x".repeat(64);
        for id in [
            "",
            "-a",
            ".a",
            "_a",
            "A",
            "dbA",
            "db 1",
            "db/1",
            "../x",
            "é",
            long.as_str(),
            "a\n",
        ] {
            assert!(validate_agent_id(id).is_err(), "{id:?} should be rejected");
        }
    }

    #[test]
    fn garbage_der_is_an_error() {
        assert!(matches!(
            agent_id_from_cert_der(b"not a certificate"),
            Err(PkiError::ParseCertificate(_))
        ));
    }
}
