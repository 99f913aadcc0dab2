//! Issued certificates verified the way the servers and agents will: with rustls' webpki
//! verifiers over the ring provider.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use lasect_pki::{CertificateAuthority, PkiError, agent_id_from_cert_der};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("certificate PEM")
}

fn roots(ca: &CertificateAuthority) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(der(ca.cert_pem())).expect("add CA to roots");
    Arc::new(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn verify_server(
    ca: &CertificateAuthority,
    cert_pem: &str,
    name: &str,
) -> Result<(), rustls::Error> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .expect("server verifier");
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    verifier
        .verify_server_cert(&der(cert_pem), &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

fn verify_client(ca: &CertificateAuthority, cert_pem: &str) -> Result<(), rustls::Error> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .expect("client verifier");
    verifier
        .verify_client_cert(&der(cert_pem), &[], UnixTime::now())
        .map(|_| ())
}

#[test]
fn server_certificate_verifies_for_its_sans_only() {
    let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
    let sans = [
        "lasect-ingest",
        "localhost",
        "127.0.0.1",
        "::1",
        "ingest.example.com",
    ]
    .map(String::from);
    let issued = ca
        .issue_server("lasect-ingest", &sans, DAY)
        .expect("issue server cert");
    for name in [
        "lasect-ingest",
        "localhost",
        "127.0.0.1",
        "::1",
        "ingest.example.com",
    ] {
        verify_server(&ca, &issued.cert_pem, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(verify_server(&ca, &issued.cert_pem, "other.example.com").is_err());
    assert!(verify_server(&ca, &issued.cert_pem, "10.0.0.1").is_err());
    // serverAuth only: not usable as an agent's client certificate.
    assert!(verify_client(&ca, &issued.cert_pem).is_err());
}

#[test]
fn certificate_of_another_ca_does_not_verify() {
    let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
    let other = CertificateAuthority::generate("Other CA").expect("generate other CA");
    let issued = other.issue_client("db-01", DAY).expect("issue");
    assert!(verify_client(&ca, &issued.cert_pem).is_err());
}

#[test]
fn bad_sans_are_rejected() {
    let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
    for san in ["", "has space", "a/b", "-bad.example", "é.example", "a..b"] {
        let err = ca
            .issue_server("x", &[san.to_owned()], DAY)
            .expect_err("bad SAN must be rejected");
        assert!(matches!(err, PkiError::InvalidSan(_)), "{san:?}: {err}");
    }
}

#[test]
fn client_certificate_carries_the_agent_id() {
    let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
    let issued = ca
        .issue_client("db-01.prod", DAY)
        .expect("issue client cert");
    verify_client(&ca, &issued.cert_pem).expect("client cert verifies");
    let id = agent_id_from_cert_der(&der(&issued.cert_pem)).expect("agent id");
    assert_eq!(id, "db-01.prod");
    // clientAuth only: not usable as a server certificate.
    assert!(verify_server(&ca, &issued.cert_pem, "db-01.prod").is_err());
}

#[test]
fn bad_agent_ids_are_rejected() {
    let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
    for id in ["", "Upper", "-x", "a/b", "../etc", &"x".repeat(64)] {
        let err = ca
            .issue_client(id, DAY)
            .expect_err("bad id must be rejected");
        assert!(
            matches!(err, PkiError::InvalidAgentId { .. }),
            "{id:?}: {err}"
        );
    }
}

#[test]
fn cn_of_a_server_certificate_is_not_an_agent_id() {
    let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
    // The CA's own CN has a space and capitals: not an agent id.
    let err = agent_id_from_cert_der(&der(ca.cert_pem())).expect_err("CA CN is not an agent id");
    assert!(matches!(err, PkiError::InvalidAgentId { .. }), "{err}");
}

#[test]
fn validity_out_of_range_is_rejected() {
    let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
    assert!(matches!(
        ca.issue_client("db-01", Duration::ZERO),
        Err(PkiError::InvalidValidity(_))
    ));
    assert!(matches!(
        ca.issue_client("db-01", Duration::from_secs(u64::MAX)),
        Err(PkiError::InvalidValidity(_))
    ));
}

#[test]
fn csr_is_signed_with_the_cas_identity_not_the_requested_one() {
    let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
    let agent_key = rcgen::KeyPair::generate().expect("agent key");
    // The request asks for another name and a server certificate; both must be ignored.
    let mut params =
        rcgen::CertificateParams::new(vec!["evil.example".to_owned()]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "someone-else");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let csr = params
        .serialize_request(&agent_key)
        .expect("CSR")
        .pem()
        .expect("CSR PEM");

    let cert_pem = ca.sign_csr(&csr, "db-02", DAY).expect("sign CSR");
    verify_client(&ca, &cert_pem).expect("signed cert verifies as client cert");
    assert!(verify_server(&ca, &cert_pem, "evil.example").is_err());
    let cert_der = der(&cert_pem);
    assert_eq!(
        agent_id_from_cert_der(&cert_der).expect("agent id"),
        "db-02"
    );

    // The certificate is for the key that made the request.
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(&cert_der).expect("parse cert");
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        rcgen::PublicKeyData::der_bytes(&agent_key)
    );
}

#[test]
fn bad_csrs_are_rejected() {
    let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
    let err = ca
        .sign_csr("garbage", "db-02", DAY)
        .expect_err("garbage CSR");
    assert!(matches!(err, PkiError::InvalidCsr(_)), "{err}");
    // A certificate is not a CSR.
    let err = ca
        .sign_csr(ca.cert_pem(), "db-02", DAY)
        .expect_err("cert is not a CSR");
    assert!(matches!(err, PkiError::InvalidCsr(_)), "{err}");
    // A valid CSR with an invalid agent id.
    let key = rcgen::KeyPair::generate().expect("key");
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .expect("CSR")
        .pem()
        .expect("CSR PEM");
    let err = ca.sign_csr(&csr, "Bad Id", DAY).expect_err("bad id");
    assert!(matches!(err, PkiError::InvalidAgentId { .. }), "{err}");
}

#[test]
fn saved_ca_loads_and_keeps_signing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
    ca.save(dir.path()).expect("save CA");
    let mode = std::fs::metadata(dir.path().join("ca.key"))
        .expect("stat ca.key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let loaded = CertificateAuthority::load(dir.path()).expect("load CA");
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    let issued = loaded
        .issue_client("db-01", DAY)
        .expect("issue with loaded CA");
    verify_client(&ca, &issued.cert_pem).expect("verifies against the original CA");
}

#[test]
fn loading_a_ca_with_the_wrong_key_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
    ca.save(dir.path()).expect("save CA");
    let other = CertificateAuthority::generate("Other").expect("generate other CA");
    let other_dir = tempfile::tempdir().expect("temp dir");
    other.save(other_dir.path()).expect("save other");
    std::fs::copy(other_dir.path().join("ca.key"), dir.path().join("ca.key")).expect("swap key");
    let err = CertificateAuthority::load(dir.path()).expect_err("mismatched key");
    assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
}

#[test]
fn loading_garbage_fails_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = CertificateAuthority::load(dir.path()).expect_err("nothing there");
    assert!(matches!(err, PkiError::Io { .. }), "{err}");
    std::fs::write(dir.path().join("ca.pem"), "not pem").expect("write");
    std::fs::write(dir.path().join("ca.key"), "not pem").expect("write");
    let err = CertificateAuthority::load(dir.path()).expect_err("garbage");
    assert!(matches!(err, PkiError::ParseCertificate(_)), "{err}");
}

#[test]
fn issued_pair_is_written_with_a_private_key_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
    let issued = ca.issue_client("db-01", DAY).expect("issue");
    let (cert, key) = issued.write(dir.path(), "db-01").expect("write pair");
    assert_eq!(cert, dir.path().join("db-01.pem"));
    assert_eq!(
        std::fs::read_to_string(&key).expect("read key"),
        issued.key_pem.expose_secret()
    );
    let mode = std::fs::metadata(&key)
        .expect("stat key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
