//! Who is pushing: the agent id is the Common Name of the leaf client
//! certificate, which rustls has already verified against the Lasect CA.
//! Nothing in a message can claim an identity.

use std::fmt;

/// A validated agent id (`^[a-z0-9][a-z0-9._-]{0,62}$`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentId(String);

impl AgentId {
    /// Checks `id` against the agent id rules.
    pub fn parse(id: &str) -> Result<Self, lasect_pki::PkiError> {
        lasect_pki::validate_agent_id(id)?;
        Ok(Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no client certificate was presented")]
    NoCertificate,
    #[error("the client certificate does not name a valid agent")]
    Invalid(#[source] lasect_pki::PkiError),
}

/// The agent id of the peer of a request: the Common Name of the leaf
/// (first) certificate of the chain the client presented.
pub fn agent_id_of<T>(request: &tonic::Request<T>) -> Result<AgentId, IdentityError> {
    let certs = request.peer_certs().ok_or(IdentityError::NoCertificate)?;
    let leaf = certs.first().ok_or(IdentityError::NoCertificate)?;
    lasect_pki::agent_id_from_cert_der(leaf.as_ref())
        .map(AgentId)
        .map_err(IdentityError::Invalid)
}

/// The leaf certificate of the peer of a request: its agent id, serial and
/// validity.
pub fn peer_cert_of<T>(request: &tonic::Request<T>) -> Result<lasect_pki::CertInfo, IdentityError> {
    let certs = request.peer_certs().ok_or(IdentityError::NoCertificate)?;
    let leaf = certs.first().ok_or(IdentityError::NoCertificate)?;
    lasect_pki::CertInfo::from_der(leaf.as_ref()).map_err(IdentityError::Invalid)
}
