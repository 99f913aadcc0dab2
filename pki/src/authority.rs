//! The CA itself: a self-signed ECDSA P-256 certificate and its key, and the issuing of server,
//! agent and CSR-based certificates.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::key_file::{CERT_MODE, KEY_MODE, read_pem, write_atomic};
use crate::{IssuedCert, PkiError, SecretPem, validate_agent_id};

/// How long the CA certificate is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Certificates start this far in the past so that hosts with a slightly slow clock accept them.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
const MAX_VALIDITY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub(crate) const CA_CERT_FILE: &str = "ca.pem";
pub(crate) const CA_KEY_FILE: &str = "ca.key";

/// The Lasect CA: its certificate and the key that signs with it.
pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The issuer's Debug already leaves out the key.
        f.debug_struct("CertificateAuthority")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Makes a new CA with a fresh key, valid for [`CA_VALIDITY`].
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(PkiError::rcgen("generate CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Lasect");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        // Path length 0: the CA signs leaves only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY)?;
        let cert = params
            .self_signed(&key)
            .map_err(PkiError::rcgen("self-sign CA certificate"))?;
        Ok(CertificateAuthority {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads `dir/ca.pem` and `dir/ca.key`, checking that the key belongs to the certificate.
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let (cert_path, key_path) = Self::paths(dir);
        let cert_pem = read_pem(&cert_path)?;
        let key_pem = read_pem(&key_path)?;
        Self::from_pem(&cert_pem, &key_pem, &cert_path, &key_path)
    }

    fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Self, PkiError> {
        let cert_der = pem_to_der(cert_pem)?;
        let key = KeyPair::from_pem(key_pem).map_err(PkiError::rcgen("parse CA key"))?;
        if !key_matches_cert(&key, &cert_der)? {
            return Err(PkiError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key)
            .map_err(PkiError::rcgen("read CA certificate"))?;
        Ok(CertificateAuthority {
            cert_pem: cert_pem.to_owned(),
            cert_der,
            issuer,
        })
    }

    /// Loads the CA from explicit certificate and key paths (ingest's `[enrollment]`).
    pub fn load_files(cert_path: &Path, key_path: &Path) -> Result<Self, PkiError> {
        let cert_pem = read_pem(cert_path)?;
        let key_pem = read_pem(key_path)?;
        Self::from_pem(&cert_pem, &key_pem, cert_path, key_path)
    }

    /// Writes `dir/ca.key` (0600) and `dir/ca.pem`, each atomically.
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        let (cert_path, key_path) = Self::paths(dir);
        write_atomic(
            &key_path,
            self.key_pem().expose_secret().as_bytes(),
            KEY_MODE,
        )?;
        write_atomic(&cert_path, self.cert_pem.as_bytes(), CERT_MODE)
    }

    /// `(dir/ca.pem, dir/ca.key)`.
    pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE))
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    fn key_pem(&self) -> SecretPem {
        SecretPem::new(self.issuer.key().serialize_pem())
    }

    /// Issues a server certificate (EKU serverAuth). Each SAN that parses as an IP address
    /// becomes an IP SAN, anything else a DNS SAN.
    pub fn issue_server(
        &self,
        common_name: &str,
        sans: &[String],
        validity: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let key = KeyPair::generate().map_err(PkiError::rcgen("generate server key"))?;
        let cert_pem = self.sign_server_key(&key, common_name, sans, validity)?;
        Ok(IssuedCert {
            cert_pem,
            key_pem: SecretPem::new(key.serialize_pem()),
        })
    }

    /// Issues an agent client certificate: CN = `agent_id`, EKU clientAuth.
    pub fn issue_client(&self, agent_id: &str, validity: Duration) -> Result<IssuedCert, PkiError> {
        validate_agent_id(agent_id)?;
        let key = KeyPair::generate().map_err(PkiError::rcgen("generate agent key"))?;
        let cert_pem = self.sign_client_key(&key, agent_id, validity)?;
        Ok(IssuedCert {
            cert_pem,
            key_pem: SecretPem::new(key.serialize_pem()),
        })
    }

    /// Signs an agent's certificate signing request. Only the CSR's public key is used (after
    /// its signature is checked): the subject, SANs and key usages come from the CA, so a CSR
    /// cannot ask for a different identity or a server certificate. Returns the certificate PEM.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        agent_id: &str,
        validity: Duration,
    ) -> Result<String, PkiError> {
        validate_agent_id(agent_id)?;
        let csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(PkiError::InvalidCsr)?;
        let request = CertificateSigningRequestParams {
            params: client_params(agent_id, validity)?,
            public_key: csr.public_key,
        };
        let cert = request
            .signed_by(&self.issuer)
            .map_err(PkiError::rcgen("sign agent certificate"))?;
        Ok(cert.pem())
    }

    /// Signs an enrolling (or renewing) agent's CSR: checks its signature, takes the agent id
    /// from its Common Name (which must be a valid id) and issues a client certificate for
    /// that id, valid for `validity`. Returns the certificate with its serial and validity so
    /// the caller can record them.
    pub fn sign_agent_csr(
        &self,
        csr_pem: &str,
        validity: Duration,
    ) -> Result<SignedCert, PkiError> {
        let agent_id = csr_agent_id(csr_pem)?;
        let csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(PkiError::InvalidCsr)?;
        let params = client_params(&agent_id, validity)?;
        let (serial, not_before, not_after) = (
            params.serial_number.clone(),
            params.not_before,
            params.not_after,
        );
        let request = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        };
        let cert = request
            .signed_by(&self.issuer)
            .map_err(PkiError::rcgen("sign agent certificate"))?;
        Ok(SignedCert {
            cert_pem: cert.pem(),
            agent_id,
            serial_hex: serial.map(|s| hex(&s.to_bytes())).unwrap_or_default(),
            not_before: not_before.into(),
            not_after: not_after.into(),
        })
    }

    pub(crate) fn sign_server_key(
        &self,
        key: &KeyPair,
        common_name: &str,
        sans: &[String],
        validity: Duration,
    ) -> Result<String, PkiError> {
        let mut params = leaf_params(common_name, validity)?;
        params.subject_alt_names = sans
            .iter()
            .map(|s| parse_san(s))
            .collect::<Result<_, _>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(key, &self.issuer)
            .map_err(PkiError::rcgen("sign server certificate"))?;
        Ok(cert.pem())
    }

    pub(crate) fn sign_client_key(
        &self,
        key: &KeyPair,
        agent_id: &str,
        validity: Duration,
    ) -> Result<String, PkiError> {
        let cert = client_params(agent_id, validity)?
            .signed_by(key, &self.issuer)
            .map_err(PkiError::rcgen("sign agent certificate"))?;
        Ok(cert.pem())
    }

    /// Whether the DER certificate carries a valid signature of this CA.
    pub(crate) fn signed(&self, cert_der: &[u8]) -> Result<bool, PkiError> {
        let (_, ca) = X509Certificate::from_der(&self.cert_der)
            .map_err(|e| PkiError::ParseCertificate(e.to_string()))?;
        let (_, leaf) = X509Certificate::from_der(cert_der)
            .map_err(|e| PkiError::ParseCertificate(e.to_string()))?;
        Ok(leaf.issuer() == ca.subject() && leaf.verify_signature(Some(ca.public_key())).is_ok())
    }
}

/// A certificate signed from a CSR, with what the store records of it.
#[derive(Debug, Clone)]
pub struct SignedCert {
    pub cert_pem: String,
    /// The Common Name: the agent id.
    pub agent_id: String,
    /// The serial number in lowercase hex, without separators.
    pub serial_hex: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// The agent id a CSR asks for: its signature is checked, and its subject must carry exactly
/// one Common Name that is a valid agent id.
pub fn csr_agent_id(csr_pem: &str) -> Result<String, PkiError> {
    let invalid = |reason: String| PkiError::Csr(reason);
    let (_, pem) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes())
        .map_err(|e| invalid(format!("not PEM: {e}")))?;
    if pem.label != "CERTIFICATE REQUEST" {
        return Err(invalid(format!(
            "expected a CERTIFICATE REQUEST PEM block, found {}",
            pem.label
        )));
    }
    let (_, csr) = X509CertificationRequest::from_der(&pem.contents)
        .map_err(|e| invalid(format!("not a certificate signing request: {e}")))?;
    csr.verify_signature()
        .map_err(|_| invalid("its signature does not verify".to_owned()))?;
    let mut names = csr.certification_request_info.subject.iter_common_name();
    let (Some(cn), None) = (names.next(), names.next()) else {
        return Err(PkiError::MissingCommonName);
    };
    let id = cn.as_str().map_err(|_| PkiError::MissingCommonName)?;
    validate_agent_id(id)?;
    Ok(id.to_owned())
}

/// A fresh key pair (ECDSA P-256) and a CSR for `agent_id`, made where the key will live.
pub fn new_agent_csr(agent_id: &str) -> Result<(String, SecretPem), PkiError> {
    validate_agent_id(agent_id)?;
    let key = KeyPair::generate().map_err(PkiError::rcgen("generate agent key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, agent_id);
    let csr = params
        .serialize_request(&key)
        .map_err(PkiError::rcgen("make certificate signing request"))?;
    let pem = csr
        .pem()
        .map_err(PkiError::rcgen("encode certificate signing request"))?;
    Ok((pem, SecretPem::new(key.serialize_pem())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn client_params(agent_id: &str, validity: Duration) -> Result<CertificateParams, PkiError> {
    validate_agent_id(agent_id)?;
    let mut params = leaf_params(agent_id, validity)?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

fn leaf_params(common_name: &str, validity: Duration) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, validity)?;
    Ok(params)
}

pub(crate) fn check_validity(validity: Duration) -> Result<(), PkiError> {
    if validity < Duration::from_secs(1) || validity > MAX_VALIDITY {
        return Err(PkiError::InvalidValidity(validity));
    }
    Ok(())
}

fn set_validity(params: &mut CertificateParams, validity: Duration) -> Result<(), PkiError> {
    check_validity(validity)?;
    let now = OffsetDateTime::now_utc();
    // A short-lived certificate is backdated less, so that most of its life lies ahead
    // (agents renew at a fraction of not_after - not_before).
    params.not_before = now - BACKDATE.min(validity / 10);
    params.not_after = now + validity;
    params.serial_number = Some(random_serial());
    Ok(())
}

/// A random positive 128-bit serial (RFC 5280 asks for unique serials per CA; rcgen's default
/// derives it from the public key, which repeats when a CSR reuses its key).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

pub(crate) fn parse_san(name: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let invalid = || PkiError::InvalidSan(name.to_owned());
    if !is_dns_name(name) {
        return Err(invalid());
    }
    Ok(SanType::DnsName(name.try_into().map_err(|_| invalid())?))
}

/// A DNS name as certificates carry it: dot-separated labels of letters, digits and hyphens
/// (not at either end of a label), optionally starting with a `*.` wildcard.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

pub(crate) fn pem_to_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| PkiError::ParseCertificate(e.to_string()))?;
    if parsed.label != "CERTIFICATE" {
        return Err(PkiError::ParseCertificate(format!(
            "expected a CERTIFICATE PEM block, found {}",
            parsed.label
        )));
    }
    Ok(parsed.contents)
}

pub(crate) fn key_matches_cert(key: &KeyPair, cert_der: &[u8]) -> Result<bool, PkiError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| PkiError::ParseCertificate(e.to_string()))?;
    Ok(cert.public_key().subject_public_key.data.as_ref() == key.der_bytes())
}
