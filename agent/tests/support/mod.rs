//! Shared by the agent's integration tests: a throwaway Lasect-like PKI and
//! an agent config pointing at it.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// CA, ingest server cert and one agent client cert, written as PEM files.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

pub const AGENT_ID: &str = "agent-1";

impl TestPki {
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Lasect test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().expect("generate server key");
        let mut server = CertificateParams::new(vec![
            "lasect-ingest".to_string(),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .expect("server params");
        server
            .distinguished_name
            .push(DnType::CommonName, "lasect-ingest");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server
            .signed_by(&server_key, &issuer)
            .expect("sign server cert");

        let agent_key = KeyPair::generate().expect("generate agent key");
        let mut agent = CertificateParams::new(Vec::<String>::new()).expect("agent params");
        agent.distinguished_name.push(DnType::CommonName, AGENT_ID);
        agent.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let agent_cert = agent
            .signed_by(&agent_key, &issuer)
            .expect("sign agent cert");

        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write PEM file");
        };
        write("ca.pem", &ca_cert.pem());
        write("agent.pem", &agent_cert.pem());
        write("agent.key", &agent_key.serialize_pem());
        Self {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.path("ca.pem")
    }
    pub fn cert_file(&self) -> PathBuf {
        self.path("agent.pem")
    }
    pub fn key_file(&self) -> PathBuf {
        self.path("agent.key")
    }
}

/// A valid agent config (TOML) using `pki`'s files, one instance `main`
/// with `dsn`, the state in `state_dir`.
pub fn config_toml(pki: &TestPki, state_dir: &Path, endpoint: &str, dsn: &str) -> String {
    format!(
        r#"state_dir = "{state}"

[ingest]
endpoint = "{endpoint}"
server_name = "lasect-ingest"

[tls]
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"

[collect]
interval_secs = 10
host = true

[sender]
max_batches_in_memory = 8640

[[instances]]
name = "main"
dsn = "{dsn}"
"#,
        state = state_dir.display(),
        ca = pki.ca_file().display(),
        cert = pki.cert_file().display(),
        key = pki.key_file().display(),
    )
}

pub mod ingest;
