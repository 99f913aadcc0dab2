//! `init_dir`: the contract layout, idempotence, and never overwriting a key.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lasect_pki::{CertificateAuthority, InitOptions, InitOutcome, PkiError, init_dir};

fn options(agents: &[&str]) -> InitOptions {
    InitOptions {
        agent_ids: agents.iter().map(|s| s.to_string()).collect(),
        ..InitOptions::default()
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).expect("read file")
}

#[test]
fn creates_the_contract_layout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().join("tls");
    let report = init_dir(&d, &options(&["db-01", "db-02"])).expect("init");
    for file in [
        "ca.pem",
        "ca.key",
        "ingest.pem",
        "ingest.key",
        "api.pem",
        "api.key",
        "agents/db-01.pem",
        "agents/db-01.key",
        "agents/db-02.pem",
        "agents/db-02.key",
    ] {
        assert!(d.join(file).is_file(), "{file} missing");
        if file.ends_with(".key") {
            assert_eq!(mode(&d.join(file)), 0o600, "{file} mode");
        }
    }
    assert!(
        report
            .entries
            .iter()
            .all(|e| e.outcome == InitOutcome::Created)
    );
    assert_eq!(report.entries.len(), 5);
    let printed = report.to_string();
    assert!(
        !printed.contains("PRIVATE KEY"),
        "report must not print keys"
    );
    assert!(printed.contains("agent db-01"), "{printed}");
}

#[test]
fn second_run_reuses_and_adds_only_what_is_missing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    init_dir(d, &options(&["db-01"])).expect("first init");
    let before: Vec<String> = [
        "ca.key",
        "ca.pem",
        "ingest.key",
        "api.pem",
        "agents/db-01.key",
    ]
    .iter()
    .map(|f| read(&d.join(f)))
    .collect();

    let report = init_dir(d, &options(&["db-01", "db-02"])).expect("second init");
    let after: Vec<String> = [
        "ca.key",
        "ca.pem",
        "ingest.key",
        "api.pem",
        "agents/db-01.key",
    ]
    .iter()
    .map(|f| read(&d.join(f)))
    .collect();
    assert_eq!(before, after, "existing material must be untouched");
    assert_eq!(report.outcome_of("CA"), Some(InitOutcome::Reused));
    assert_eq!(
        report.outcome_of("ingest server"),
        Some(InitOutcome::Reused)
    );
    assert_eq!(report.outcome_of("api server"), Some(InitOutcome::Reused));
    assert_eq!(report.outcome_of("agent db-01"), Some(InitOutcome::Reused));
    assert_eq!(report.outcome_of("agent db-02"), Some(InitOutcome::Created));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    // The new agent is signed by the reused CA.
    let ca = CertificateAuthority::load(d).expect("load CA");
    let cert = read(&d.join("agents/db-02.pem"));
    let der = x509_der(&cert);
    assert_eq!(
        lasect_pki::agent_id_from_cert_der(&der).expect("id"),
        "db-02"
    );
    assert_eq!(ca.cert_pem(), before[1]);
}

fn x509_der(pem: &str) -> Vec<u8> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
    parsed.contents
}

#[test]
fn key_without_certificate_gets_a_certificate_for_that_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    init_dir(d, &options(&["db-01"])).expect("first init");
    let key = read(&d.join("agents/db-01.key"));
    fs::remove_file(d.join("agents/db-01.pem")).expect("remove cert");

    let report = init_dir(d, &options(&["db-01"])).expect("second init");
    assert_eq!(
        report.outcome_of("agent db-01"),
        Some(InitOutcome::CompletedExistingKey)
    );
    assert_eq!(
        read(&d.join("agents/db-01.key")),
        key,
        "key must not change"
    );
    // Running once more now finds a consistent pair.
    let report = init_dir(d, &options(&["db-01"])).expect("third init");
    assert_eq!(report.outcome_of("agent db-01"), Some(InitOutcome::Reused));
}

#[test]
fn certificate_without_key_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    init_dir(d, &options(&[])).expect("first init");
    fs::remove_file(d.join("api.key")).expect("remove key");
    let err = init_dir(d, &options(&[])).expect_err("cert without key");
    assert!(matches!(err, PkiError::IncompletePair { .. }), "{err}");
    assert!(err.to_string().contains("api.key"), "{err}");
}

#[test]
fn ca_key_without_certificate_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    init_dir(d, &options(&[])).expect("first init");
    let key = read(&d.join("ca.key"));
    fs::remove_file(d.join("ca.pem")).expect("remove CA cert");
    let err = init_dir(d, &options(&[])).expect_err("CA key without cert");
    assert!(matches!(err, PkiError::IncompletePair { .. }), "{err}");
    assert_eq!(read(&d.join("ca.key")), key, "CA key must not change");
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    init_dir(d, &options(&[])).expect("first init");
    // Replace the CA: the existing leaves were not issued by it.
    fs::remove_file(d.join("ca.pem")).expect("remove");
    fs::remove_file(d.join("ca.key")).expect("remove");
    let err = init_dir(d, &options(&[])).expect_err("foreign leaves");
    assert!(matches!(err, PkiError::ForeignCertificate { .. }), "{err}");
    assert!(
        !d.join("ca.pem").exists(),
        "no new CA may be written next to foreign leaves"
    );

    // A pair that exists but was signed by some other CA is refused too.
    let other = tempfile::tempdir().expect("temp dir");
    init_dir(other.path(), &options(&[])).expect("other init");
    init_dir(d, &options(&["db-01"])).expect_err("still foreign");
    fs::remove_file(d.join("ingest.pem")).expect("remove");
    fs::remove_file(d.join("ingest.key")).expect("remove");
    fs::remove_file(d.join("api.pem")).expect("remove");
    fs::remove_file(d.join("api.key")).expect("remove");
    init_dir(d, &options(&[])).expect("fresh CA and servers");
    for f in ["ingest.pem", "ingest.key"] {
        fs::copy(other.path().join(f), d.join(f)).expect("copy foreign pair");
    }
    let err = init_dir(d, &options(&[])).expect_err("foreign pair");
    assert!(matches!(err, PkiError::ForeignCertificate { .. }), "{err}");
    assert!(err.to_string().contains("ingest.pem"), "{err}");
}

#[test]
fn invalid_input_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().join("tls");
    let err = init_dir(&d, &options(&["ok", "Not OK"])).expect_err("bad agent id");
    assert!(matches!(err, PkiError::InvalidAgentId { .. }), "{err}");
    let err = init_dir(
        &d,
        &InitOptions {
            api_sans: vec!["bad name".to_owned()],
            ..InitOptions::default()
        },
    )
    .expect_err("bad SAN");
    assert!(matches!(err, PkiError::InvalidSan(_)), "{err}");
    assert!(!d.exists(), "nothing may be written for invalid input");
}

#[test]
fn reused_server_certificate_lacking_a_new_san_is_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    init_dir(d, &options(&[])).expect("first init");
    let report = init_dir(
        d,
        &InitOptions {
            ingest_sans: vec!["ingest.example.com".to_owned(), "127.0.0.1".to_owned()],
            ..InitOptions::default()
        },
    )
    .expect("second init");
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(report.warnings[0].contains("ingest.example.com"));
    assert!(!report.warnings[0].contains("127.0.0.1"));
}
