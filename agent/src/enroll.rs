//! `lasect-agent enroll`: make a key pair here, send a CSR with the
//! enrollment token to ingest over server-authenticated TLS, store the
//! signed certificate and the key in the state dir (see [`crate::identity`]).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use lasect_pki::{CertInfo, new_agent_csr};
use lasect_proto::v1::EnrollRequest;

use crate::channel::{ChannelError, connect};
use crate::config::endpoint_host;
use crate::identity::{IdentityError, IdentityStore};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct EnrollOptions {
    pub token: String,
    /// `https://host:port` of ingest.
    pub ingest: String,
    /// Name the ingest certificate must carry (default: the endpoint's host).
    pub server_name: Option<String>,
    /// The Lasect CA (PEM) that signed the ingest certificate.
    pub ca_file: PathBuf,
    /// Default: derived from the host name.
    pub agent_id: Option<String>,
    pub state_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("--ingest: {0}")]
    Endpoint(String),
    #[error("cannot read the CA file {}: {source}", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid agent id: {0}")]
    AgentId(#[source] lasect_pki::PkiError),
    #[error("cannot derive an agent id from the host name {0:?}; pass --agent-id")]
    NoHostId(String),
    #[error("cannot make the key pair and CSR: {0}")]
    Csr(#[source] lasect_pki::PkiError),
    #[error(transparent)]
    Connect(ChannelError),
    #[error("ingest refused the enrollment ({code:?}): {message}")]
    Refused { code: tonic::Code, message: String },
    #[error("no answer from ingest within {0:?}")]
    Timeout(Duration),
    #[error("ingest returned an unusable certificate: {0}")]
    BadAnswer(String),
    #[error("cannot store the identity: {0}")]
    Store(#[source] IdentityError),
}

/// What enrollment produced.
#[derive(Debug)]
pub struct Enrolled {
    pub agent_id: String,
    pub serial: String,
    pub not_after: SystemTime,
    pub dir: PathBuf,
}

pub async fn enroll(options: &EnrollOptions) -> Result<Enrolled, EnrollError> {
    let host = endpoint_host(&options.ingest).map_err(EnrollError::Endpoint)?;
    let server_name = options.server_name.clone().unwrap_or(host);
    let ca = std::fs::read(&options.ca_file).map_err(|source| EnrollError::CaFile {
        path: options.ca_file.clone(),
        source,
    })?;
    let hostname = hostname();
    let agent_id = match &options.agent_id {
        Some(id) => id.clone(),
        None => {
            id_from_hostname(&hostname).ok_or_else(|| EnrollError::NoHostId(hostname.clone()))?
        }
    };
    lasect_pki::validate_agent_id(&agent_id).map_err(EnrollError::AgentId)?;
    let (csr, key) = new_agent_csr(&agent_id).map_err(EnrollError::Csr)?;

    let mut client = connect(
        &options.ingest,
        Some(&server_name),
        &ca,
        None,
        CONNECT_TIMEOUT,
    )
    .await
    .map_err(EnrollError::Connect)?;
    let request = EnrollRequest {
        token: options.token.trim().to_owned(),
        csr_pem: csr,
        hostname,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let answer = tokio::time::timeout(CALL_TIMEOUT, client.enroll(request))
        .await
        .map_err(|_| EnrollError::Timeout(CALL_TIMEOUT))?
        .map_err(|status| EnrollError::Refused {
            code: status.code(),
            message: status.message().to_owned(),
        })?
        .into_inner();
    let info = CertInfo::from_pem(&answer.certificate_pem)
        .map_err(|e| EnrollError::BadAnswer(e.to_string()))?;
    if info.agent_id != agent_id {
        return Err(EnrollError::BadAnswer(format!(
            "it names {:?}, not {agent_id:?}",
            info.agent_id
        )));
    }
    let chain = format!(
        "{}\n{}",
        answer.certificate_pem.trim_end(),
        answer.ca_pem.trim_end()
    );
    let dir = IdentityStore::new(&options.state_dir)
        .save(&info.serial_hex, &key, &format!("{chain}\n"))
        .map_err(EnrollError::Store)?;
    Ok(Enrolled {
        agent_id,
        serial: info.serial_hex,
        not_after: info.not_after,
        dir,
    })
}

/// This host's name, as reported to ingest.
pub fn hostname() -> String {
    sysinfo::System::host_name().unwrap_or_default()
}

/// An agent id from a host name: the first label, lowercased, other
/// characters replaced by '-'.
fn id_from_hostname(hostname: &str) -> Option<String> {
    let first = hostname.split('.').next().unwrap_or_default();
    let id: String = first
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let id = id.trim_start_matches(['-', '_']).to_owned();
    lasect_pki::validate_agent_id(&id).ok().map(|()| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_host_names() {
        assert_eq!(
            id_from_hostname("DB-01.example.com").as_deref(),
            Some("db-01")
        );
        assert_eq!(
            id_from_hostname("web server").as_deref(),
            Some("web-server")
        );
        assert_eq!(id_from_hostname(""), None);
        assert_eq!(id_from_hostname("--"), None);
    }
}
