use super::*;

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("create temp dir");
        for name in ["ca.pem", "ingest.pem", "ingest.key"] {
            std::fs::write(dir.path().join(name), "x").expect("write placeholder file");
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn tls(&self) -> String {
        format!(
            "[tls]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
            self.path("ca.pem"),
            self.path("ingest.pem"),
            self.path("ingest.key")
        )
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("ingest.toml"), DsnInputs::default())
}

fn field_errors(err: ConfigError) -> Vec<FieldError> {
    match err {
        ConfigError::Invalid(errors) => errors,
        other => panic!("expected field errors, got {other}"),
    }
}

#[test]
fn minimal_config_gets_defaults() {
    let files = Files::new();
    let text = format!("store_dsn = \"host=db user=lasect\"\n{}", files.tls());
    let config = parse(&text).expect("valid config");
    assert_eq!(config.listen, "0.0.0.0:7443".parse().expect("addr"));
    assert_eq!(config.limits, Limits::default());
    assert_eq!(config.store, StoreSettings::default());
    assert_eq!(config.limits.max_message_bytes, 4_194_304);
    assert_eq!(config.limits.max_uncompressed_bytes, 33_554_432);
}

#[test]
fn full_config_parses() {
    let files = Files::new();
    let text = format!(
        "listen = \"127.0.0.1:9000\"\nstore_dsn = \"host=db password=hunter2\"\n{}\
         [limits]\nmax_message_bytes = 10\nmax_uncompressed_bytes = 20\nmax_samples_per_batch = 30\n\
         [store]\npool_size = 2\nmaintenance_interval_secs = 60\n",
        files.tls()
    );
    let config = parse(&text).expect("valid config");
    assert_eq!(config.listen.port(), 9000);
    assert_eq!(config.limits.max_samples_per_batch, 30);
    assert_eq!(config.store.pool_size, 2);
    assert_eq!(config.store.maintenance_interval_secs, 60);
    // The password never shows up in Debug output.
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert_eq!(config.store_dsn.to_string(), "***");
}

fn with_env(explicit: bool, env: &str) -> DsnInputs {
    DsnInputs {
        config_explicit: explicit,
        env: Some(Secret::new(env)),
    }
}

#[test]
fn env_dsn_overrides_the_default_file_only() {
    let files = Files::new();
    let text = format!("store_dsn = \"host=file\"\n{}", files.tls());
    let config = Config::from_toml(&text, Path::new("x"), with_env(false, "host=env dbname=l"))
        .expect("valid config");
    assert_eq!(config.store_dsn.expose_secret(), "host=env dbname=l");
    assert_eq!(config.store_dsn_source, DsnSource::Env);
    assert!(!config.env_dsn_ignored);

    // A file named with --config says what the operator meant.
    let config =
        Config::from_toml(&text, Path::new("x"), with_env(true, "host=env")).expect("valid config");
    assert_eq!(config.store_dsn.expose_secret(), "host=file");
    assert_eq!(config.store_dsn_source, DsnSource::ConfigFile("x".into()));
    assert!(config.env_dsn_ignored);
    let line = config.describe_store_dsn();
    assert!(
        line.contains("from store_dsn of --config x (host=file)"),
        "{line}"
    );
    assert!(
        line.contains("LASECT_STORE_DSN is set but not used"),
        "{line}"
    );

    // The env variable alone is enough, even with --config.
    let config = Config::from_toml(&files.tls(), Path::new("x"), with_env(true, "host=env"))
        .expect("valid config");
    assert_eq!(config.store_dsn.expose_secret(), "host=env");
    assert_eq!(config.store_dsn_source, DsnSource::Env);

    let config = parse(&text).expect("valid config");
    assert_eq!(
        config.store_dsn_source,
        DsnSource::DefaultConfigFile("ingest.toml".into())
    );
}

#[test]
fn every_bad_field_is_reported() {
    let files = Files::new();
    let text = format!(
        "listen = \"not-an-address\"\n\
         [tls]\nca_file = \"/nonexistent/ca.pem\"\ncert_file = {:?}\nkey_file = {:?}\n\
         [limits]\nmax_message_bytes = 0\nmax_uncompressed_bytes = 0\nmax_samples_per_batch = 0\n\
         [store]\npool_size = 0\nmaintenance_interval_secs = 0\n",
        files.path("ingest.pem"),
        files.dir.path().display().to_string(),
    );
    let err = parse(&text).expect_err("invalid config");
    let message = err.to_string();
    let fields: Vec<_> = field_errors(err).into_iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        [
            "listen",
            "store_dsn",
            "tls.ca_file",
            "tls.key_file",
            "limits.max_message_bytes",
            "limits.max_uncompressed_bytes",
            "limits.max_samples_per_batch",
            "store.pool_size",
            "store.maintenance_interval_secs",
        ]
    );
    assert!(message.contains("/nonexistent/ca.pem"), "{message}");
    assert!(message.contains("not-an-address"), "{message}");
    assert!(message.contains("is not a regular file"), "{message}");
}

#[test]
fn bad_dsn_is_reported_without_its_text() {
    let files = Files::new();
    let text = format!(
        "store_dsn = \"host=db password=hunter2 port=notaport\"\n{}",
        files.tls()
    );
    let err = parse(&text).expect_err("invalid dsn");
    let message = err.to_string();
    assert!(message.contains("store_dsn"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");

    let text = format!("store_dsn = \"  \"\n{}", files.tls());
    let errors = field_errors(parse(&text).expect_err("empty dsn"));
    assert_eq!(errors[0].field, "store_dsn");
}

#[test]
fn unknown_keys_are_refused() {
    let files = Files::new();
    let text = format!(
        "store_dsn = \"host=db\"\nlisten_addr = \"x\"\n{}",
        files.tls()
    );
    let err = parse(&text).expect_err("unknown key");
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    let message = crate::ErrorChain(&err).to_string();
    assert!(message.contains("listen_addr"), "{message}");

    let text = format!(
        "store_dsn = \"host=db\"\n{}[limits]\nmax_mesage_bytes = 5\n",
        files.tls()
    );
    let err = parse(&text).expect_err("misspelt limit");
    let message = crate::ErrorChain(&err).to_string();
    assert!(message.contains("max_mesage_bytes"), "{message}");
}

#[test]
fn malformed_files_are_parse_errors() {
    for text in [
        "",                                 // no [tls]
        "listen = ",                        // not TOML
        "store_dsn = 5\n[tls]\n",           // wrong type
        "[limits]\nmax_message_bytes = -1", // negative size
    ] {
        let err = parse(text).expect_err("malformed");
        assert!(matches!(err, ConfigError::Parse { .. }), "{text:?}: {err}");
        assert!(err.to_string().contains("ingest.toml"), "{err}");
    }
}

#[test]
fn missing_file_names_its_path() {
    let err = Config::load(Path::new("/nonexistent/ingest.toml"), DsnInputs::default())
        .expect_err("missing");
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string().contains("/nonexistent/ingest.toml"),
        "{err}"
    );
}

#[test]
fn admission_rate_and_metrics_settings_are_checked() {
    let files = Files::new();
    let dsn = "store_dsn = \"host=db\"\n";
    // Absent [metrics]: no listener; present: loopback by default.
    let config = parse(&format!("{dsn}{}", files.tls())).expect("valid");
    assert_eq!(config.metrics_listen, None);
    assert_eq!(config.limits.max_inflight_batches, 1024);
    assert_eq!(config.limits.max_batches_per_agent_per_sec, 20);
    let config = parse(&format!("{dsn}{}[metrics]\n", files.tls())).expect("valid");
    assert_eq!(
        config.metrics_listen,
        Some("127.0.0.1:9188".parse().expect("addr"))
    );

    let text = format!(
        "{dsn}{}[limits]\nmax_inflight_batches = 0\nmax_uncompressed_bytes = 2048\n\
         max_inflight_bytes = 1024\nmax_batches_per_agent_per_sec = 0\nagent_burst_batches = 0\n\
         [metrics]\nlisten = \"localhost\"\n",
        files.tls()
    );
    let errors = field_errors(parse(&text).expect_err("invalid limits"));
    let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        [
            "limits.max_inflight_batches",
            "limits.max_batches_per_agent_per_sec",
            "limits.agent_burst_batches",
            "limits.max_inflight_bytes",
            "metrics.listen",
        ]
    );
    assert!(errors[3].reason.contains("2048"), "{:?}", errors[3]);

    let text = format!(
        "{dsn}{}[limits]\nmax_inflight_batches = 100001\n",
        files.tls()
    );
    let errors = field_errors(parse(&text).expect_err("absurd limit"));
    assert_eq!(errors[0].field, "limits.max_inflight_batches");

    let text = format!("{dsn}{}[metrics]\nport = 1\n", files.tls());
    assert!(matches!(
        parse(&text).expect_err("unknown key"),
        ConfigError::Parse { .. }
    ));
}

/// The example shipped in packaging/ must stay valid: unknown keys are
/// errors, and every value in it passes validation.
#[test]
fn packaged_example_is_valid() {
    let files = Files::new();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/etc/lasect/ingest.toml"
    );
    let text = std::fs::read_to_string(path).expect("read packaged example");
    let text = text.replace(
        "/etc/lasect/tls/",
        &format!("{}/", files.dir.path().display()),
    );
    let config = parse(&text).expect("packaged example validates");
    assert_eq!(config.limits.max_inflight_batches, 1024);
}

#[test]
fn enrollment_and_agents_sections_are_optional_and_checked() {
    let files = Files::new();
    let base = format!("store_dsn = \"host=db user=lasect\"\n{}", files.tls());
    let config = parse(&base).expect("valid config");
    assert_eq!(config.enrollment, None);
    assert_eq!(config.agents.refresh_interval_secs, 5);

    let with = format!(
        "{base}[enrollment]\nca_cert = {:?}\nca_key = {:?}\n",
        files.path("ca.pem"),
        files.path("ingest.key")
    );
    let enrollment = parse(&with)
        .expect("valid enrollment")
        .enrollment
        .expect("enrollment section");
    assert_eq!(enrollment.cert_validity_secs, 7 * 24 * 3600);

    let bad = format!(
        "{base}[agents]\nrefresh_interval_secs = 0\n\
         [enrollment]\nca_cert = {:?}\nca_key = \"/nonexistent/ca.key\"\ncert_validity_secs = 1\n",
        files.path("ca.pem")
    );
    let fields: Vec<&str> = field_errors(parse(&bad).expect_err("invalid"))
        .iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(
        fields,
        [
            "agents.refresh_interval_secs",
            "enrollment.ca_key",
            "enrollment.cert_validity_secs"
        ]
    );
}
