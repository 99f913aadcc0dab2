//! `api.toml` parsing and validation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use lasect_api::config::{ApiConfig, ConfigError, DsnInputs, DsnSource, Transport};

fn parse(text: &str) -> Result<ApiConfig, ConfigError> {
    ApiConfig::from_toml(text, Path::new("api.toml"))
}

fn invalid_fields(text: &str) -> Vec<(&'static str, String)> {
    let config = parse(text).expect("parses");
    match config.validate() {
        Err(ConfigError::Invalid(fields)) => {
            fields.into_iter().map(|f| (f.field, f.message)).collect()
        }
        other => panic!("expected invalid fields, got {other:?}"),
    }
}

#[test]
fn minimal_config_gets_defaults() {
    let config = parse(r#"store_dsn = "host=127.0.0.1 dbname=lasect""#).expect("parses");
    config.validate().expect("valid");
    assert_eq!(
        config.listen,
        "127.0.0.1:8443".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(
        config.transport(),
        Transport::Https {
            cert_file: PathBuf::from("/etc/lasect/tls/api.pem"),
            key_file: PathBuf::from("/etc/lasect/tls/api.key"),
        }
    );
}

#[test]
fn full_config_parses() {
    let config = parse(
        r#"
        listen = "0.0.0.0:9443"
        store_dsn = "postgres://lasect:pw@db/lasect"
        [tls]
        cert_file = "/tmp/api.pem"
        key_file = "/tmp/api.key"
        allow_plaintext = false
        "#,
    )
    .expect("parses");
    config.validate().expect("valid");
    assert_eq!(config.listen.port(), 9443);
    assert!(
        !format!("{config:?}").contains("pw@"),
        "DSN must not be printed"
    );
}

#[test]
fn plaintext_is_allowed_on_loopback_only() {
    let ok =
        parse("listen = \"[::1]:8080\"\nstore_dsn = \"host=x\"\n[tls]\nallow_plaintext = true\n")
            .expect("parses");
    ok.validate().expect("plaintext on loopback is valid");
    assert_eq!(ok.transport(), Transport::PlainHttp);

    let fields = invalid_fields(
        "listen = \"0.0.0.0:8080\"\nstore_dsn = \"host=x\"\n[tls]\nallow_plaintext = true\n",
    );
    assert_eq!(fields.len(), 1, "{fields:?}");
    assert_eq!(fields[0].0, "tls.allow_plaintext");
    assert!(fields[0].1.contains("loopback"), "{}", fields[0].1);
}

#[test]
fn every_bad_field_is_reported() {
    let fields = invalid_fields("[tls]\ncert_file = \"\"\nkey_file = \"\"\n");
    let names: Vec<_> = fields.iter().map(|f| f.0).collect();
    assert_eq!(names, ["store_dsn", "tls.cert_file", "tls.key_file"]);
    assert!(fields[0].1.contains("LASECT_STORE_DSN"), "{}", fields[0].1);
}

#[test]
fn bad_dsn_is_reported_without_its_value() {
    let fields = invalid_fields(
        r#"store_dsn = "host=a password=hunter2 sslmode=verify-full sslrootcert=/nonexistent/ca.pem""#,
    );
    assert_eq!(fields[0].0, "store_dsn");
    assert!(
        fields[0]
            .1
            .contains("cannot read sslrootcert /nonexistent/ca.pem")
            && !fields[0].1.contains("hunter2"),
        "{}",
        fields[0].1
    );
    let fields = invalid_fields(r#"store_dsn = "host=a password=hunter2 what=1""#);
    assert!(!fields[0].1.contains("hunter2"), "{}", fields[0].1);
}

fn host(config: &ApiConfig) -> String {
    config
        .store_dsn
        .as_ref()
        .expect("dsn set")
        .pg_connect_options()
        .expect("valid dsn")
        .get_host()
        .to_owned()
}

/// Loads `text` written to a file with `inputs`.
fn load(text: &str, inputs: DsnInputs) -> Result<ApiConfig, ConfigError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("api.toml");
    std::fs::write(&path, text).expect("write config");
    ApiConfig::load(&path, inputs)
}

fn inputs(flag: Option<&str>, explicit: bool, env: Option<&str>) -> DsnInputs {
    DsnInputs {
        flag: flag.map(str::to_owned),
        config_explicit: explicit,
        env: env.map(str::to_owned),
    }
}

#[test]
fn env_dsn_overrides_the_default_file_only() {
    let file = r#"store_dsn = "host=from-file""#;
    let env = Some("host=from-env dbname=x");
    let config = load(file, inputs(None, false, env)).expect("valid");
    assert_eq!(host(&config), "from-env");
    assert_eq!(config.store_dsn_source, Some(DsnSource::Env));
    assert!(!config.env_dsn_ignored);

    // A file named with --config says what the operator meant; the environment lost.
    let config = load(file, inputs(None, true, env)).expect("valid");
    assert_eq!(host(&config), "from-file");
    assert!(matches!(
        config.store_dsn_source,
        Some(DsnSource::ConfigFile(_))
    ));
    assert!(config.env_dsn_ignored);

    // The flag beats both.
    let config = load(file, inputs(Some("host=from-flag"), true, env)).expect("valid");
    assert_eq!(host(&config), "from-flag");
    assert_eq!(config.store_dsn_source, Some(DsnSource::Flag));

    // An env DSN also satisfies a file without store_dsn, named or not.
    for explicit in [false, true] {
        let config = load("", inputs(None, explicit, Some("host=h"))).expect("valid with env DSN");
        assert_eq!(host(&config), "h");
    }

    let config = load(file, DsnInputs::default()).expect("valid");
    assert!(matches!(
        config.store_dsn_source,
        Some(DsnSource::DefaultConfigFile(_))
    ));
}

#[test]
fn syntax_errors_unknown_keys_and_bad_types_are_errors() {
    for (text, needle) in [
        ("listen = ", "api.toml"),
        ("lisen = \"127.0.0.1:1\"", "lisen"),
        ("[tls]\nallow_plain = true", "allow_plain"),
        ("listen = \"localhost\"", "listen"),
        ("listen = 8443", "listen"),
        ("[tls]\nallow_plaintext = \"yes\"", "allow_plaintext"),
    ] {
        let err = parse(text).expect_err(text);
        assert!(matches!(err, ConfigError::Parse { .. }), "{text}: {err}");
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
}

#[test]
fn missing_file_is_a_read_error_naming_the_path() {
    let err = ApiConfig::load(
        Path::new("/nonexistent/lasect/api.toml"),
        DsnInputs::default(),
    )
    .expect_err("missing");
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string().contains("/nonexistent/lasect/api.toml"),
        "{err}"
    );
}

/// The example shipped in packaging/ must parse: unknown keys are errors.
#[test]
fn packaged_example_parses() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/etc/lasect/api.toml"
    );
    let text = std::fs::read_to_string(path).expect("read packaged example");
    let config = parse(&text).expect("packaged example parses");
    assert!(!config.tls.allow_plaintext);
}

#[test]
fn auth_section_is_validated() {
    let config =
        parse("store_dsn = \"host=h\"\n[auth]\naccess_token_secs = 5\naudit_retention_days = 0\n")
            .expect("parses");
    let err = config.validate().expect_err("invalid").to_string();
    assert!(err.contains("auth.access_token_secs"), "{err}");
    assert!(err.contains("auth.audit_retention_days"), "{err}");
    assert!(
        parse("[auth]\nbogus = 1\n").is_err(),
        "unknown keys are errors"
    );
    let config = parse("store_dsn = \"host=h\"\n").expect("parses");
    assert_eq!(
        config.auth.jwt_key_path(Path::new("/etc/lasect/api.toml")),
        Path::new("/etc/lasect/jwt.key")
    );
}
