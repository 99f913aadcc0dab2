//! The binary refuses a bad config with a clear message and a failure exit.

use std::process::{Command, Output};

fn run_with_config(config: Option<&str>) -> Output {
    let dir = tempfile::tempdir().expect("create temp dir");
    let path = dir.path().join("ingest.toml");
    if let Some(text) = config {
        std::fs::write(&path, text).expect("write config");
    }
    Command::new(env!("CARGO_BIN_EXE_lasect-ingest"))
        .arg("--config")
        .arg(&path)
        .env_remove("LASECT_STORE_DSN")
        .output()
        .expect("run lasect-ingest")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn missing_config_file_is_named() {
    let output = run_with_config(None);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("load config file"), "{err}");
    assert!(err.contains("ingest.toml"), "{err}");
}

#[test]
fn every_bad_field_is_reported() {
    let output = run_with_config(Some(
        "listen = \"nowhere\"\n[tls]\nca_file = \"/nonexistent/ca.pem\"\n\
         cert_file = \"/nonexistent/ingest.pem\"\nkey_file = \"/nonexistent/ingest.key\"\n\
         [limits]\nmax_samples_per_batch = 0\n",
    ));
    assert!(!output.status.success());
    let err = stderr(&output);
    for needle in [
        "listen: `nowhere` is not an IP:port address",
        "store_dsn: is missing",
        "tls.ca_file: cannot read /nonexistent/ca.pem",
        "tls.cert_file: cannot read /nonexistent/ingest.pem",
        "tls.key_file: cannot read /nonexistent/ingest.key",
        "limits.max_samples_per_batch: must be greater than 0",
    ] {
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    }
}

#[test]
fn unknown_keys_and_bad_toml_are_refused() {
    let output = run_with_config(Some("lissen = \"0.0.0.0:1\"\n"));
    assert!(!output.status.success());
    assert!(stderr(&output).contains("lissen"), "{}", stderr(&output));

    let output = run_with_config(Some("[tls\n"));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("is not valid"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn unusable_tls_files_are_named() {
    let dir = tempfile::tempdir().expect("create temp dir");
    for name in ["ca.pem", "ingest.pem", "ingest.key"] {
        std::fs::write(dir.path().join(name), "not PEM at all\n").expect("write file");
    }
    let config = format!(
        "listen = \"127.0.0.1:0\"\nstore_dsn = \"host=/nonexistent\"\n[tls]\n\
         ca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
        dir.path().join("ca.pem"),
        dir.path().join("ingest.pem"),
        dir.path().join("ingest.key"),
    );
    let output = run_with_config(Some(&config));
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("ca.pem: contains no PEM certificate"), "{err}");
}

/// An enrollment CA that tls.ca_file does not trust would sign certificates
/// ingest itself refuses: it is a startup error, named.
#[test]
fn enrollment_ca_must_be_trusted_for_client_certificates() {
    let tls = crate::support::TlsMaterial::generate();
    let other = tempfile::tempdir().expect("create temp dir");
    lasect_pki::CertificateAuthority::generate("Another CA")
        .expect("generate CA")
        .save(other.path())
        .expect("save CA");
    let config = format!(
        "listen = \"127.0.0.1:0\"\nstore_dsn = \"host=/nonexistent\"\n[tls]\n\
         ca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n\
         [enrollment]\nca_cert = {:?}\nca_key = {:?}\n",
        tls.path("ca.pem"),
        tls.path("ingest.pem"),
        tls.path("ingest.key"),
        other.path().join("ca.pem"),
        other.path().join("ca.key"),
    );
    let output = run_with_config(Some(&config));
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("enrollment.ca_cert is not one of the CAs in tls.ca_file"),
        "{err}"
    );
}
