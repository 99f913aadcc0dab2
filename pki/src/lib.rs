//! The Lasect certificate authority.
//!
//! Lasect runs its own small CA (rcgen, ring): it signs the ingest and API server certificates and
//! one client certificate per agent. The agent's identity at ingest is the Common Name of its leaf
//! client certificate, read with [`agent_id_from_cert_der`].
//!
//! - [`CertificateAuthority`] creates or loads the CA and issues certificates.
//! - [`init_dir`] lays out a directory of TLS material (see `docs/CONTRACTS.md`, "TLS material
//!   layout"); it is idempotent and never overwrites a key.
//! - [`Secret`] is the one type of every secret string (DSNs, keys, tokens): `Debug`/`Display`
//!   print `***`, zeroed on drop. Private keys only leave this crate inside one ([`SecretPem`]),
//!   and are written with mode 0600 through [`atomic_file::write_atomic`].
//! - [`atomic_file`] replaces a file atomically and durably; the other crates' secret and state
//!   files are written with it too (every one of them depends on this crate).

mod agent_id;
pub mod atomic_file;
mod authority;
mod cert_info;
mod error;
mod init_layout;
mod issued;
mod key_file;
mod secret;
mod secret_token;
pub mod secrets;

pub use agent_id::{agent_id_from_cert_der, validate_agent_id};
pub use authority::{CA_VALIDITY, CertificateAuthority, SignedCert, csr_agent_id, new_agent_csr};
pub use cert_info::CertInfo;
pub use error::PkiError;
pub use init_layout::{
    DEFAULT_VALIDITY, InitEntry, InitOptions, InitOutcome, InitReport, init_dir,
};
pub use issued::{IssuedCert, SecretPem};
pub use secret::Secret;
pub use secret_token::{
    API_TOKEN_PREFIX, ENROLLMENT_TOKEN_PREFIX, REFRESH_TOKEN_PREFIX, hash_token, looks_like_token,
    new_token,
};
