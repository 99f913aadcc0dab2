//! `lasect-api ca init`: the directory of TLS material described in `docs/CONTRACTS.md`.
//!
//! ```text
//! D/ca.pem, D/ca.key                     the Lasect CA
//! D/ingest.pem, D/ingest.key             CN lasect-ingest, serverAuth
//! D/api.pem, D/api.key                   CN lasect-api, serverAuth
//! D/agents/<agent-id>.pem, .key          CN = agent id, clientAuth
//! ```
//!
//! Running it again is safe: an existing CA is loaded and reused, complete pairs are checked
//! (issued by this CA, key matches) and kept, and only what is missing is issued. A key is never
//! overwritten: a key without its certificate gets a certificate for that key, and a certificate
//! without its key is an error for the operator to resolve.
//!
//! Every leaf certificate is valid for [`DEFAULT_VALIDITY`] (365 days) unless told otherwise.
//! That is long on purpose for the walking skeleton: agents cannot renew yet. Once enrollment
//! and automatic renewal exist, agent certificates become short-lived.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::KeyPair;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::authority::{check_validity, key_matches_cert, parse_san, pem_to_der};
use crate::key_file::{CERT_MODE, read_pem, write_atomic};
use crate::{CertificateAuthority, PkiError, validate_agent_id};

/// Validity of the certificates `init_dir` issues unless [`InitOptions::validity`] says otherwise.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

const CA_COMMON_NAME: &str = "Lasect CA";
const INGEST_COMMON_NAME: &str = "lasect-ingest";
const API_COMMON_NAME: &str = "lasect-api";
/// SANs every server certificate carries besides its CN, so local setups work out of the box.
const LOCAL_SANS: [&str; 2] = ["localhost", "127.0.0.1"];
const AGENTS_DIR: &str = "agents";

/// What to put into the directory.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Agents to issue client certificates for.
    pub agent_ids: Vec<String>,
    /// Extra SANs (IP or DNS) of the ingest server certificate.
    pub ingest_sans: Vec<String>,
    /// Extra SANs (IP or DNS) of the API server certificate.
    pub api_sans: Vec<String>,
    /// Validity of newly issued server and agent certificates.
    pub validity: Duration,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            agent_ids: Vec::new(),
            ingest_sans: Vec::new(),
            api_sans: Vec::new(),
            validity: DEFAULT_VALIDITY,
        }
    }
}

/// What happened to one certificate/key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitOutcome {
    /// A new key and certificate were written.
    Created,
    /// The pair existed, was checked and kept as is.
    Reused,
    /// Only the key existed; a certificate was issued for it.
    CompletedExistingKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitEntry {
    /// What the pair is, e.g. "CA" or "agent db-01".
    pub label: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub outcome: InitOutcome,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitReport {
    pub entries: Vec<InitEntry>,
    /// Things the operator should know, e.g. a reused server certificate lacking a requested SAN.
    pub warnings: Vec<String>,
}

impl InitReport {
    pub fn outcome_of(&self, label: &str) -> Option<InitOutcome> {
        self.entries
            .iter()
            .find(|e| e.label == label)
            .map(|e| e.outcome)
    }
}

impl fmt::Display for InitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            let verb = match e.outcome {
                InitOutcome::Created => "created",
                InitOutcome::Reused => "reused",
                InitOutcome::CompletedExistingKey => "issued for existing key",
            };
            writeln!(
                f,
                "{verb:<8} {:<20} {} ({})",
                e.label,
                e.cert_path.display(),
                e.key_path.display()
            )?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

enum Leaf<'a> {
    Server {
        common_name: &'a str,
        sans: Vec<String>,
    },
    Agent {
        id: &'a str,
    },
}

/// Creates or completes the TLS material directory `dir`. See the module docs.
pub fn init_dir(dir: &Path, options: &InitOptions) -> Result<InitReport, PkiError> {
    // Check every input before touching the disk, so a typo leaves nothing half-done.
    check_validity(options.validity)?;
    let agent_ids: BTreeSet<&str> = options.agent_ids.iter().map(String::as_str).collect();
    for id in &agent_ids {
        validate_agent_id(id)?;
    }
    let ingest_sans = server_sans(INGEST_COMMON_NAME, &options.ingest_sans)?;
    let api_sans = server_sans(API_COMMON_NAME, &options.api_sans)?;

    let agents_dir = dir.join(AGENTS_DIR);
    let (ca_cert_path, ca_key_path) = CertificateAuthority::paths(dir);
    if !exists(&ca_cert_path)? && !exists(&ca_key_path)? {
        // A new CA cannot have issued any certificate already there; refuse before writing it.
        let leaf_certs = ["ingest", "api"]
            .map(|stem| dir.join(format!("{stem}.pem")))
            .into_iter()
            .chain(
                agent_ids
                    .iter()
                    .map(|id| agents_dir.join(format!("{id}.pem"))),
            );
        for cert in leaf_certs {
            if exists(&cert)? {
                return Err(PkiError::ForeignCertificate {
                    cert,
                    ca: ca_cert_path,
                });
            }
        }
    }
    fs::create_dir_all(&agents_dir)
        .map_err(|e| PkiError::io("create directory", &agents_dir, e))?;

    let mut report = InitReport::default();
    let ca = init_ca(dir, &mut report)?;
    let servers = [
        ("ingest", INGEST_COMMON_NAME, ingest_sans),
        ("api", API_COMMON_NAME, api_sans),
    ];
    for (stem, common_name, sans) in servers {
        let leaf = Leaf::Server { common_name, sans };
        let label = format!("{stem} server");
        init_leaf(
            &ca,
            dir,
            dir,
            stem,
            label,
            &leaf,
            options.validity,
            &mut report,
        )?;
    }
    for id in agent_ids {
        let label = format!("agent {id}");
        init_leaf(
            &ca,
            dir,
            &agents_dir,
            id,
            label,
            &Leaf::Agent { id },
            options.validity,
            &mut report,
        )?;
    }
    Ok(report)
}

fn server_sans(common_name: &str, extra: &[String]) -> Result<Vec<String>, PkiError> {
    let mut sans: Vec<String> = Vec::new();
    let all = [common_name]
        .into_iter()
        .chain(LOCAL_SANS)
        .chain(extra.iter().map(String::as_str));
    for san in all {
        parse_san(san)?;
        let san = normalize_san(san);
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

fn normalize_san(san: &str) -> String {
    match san.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => san.to_ascii_lowercase(),
    }
}

fn exists(path: &Path) -> Result<bool, PkiError> {
    path.try_exists()
        .map_err(|e| PkiError::io("check", path, e))
}

fn init_ca(dir: &Path, report: &mut InitReport) -> Result<CertificateAuthority, PkiError> {
    let (cert_path, key_path) = CertificateAuthority::paths(dir);
    let (ca, outcome) = match (exists(&cert_path)?, exists(&key_path)?) {
        (true, true) => (CertificateAuthority::load(dir)?, InitOutcome::Reused),
        (false, false) => {
            let ca = CertificateAuthority::generate(CA_COMMON_NAME)?;
            ca.save(dir)?;
            (ca, InitOutcome::Created)
        }
        (true, false) => {
            return Err(PkiError::IncompletePair {
                present: cert_path,
                missing: key_path,
            });
        }
        (false, true) => {
            return Err(PkiError::IncompletePair {
                present: key_path,
                missing: cert_path,
            });
        }
    };
    report.entries.push(InitEntry {
        label: "CA".to_owned(),
        cert_path,
        key_path,
        outcome,
    });
    Ok(ca)
}

#[allow(clippy::too_many_arguments)]
fn init_leaf(
    ca: &CertificateAuthority,
    ca_dir: &Path,
    leaf_dir: &Path,
    stem: &str,
    label: String,
    leaf: &Leaf<'_>,
    validity: Duration,
    report: &mut InitReport,
) -> Result<(), PkiError> {
    let cert_path = leaf_dir.join(format!("{stem}.pem"));
    let key_path = leaf_dir.join(format!("{stem}.key"));
    let outcome = match (exists(&cert_path)?, exists(&key_path)?) {
        (false, false) => {
            let issued = match leaf {
                Leaf::Server { common_name, sans } => {
                    ca.issue_server(common_name, sans, validity)?
                }
                Leaf::Agent { id } => ca.issue_client(id, validity)?,
            };
            issued.write(leaf_dir, stem)?;
            InitOutcome::Created
        }
        (true, true) => {
            let cert_der = pem_to_der(&read_pem(&cert_path)?)?;
            if !ca.signed(&cert_der)? {
                return Err(PkiError::ForeignCertificate {
                    cert: cert_path,
                    ca: CertificateAuthority::paths(ca_dir).0,
                });
            }
            let key = load_key(&key_path)?;
            if !key_matches_cert(&key, &cert_der)? {
                return Err(PkiError::KeyMismatch {
                    cert: cert_path,
                    key: key_path,
                });
            }
            if let Leaf::Server { sans, .. } = leaf {
                let present = cert_sans(&cert_der)?;
                let missing: Vec<&str> = sans
                    .iter()
                    .filter(|s| !present.contains(s))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    report.warnings.push(format!(
                        "{} lacks the SAN(s) {}; remove it and {} and run again to reissue",
                        cert_path.display(),
                        missing.join(", "),
                        key_path.display()
                    ));
                }
            }
            InitOutcome::Reused
        }
        (false, true) => {
            let key = load_key(&key_path)?;
            let cert_pem = match leaf {
                Leaf::Server { common_name, sans } => {
                    ca.sign_server_key(&key, common_name, sans, validity)?
                }
                Leaf::Agent { id } => ca.sign_client_key(&key, id, validity)?,
            };
            write_atomic(&cert_path, cert_pem.as_bytes(), CERT_MODE)?;
            InitOutcome::CompletedExistingKey
        }
        (true, false) => {
            return Err(PkiError::IncompletePair {
                present: cert_path,
                missing: key_path,
            });
        }
    };
    report.entries.push(InitEntry {
        label,
        cert_path,
        key_path,
        outcome,
    });
    Ok(())
}

fn load_key(path: &Path) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(&read_pem(path)?).map_err(PkiError::rcgen("parse private key"))
}

/// The DNS and IP SANs of a certificate, normalised like the requested ones.
fn cert_sans(cert_der: &[u8]) -> Result<Vec<String>, PkiError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| PkiError::ParseCertificate(e.to_string()))?;
    let Some(ext) = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::ParseCertificate(e.to_string()))?
    else {
        return Ok(Vec::new());
    };
    let mut sans = Vec::new();
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(dns) => sans.push(dns.to_ascii_lowercase()),
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                    _ => None,
                };
                if let Some(ip) = ip {
                    sans.push(ip.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(sans)
}
