//! Agent configuration: parsing, unknown keys, and one error per bad field.

use crate::support;

use lasect_agent::config::{AgentConfig, ConfigError, Dsn};
use lasect_agent::control_config::ControlConfig;
use support::{TestPki, config_toml};

const DSN: &str = "host=/var/run/postgresql dbname=postgres user=lasect_agent password=hunter2";

fn base(pki: &TestPki) -> String {
    config_toml(
        pki,
        &pki.path("state"),
        "https://ingest.example.com:7443",
        DSN,
    )
}

/// Every error `validate()` reports for `toml`, as `field: message`.
fn errors(toml: &str) -> Vec<String> {
    let loaded = AgentConfig::from_toml_str(toml).expect("parses");
    match loaded.config.validate() {
        Ok(()) => Vec::new(),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

#[track_caller]
fn assert_one_error(toml: &str, field: &str, needle: &str) {
    let errors = errors(toml);
    assert_eq!(
        errors.len(),
        1,
        "expected exactly one error, got {errors:?}"
    );
    let prefix = format!("{field}: ");
    assert!(
        errors[0].starts_with(&prefix) && errors[0].contains(needle),
        "{:?} should name {field:?} and mention {needle:?}",
        errors[0]
    );
    assert!(
        !errors[0].contains("hunter2"),
        "leaked the password: {errors:?}"
    );
}

#[test]
fn good_file_parses_and_validates() {
    let pki = TestPki::new();
    let loaded = AgentConfig::from_toml_str(&base(&pki)).expect("parses");
    assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
    let c = loaded.config;
    c.validate().expect("valid");
    assert_eq!(c.ingest.endpoint, "https://ingest.example.com:7443");
    assert_eq!(c.tls_server_name().as_deref(), Some("lasect-ingest"));
    assert_eq!(c.collect.interval_secs, 10);
    assert!(c.collect.host);
    assert_eq!(c.sender.max_batches_in_memory, 8640);
    assert_eq!(c.instances.len(), 1);
    assert_eq!(c.instances[0].name, "main");
    assert_eq!(c.instances[0].dsn.expose_secret(), DSN);
}

#[test]
fn defaults_apply_and_server_name_falls_back_to_the_endpoint_host() {
    let pki = TestPki::new();
    let toml = format!(
        r#"
[ingest]
endpoint = "https://ingest.example.com:7443"
[tls]
ca_file = "{}"
cert_file = "{}"
key_file = "{}"
[[instances]]
name = "main"
dsn = "host=/tmp user=x"
"#,
        pki.ca_file().display(),
        pki.cert_file().display(),
        pki.key_file().display()
    );
    let c = AgentConfig::from_toml_str(&toml).expect("parses").config;
    c.validate().expect("valid");
    assert_eq!(c.state_dir.to_str(), Some("/var/lib/lasect-agent"));
    assert_eq!(c.collect.interval_secs, 10);
    assert!(c.collect.host);
    assert_eq!(c.sender.max_batches_in_memory, 8640);
    assert_eq!(c.tls_server_name().as_deref(), Some("ingest.example.com"));
}

#[test]
fn unknown_keys_are_warnings_not_errors() {
    let pki = TestPki::new();
    let toml = format!("future_top_level = 1\n{}", base(&pki))
        .replace("[collect]", "[collect]\nstatements = true")
        .replace("[sender]", "[logs]\npath = \"/x\"\n\n[sender]");
    let loaded = AgentConfig::from_toml_str(&toml).expect("unknown keys must not fail parsing");
    loaded.config.validate().expect("still valid");
    let mut keys = loaded.unknown_keys;
    keys.sort();
    assert_eq!(
        keys,
        ["collect.statements", "future_top_level", "logs.path"]
    );
}

#[test]
fn secrets_never_print() {
    let pki = TestPki::new();
    let c = AgentConfig::from_toml_str(&base(&pki))
        .expect("parses")
        .config;
    assert_eq!(format!("{:?}", Dsn::new("password=x")), "***");
    assert_eq!(Dsn::new("password=x").to_string(), "***");
    for text in [format!("{c:?}"), c.summary()] {
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("lasect_agent"), "{text}");
    }
    assert!(c.summary().contains("instances=[main]"), "{}", c.summary());
}

#[test]
fn endpoint_must_be_https() {
    let pki = TestPki::new();
    let toml = base(&pki).replace("https://ingest", "http://ingest");
    assert_one_error(&toml, "ingest.endpoint", "https://");
}

#[test]
fn endpoint_must_be_a_url_with_a_host() {
    let pki = TestPki::new();
    for bad in ["not a url", "https://", "", "https://host:7443/path"] {
        let toml = base(&pki).replace("https://ingest.example.com:7443", bad);
        assert_one_error(&toml, "ingest.endpoint", "");
    }
}

#[test]
fn server_name_must_be_a_dns_name_or_ip() {
    let pki = TestPki::new();
    let toml = base(&pki).replace(
        "server_name = \"lasect-ingest\"",
        "server_name = \"not a name!\"",
    );
    assert_one_error(&toml, "ingest.server_name", "not a valid DNS name");
}

#[test]
fn missing_tls_files_are_named() {
    let pki = TestPki::new();
    let toml = base(&pki);
    for (file, field) in [
        ("ca.pem", "tls.ca_file"),
        ("agent.pem", "tls.cert_file"),
        ("agent.key", "tls.key_file"),
    ] {
        let missing = toml.replace(file, "missing.pem");
        assert_one_error(&missing, field, "cannot read");
    }
}

#[test]
fn tls_files_must_hold_the_right_pem() {
    let pki = TestPki::new();
    std::fs::write(pki.path("junk.pem"), "not pem at all").expect("write junk");
    let toml = base(&pki);
    // A key where a certificate belongs and vice versa.
    assert_one_error(
        &toml.replace("ca.pem", "agent.key"),
        "tls.ca_file",
        "no PEM certificate",
    );
    assert_one_error(
        &toml.replace("agent.pem", "junk.pem"),
        "tls.cert_file",
        "no PEM certificate",
    );
    assert_one_error(
        &toml.replace("agent.key", "ca.pem"),
        "tls.key_file",
        "no PEM private key",
    );
}

#[test]
fn interval_must_be_in_range() {
    let pki = TestPki::new();
    for bad in ["0", "3601", "100000000"] {
        let toml = base(&pki).replace("interval_secs = 10", &format!("interval_secs = {bad}"));
        assert_one_error(&toml, "collect.interval_secs", "out of range 1..=3600");
    }
    let toml = base(&pki).replace("interval_secs = 10", "interval_secs = 3600");
    assert_eq!(errors(&toml), Vec::<String>::new());
}

#[test]
fn negative_or_mistyped_values_are_parse_errors_naming_the_key() {
    let pki = TestPki::new();
    for bad in ["-1", "\"10s\"", "1.5"] {
        let toml = base(&pki).replace("interval_secs = 10", &format!("interval_secs = {bad}"));
        let err = AgentConfig::from_toml_str(&toml).expect_err("must not parse");
        assert!(err.to_string().contains("interval_secs"), "{err}");
    }
}

#[test]
fn max_batches_in_memory_must_be_positive() {
    let pki = TestPki::new();
    let toml = base(&pki).replace("max_batches_in_memory = 8640", "max_batches_in_memory = 0");
    assert_one_error(&toml, "sender.max_batches_in_memory", "out of range");
}

#[test]
fn spool_sender_window_and_metrics_settings_are_checked() {
    let pki = TestPki::new();
    let c = AgentConfig::from_toml_str(&base(&pki))
        .expect("parses")
        .config;
    assert_eq!(
        (c.sender.window, c.spool.max_bytes, c.metrics.listen),
        (4, 1 << 30, None)
    );
    let with = |extra: &str| format!("{}{extra}", base(&pki));
    let good = with(
        "[spool]\nmax_bytes = 1048576\nfsync_interval_ms = 500\n[metrics]\nlisten = \"127.0.0.1:9187\"\n",
    );
    assert_eq!(errors(&good), Vec::<String>::new());
    let c = AgentConfig::from_toml_str(&good).expect("parses").config;
    assert_eq!(
        c.metrics.listen,
        Some("127.0.0.1:9187".parse().expect("addr"))
    );
    assert_eq!(
        errors(&with("[spool]\nfsync = \"every_batch\"\n")),
        Vec::<String>::new()
    );
    assert_one_error(
        &with("[spool]\nfsync = \"sometimes\"\n"),
        "spool.fsync",
        "not supported",
    );
    assert_one_error(
        &with("[spool]\nfsync = \"every_batch\"\nfsync_interval_ms = 5\n"),
        "spool.fsync",
        "not both",
    );
    assert_one_error(
        &with("[spool]\nfsync_interval_ms = 0\n"),
        "spool.fsync_interval_ms",
        "out of range",
    );
    assert_one_error(
        &with("[spool]\nmax_bytes = 100\n"),
        "spool.max_bytes",
        "minimum",
    );
    for bad in ["0", "65"] {
        let toml = base(&pki).replace(
            "max_batches_in_memory = 8640",
            &format!("max_batches_in_memory = 8640\nwindow = {bad}"),
        );
        assert_one_error(&toml, "sender.window", "out of range 1..=64");
    }
    let err = AgentConfig::from_toml_str(&with("[metrics]\nlisten = \"nowhere\"\n"))
        .expect_err("not an address");
    assert!(err.to_string().contains("listen"), "{err}");
}

#[test]
fn at_least_one_instance() {
    let pki = TestPki::new();
    let toml = base(&pki);
    let cut = toml.find("[[instances]]").expect("has instances");
    assert_one_error(&toml[..cut], "instances", "no instances configured");
}

#[test]
fn instance_names_are_checked_and_unique() {
    let pki = TestPki::new();
    let dup = format!(
        "{}\n[[instances]]\nname = \"main\"\ndsn = \"host=/tmp user=x\"\n",
        base(&pki)
    );
    assert_one_error(&dup, "instances[1].name", "duplicate name \"main\"");
    for bad in ["", "-main", "has space", "ümlaut", &"x".repeat(64)] {
        let toml = base(&pki).replace("name = \"main\"", &format!("name = \"{bad}\""));
        assert_one_error(&toml, "instances[0].name", "must match");
    }
    let longest = "x".repeat(63);
    let toml = base(&pki).replace("name = \"main\"", &format!("name = \"{longest}\""));
    assert_eq!(errors(&toml), Vec::<String>::new());
}

#[test]
fn dsn_must_parse_and_name_a_host_and_user() {
    let pki = TestPki::new();
    for (bad, needle) in [
        ("host=/tmp user=x password='hunter2", "cannot parse"),
        (
            "host=/tmp user=x port=notaport password=hunter2",
            "cannot parse",
        ),
        ("bogus_option=1 password=hunter2", "cannot parse"),
        ("dbname=postgres user=x password=hunter2", "no host"),
        ("host=/tmp dbname=postgres password=hunter2", "no user"),
        (
            "host=db user=x sslmode=verify-full sslrootcert=/nonexistent/ca.pem password=hunter2",
            "cannot read sslrootcert /nonexistent/ca.pem",
        ),
        (
            "host=db user=x sslmode=verify-everything password=hunter2",
            "sslmode `verify-everything` is not one of",
        ),
    ] {
        let toml = base(&pki).replace(DSN, bad);
        assert_one_error(&toml, "instances[0].dsn", needle);
    }
    // URL form is fine too.
    let toml = base(&pki).replace(DSN, "postgresql://x:hunter2@127.0.0.1:5432/postgres");
    assert_eq!(errors(&toml), Vec::<String>::new());
}

#[test]
fn all_problems_are_reported_at_once() {
    let pki = TestPki::new();
    let toml = base(&pki)
        .replace("https://", "http://")
        .replace("interval_secs = 10", "interval_secs = 0")
        .replace("ca.pem", "missing.pem");
    let errors = errors(&toml);
    let fields: Vec<&str> = errors
        .iter()
        .map(|e| e.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(
        fields,
        ["ingest.endpoint", "tls.ca_file", "collect.interval_secs"]
    );
}

#[test]
fn broken_files_give_clear_errors() {
    let pki = TestPki::new();
    let err = AgentConfig::load(&pki.path("nope.toml")).expect_err("missing file");
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err.to_string().contains("nope.toml"), "{err}");

    let path = pki.path("broken.toml");
    std::fs::write(&path, "[ingest\nendpoint = ").expect("write");
    let err = AgentConfig::load(&path).expect_err("syntax error");
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("broken.toml"), "{err}");

    // A missing required section is an error, not a default.
    let toml = base(&pki);
    let start = toml.find("[tls]").expect("has tls");
    let end = toml.find("[collect]").expect("has collect");
    let without_tls = format!("{}{}", &toml[..start], &toml[end..]);
    let err = AgentConfig::from_toml_str(&without_tls).expect_err("tls is required");
    assert!(err.to_string().contains("tls"), "{err}");

    std::fs::write(&path, [0xff, 0xfe, 0x00]).expect("write");
    let err = AgentConfig::load(&path).expect_err("not UTF-8");
    assert!(err.to_string().contains("broken.toml"), "{err}");
}

#[test]
fn per_family_intervals_are_checked() {
    let pki = TestPki::new();
    let good = base(&pki).replace(
        "interval_secs = 10",
        "interval_secs = 10\nintervals = { statement = 1, host = 60 }",
    );
    assert_eq!(errors(&good), Vec::<String>::new());
    let typo = base(&pki).replace(
        "interval_secs = 10",
        "interval_secs = 10\nintervals = { statements = 5 }",
    );
    assert_one_error(&typo, "collect.intervals.statements", "unknown family");
    let zero = format!("{}intervals = {{ statement = 0 }}\n", base(&pki));
    assert_one_error(&zero, "instances[0].intervals.statement", "out of range");
}

#[test]
fn connection_budget_and_database_patterns_are_checked() {
    let pki = TestPki::new();
    let good = base(&pki).replace(
        "interval_secs = 10",
        "interval_secs = 10\nmax_connections = 3\ndatabases = { include = [\"app*\"], exclude = [\"*_tmp\"] }",
    );
    assert_eq!(errors(&good), Vec::<String>::new());
    let zero = base(&pki).replace(
        "interval_secs = 10",
        "interval_secs = 10\nmax_connections = 0",
    );
    assert_one_error(&zero, "collect.max_connections", "out of range 1..=16");
    let empty = format!("{}databases = {{ exclude = [\"\"] }}\n", base(&pki));
    assert_one_error(&empty, "instances[0].databases.exclude[0]", "1..=63 bytes");
    let many = format!("{}max_connections = 17\n", base(&pki));
    assert_one_error(&many, "instances[0].max_connections", "out of range");
}

/// The example shipped in packaging/ must stay in step with the code: every
/// key in it is one the agent knows.
#[test]
fn packaged_example_uses_only_known_keys() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/etc/lasect/agent.toml"
    );
    let text = std::fs::read_to_string(path).expect("read packaged example");
    let loaded = AgentConfig::from_toml_str(&text).expect("packaged example parses");
    assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
    assert_eq!(loaded.config.instances.len(), 1);
}

#[test]
fn custom_metrics_are_checked() {
    let pki = TestPki::new();
    let with = |block: &str| base(&pki).replace("host = true\n", &format!("host = true\n{block}"));
    let good = with(
        "[[collect.custom]]\nname = \"queue_depth\"\nsql = \"SELECT q, count(*) AS n FROM jobs GROUP BY q\"\n\
         labels = [\"q\"]\nvalues = [\"n\"]\ninterval_secs = 30\ndatabases = [\"app\"]\n",
    );
    assert_eq!(errors(&good), Vec::<String>::new());
    let loaded = AgentConfig::from_toml_str(&good).expect("parses");
    assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
    let custom = &loaded.config.collect.custom[0];
    assert_eq!((custom.interval_secs, custom.timeout_secs), (30, 5));

    let empty_sql = with("[[collect.custom]]\nname = \"q\"\nsql = \" \"\nvalues = [\"n\"]\n");
    assert_one_error(&empty_sql, "collect.custom[0].sql", "must not be empty");
    let no_values = with("[[collect.custom]]\nname = \"q\"\nsql = \"SELECT 1\"\n");
    assert_one_error(&no_values, "collect.custom[0].values", "at least one");
    let overlap = with(
        "[[collect.custom]]\nname = \"q\"\nsql = \"SELECT 1 AS n\"\nlabels = [\"n\"]\nvalues = [\"n\"]\n",
    );
    assert_one_error(&overlap, "collect.custom[0].values[0]", "named twice");
    let slow = with(
        "[[collect.custom]]\nname = \"q\"\nsql = \"SELECT 1 AS n\"\nvalues = [\"n\"]\ninterval_secs = 7200\n",
    );
    assert_one_error(&slow, "collect.custom[0].interval_secs", "out of range");
    let bad_name =
        with("[[collect.custom]]\nname = \"Q Q\"\nsql = \"SELECT 1 AS n\"\nvalues = [\"n\"]\n");
    assert_one_error(&bad_name, "collect.custom[0].name", "must match");
}

/// The commented custom metric of the packaged example is valid as written.
#[test]
fn packaged_custom_metric_example_is_valid() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/etc/lasect/agent.toml"
    );
    let text = std::fs::read_to_string(path).expect("read packaged example");
    let start = text.find("# [[collect.custom]]").expect("custom example");
    let block: String = text[start..]
        .lines()
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let pki = TestPki::new();
    let toml = base(&pki).replace("host = true\n", &format!("host = true\n{block}"));
    assert_eq!(errors(&toml), Vec::<String>::new());
    let loaded = AgentConfig::from_toml_str(&toml).expect("parses");
    assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
    assert_eq!(loaded.config.collect.custom.len(), 1);
}

/// `[tls] cert_file`/`key_file`: both (they win), or neither (the enrolled
/// identity in state_dir, which must exist), never one alone.
#[test]
fn client_certificate_comes_from_files_or_the_enrolled_identity() {
    use lasect_agent::identity::{ClientIdentity, IdentityStore};

    let pki = TestPki::new();
    let toml = base(&pki);
    let cert_line = format!("cert_file = \"{}\"\n", pki.cert_file().display());
    let key_line = format!("key_file = \"{}\"\n", pki.key_file().display());
    assert!(toml.contains(&cert_line) && toml.contains(&key_line));
    let loaded = AgentConfig::from_toml_str(&toml).expect("parses").config;
    assert!(matches!(
        loaded.client_identity(),
        ClientIdentity::Files { .. }
    ));

    assert_one_error(
        &toml.replace(&key_line, ""),
        "tls.key_file",
        "together with tls.cert_file",
    );
    let neither = toml.replace(&cert_line, "").replace(&key_line, "");
    assert_one_error(&neither, "tls.cert_file", "lasect-agent enroll");

    // Once enrolled, the config without files is valid and uses the identity.
    IdentityStore::new(&pki.path("state"))
        .save("01", &lasect_pki::SecretPem::new("key"), "certificate")
        .expect("store an identity");
    let config = AgentConfig::from_toml_str(&neither).expect("parses").config;
    config.validate().expect("valid with an enrolled identity");
    assert!(matches!(
        config.client_identity(),
        ClientIdentity::Enrolled(_)
    ));
}

#[test]
fn logs_section_defaults_and_bounds() {
    let pki = TestPki::new();
    let c = AgentConfig::from_toml_str(&base(&pki))
        .expect("parses")
        .config;
    assert!(
        c.logs.enabled && c.logs.redact,
        "on and redacting by default"
    );
    assert_eq!(
        (c.logs.max_line_bytes, c.logs.max_events_per_interval),
        (8192, 1000)
    );
    let with = |body: &str| base(&pki).replace("[sender]", &format!("[logs]\n{body}\n[sender]"));
    assert_one_error(
        &with("max_line_bytes = 10"),
        "logs.max_line_bytes",
        "out of range",
    );
    assert_one_error(
        &with("max_events_per_interval = 0"),
        "logs.max_events_per_interval",
        "out of range",
    );
    let off = AgentConfig::from_toml_str(&with("enabled = false\nredact = false"))
        .expect("parses")
        .config;
    off.validate().expect("valid");
    assert!(!off.logs.enabled && !off.logs.redact);
}

#[test]
fn run_dsn_and_allow_privileged_runs_parse_with_safe_defaults() {
    let pki = TestPki::new();
    let c = AgentConfig::from_toml_str(&base(&pki))
        .expect("parses")
        .config;
    assert!(c.instances[0].run_dsn.is_none());
    assert!(!c.instances[0].allow_privileged_runs);
    let run_dsn = "host=/var/run/postgresql dbname=postgres user=lasect_run password=hunter2";
    let toml = format!(
        "{}run_dsn = \"{run_dsn}\"\nallow_privileged_runs = true\n",
        base(&pki)
    );
    let loaded = AgentConfig::from_toml_str(&toml).expect("parses");
    assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
    loaded.config.validate().expect("valid");
    let instance = &loaded.config.instances[0];
    assert_eq!(
        instance.run_dsn.as_ref().map(Dsn::expose_secret),
        Some(run_dsn)
    );
    assert!(instance.allow_privileged_runs);
    assert!(
        !format!("{instance:?}").contains("hunter2"),
        "the run_dsn's password is printed"
    );
}

#[test]
fn a_bad_run_dsn_names_its_field_and_hides_the_password() {
    let pki = TestPki::new();
    for (bad, needle) in [
        ("host=/tmp user=x password='hunter2", "cannot parse"),
        ("dbname=postgres user=x password=hunter2", "no host"),
        ("host=/tmp dbname=postgres password=hunter2", "no user"),
    ] {
        let toml = format!("{}run_dsn = \"{bad}\"\n", base(&pki));
        assert_one_error(&toml, "instances[0].run_dsn", needle);
    }
    let toml = format!("{}allow_privileged_runs = \"yes\"\n", base(&pki));
    let err = AgentConfig::from_toml_str(&toml).expect_err("must not parse");
    assert!(err.to_string().contains("allow_privileged_runs"), "{err}");
}

#[test]
fn the_default_allow_list_is_read_only_and_table_data_is_a_class() {
    let pki = TestPki::new();
    let c = AgentConfig::from_toml_str(&base(&pki))
        .expect("parses")
        .config;
    // What the default holds is the unit tests' matter (`control_config`); here: a file
    // without `[control]` gets it.
    assert_eq!(c.control.allow, ControlConfig::default().allow);
    let toml = base(&pki).replace(
        "[sender]",
        "[control]\nallow = [\"schema\", \"table_data\", \"tables\"]\n\n[sender]",
    );
    assert_one_error(&toml, "control.allow", "unknown operation class `tables`");
}
