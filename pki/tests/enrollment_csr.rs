//! The CSR path of enrollment: the agent makes its key and CSR, the CA signs it for the CSR's
//! own (validated) Common Name and reports the serial and validity it recorded.

use std::time::{Duration, SystemTime};

use lasect_pki::{CertInfo, CertificateAuthority, PkiError, csr_agent_id, new_agent_csr};

#[test]
fn agent_csr_is_signed_for_its_own_id_with_the_requested_validity() {
    let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
    let (csr, key) = new_agent_csr("db-07").expect("CSR");
    assert!(key.expose_secret().contains("PRIVATE KEY"));
    assert_eq!(csr_agent_id(&csr).expect("CN"), "db-07");

    let before = SystemTime::now();
    let signed = ca
        .sign_agent_csr(&csr, Duration::from_secs(20))
        .expect("sign");
    assert_eq!(signed.agent_id, "db-07");
    assert_eq!(signed.serial_hex.len(), 32, "{}", signed.serial_hex);
    let info = CertInfo::from_pem(&signed.cert_pem).expect("parse signed cert");
    assert_eq!(info.agent_id, "db-07");
    assert_eq!(info.serial_hex, signed.serial_hex);
    // Whole seconds in the certificate; a short certificate is backdated by a tenth of its life.
    assert!(info.not_after >= before + Duration::from_secs(19));
    assert!(info.not_after <= SystemTime::now() + Duration::from_secs(21));
    assert!(info.lifetime() >= Duration::from_secs(20));
    assert!(info.lifetime() <= Duration::from_secs(24), "{info:?}");

    // Two signatures of the same CSR get distinct serials.
    let again = ca
        .sign_agent_csr(&csr, Duration::from_secs(20))
        .expect("sign again");
    assert_ne!(again.serial_hex, signed.serial_hex);
}

#[test]
fn bad_csrs_are_refused_with_a_reason() {
    let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
    let day = Duration::from_secs(86_400);
    for garbage in ["", "garbage", ca.cert_pem()] {
        let err = ca.sign_agent_csr(garbage, day).expect_err("garbage CSR");
        assert!(matches!(err, PkiError::Csr(_)), "{err}");
    }

    // A CSR whose CN is not an agent id.
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Bad Id");
    let csr = params
        .serialize_request(&key)
        .expect("CSR")
        .pem()
        .expect("PEM");
    let err = ca.sign_agent_csr(&csr, day).expect_err("bad id");
    assert!(matches!(err, PkiError::InvalidAgentId { .. }), "{err}");

    // A CSR without a CN.
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .expect("CSR")
        .pem()
        .expect("PEM");
    let err = ca.sign_agent_csr(&csr, day).expect_err("no CN");
    assert!(matches!(err, PkiError::MissingCommonName), "{err}");

    // A tampered CSR: its signature no longer verifies.
    let (csr, _) = new_agent_csr("db-07").expect("CSR");
    let (_, pem) = x509_parser::pem::parse_x509_pem(csr.as_bytes()).expect("PEM");
    let mut der = pem.contents.clone();
    let at = der.len() / 2;
    der[at] ^= 0x01;
    let tampered = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        base64_lines(&der)
    );
    let err = ca.sign_agent_csr(&tampered, day).expect_err("tampered");
    assert!(matches!(err, PkiError::Csr(_)), "{err}");
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(der)
}
