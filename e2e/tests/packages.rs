//! The packages (`scripts/package.sh`, packaging/README.md) and `docker-compose.yml`.
//!
//! The .deb and .rpm files are built once per run from the debug binaries `make test` has
//! already built (`make package` uses release binaries; the packaging is the same), then
//! inspected with `dpkg-deb` and `rpm`, the .debs installed, upgraded, removed and purged in a
//! throwaway root (`dpkg --root` with `--force-script-chrootless`: the maintainer scripts run
//! for real, on that root's /etc), and the systemd units checked by `systemd-analyze`.
//!
//! There is no Docker engine here: the compose file is validated against the Compose
//! specification's JSON schema and checked against the repository (Dockerfiles, mounted
//! configs, ports). `scripts/deps.sh --test` installs what this needs: rpm, systemd, the
//! schema (npm) and a venv with jsonschema and PyYAML.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use lasect_testkit::binary_path;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const SERVICES: [&str; 3] = ["lasect-agent", "lasect-ingest", "lasect-api"];
const PACKAGES: [&str; 4] = ["lasect", "lasect-agent", "lasect-ingest", "lasect-api"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate is in the workspace")
        .to_path_buf()
}

fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{name} is not installed: run `scripts/deps.sh --test` (or `make test`)")
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    text(&run(cmd).stdout)
}

/// The packages of this run, built once for every test of the file.
fn packages() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let _load = crate::support::heavy_blocking();
        for t in ["dpkg-deb", "rpmbuild", "objdump"] {
            tool(t);
        }
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("packages");
        if out.exists() {
            std::fs::remove_dir_all(&out).expect("remove old packages");
        }
        let bindir = binary_path("lasect-agent")
            .parent()
            .expect("binaries have a directory")
            .to_path_buf();
        run(Command::new(repo().join("scripts/package.sh"))
            .arg("--bindir")
            .arg(&bindir)
            .arg("--out")
            .arg(&out)
            .arg("--fast"));
        out
    })
}

fn deb(name: &str) -> PathBuf {
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"));
    packages().join(format!("{name}_{VERSION}-1_{}.deb", arch.trim()))
}

fn rpm(name: &str) -> PathBuf {
    let arch = stdout(Command::new("uname").arg("-m"));
    packages().join(format!("{name}-{VERSION}-1.{}.rpm", arch.trim()))
}

/// `dpkg-deb -c` as path -> (mode string, owner/group).
fn deb_contents(name: &str) -> BTreeMap<String, (String, String)> {
    stdout(Command::new("dpkg-deb").arg("-c").arg(deb(name)))
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields.get(5)?.trim_start_matches('.');
            Some((
                path.to_owned(),
                (fields[0].to_owned(), fields[1].to_owned()),
            ))
        })
        .collect()
}

#[test]
fn every_deb_holds_its_binary_unit_and_config_with_the_workspace_version() {
    for name in PACKAGES {
        let info = stdout(Command::new("dpkg-deb").arg("-I").arg(deb(name)));
        assert!(info.contains(&format!("Package: {name}\n")), "{info}");
        assert!(info.contains(&format!("Version: {VERSION}-1\n")), "{info}");
        assert!(info.contains("Depends: libc6 (>= 2."), "{info}");
        let files = deb_contents(name);
        assert_eq!(
            files.get(&format!("/usr/bin/{name}")),
            Some(&("-rwxr-xr-x".to_owned(), "root/root".to_owned())),
            "{files:?}"
        );
        if name == "lasect" {
            assert!(
                !info.contains("postinst"),
                "the CLI creates no user: {info}"
            );
            assert!(!files.keys().any(|f| f.starts_with("/etc/")), "{files:?}");
            continue;
        }
        let conf = format!("/etc/lasect/{}.toml", name.trim_start_matches("lasect-"));
        // 0640 in the package; postinst gives it the service's group.
        assert_eq!(
            files.get(&conf),
            Some(&("-rw-r-----".to_owned(), "root/root".to_owned())),
            "{files:?}"
        );
        assert_eq!(
            files.get(&format!("/usr/lib/systemd/system/{name}.service")),
            Some(&("-rw-r--r--".to_owned(), "root/root".to_owned())),
            "{files:?}"
        );
        for script in ["postinst", "prerm", "postrm", "conffiles"] {
            assert!(info.contains(script), "{name} has no {script}: {info}");
        }
        let conffiles = stdout(
            Command::new("dpkg-deb")
                .arg("--info")
                .arg(deb(name))
                .arg("conffiles"),
        );
        assert_eq!(conffiles.trim(), conf);
    }
    let agent = stdout(Command::new("dpkg-deb").arg("-I").arg(deb("lasect-agent")));
    assert!(agent.contains("Suggests: pgbackrest"), "{agent}");
    let files = deb_contents("lasect-agent");
    // The drop-in for backups ships inactive: nothing under /etc/systemd or the unit's own
    // .d directory.
    assert_eq!(
        files.get("/usr/share/lasect/database-user.conf"),
        Some(&("-rw-r--r--".to_owned(), "root/root".to_owned())),
        "{files:?}"
    );
    assert!(
        !files.keys().any(|f| f.contains(".service.d/")),
        "{files:?}"
    );
}

/// The version in the package names is the one the packaged binaries print.
#[test]
fn every_packaged_binary_prints_the_workspace_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in PACKAGES {
        run(Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb(name))
            .arg(dir.path()));
        let said = stdout(Command::new(dir.path().join("usr/bin").join(name)).arg("--version"));
        assert_eq!(said.trim(), format!("{name} {VERSION}"));
    }
}

#[test]
fn every_rpm_marks_its_config_noreplace_and_creates_its_user_before_install() {
    tool("rpm");
    for name in PACKAGES {
        let path = rpm(name);
        let info = stdout(Command::new("rpm").args(["-qpil", "--scripts"]).arg(&path));
        assert!(info.contains(&format!("Name        : {name}\n")), "{info}");
        assert!(
            info.contains(&format!("Version     : {VERSION}\n")),
            "{info}"
        );
        assert!(info.contains(&format!("/usr/bin/{name}\n")), "{info}");
        let files = stdout(
            Command::new("rpm")
                .args([
                    "-qp",
                    "--qf",
                    "[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} \
                     %{FILEFLAGS:fflags}\n]",
                ])
                .arg(&path),
        );
        if name == "lasect" {
            assert!(!info.contains("preinstall scriptlet"), "{info}");
            continue;
        }
        let conf = format!("/etc/lasect/{}.toml", name.trim_start_matches("lasect-"));
        // c = config, n = noreplace: an edited file survives an upgrade.
        assert!(
            files.contains(&format!("{conf} -rw-r----- root:{name} cn\n")),
            "{files}"
        );
        assert!(
            files.contains(&format!(
                "/usr/lib/systemd/system/{name}.service -rw-r--r--"
            )),
            "{files}"
        );
        let pre = info
            .split("preinstall scriptlet")
            .nth(1)
            .and_then(|s| s.split("postinstall scriptlet").next())
            .unwrap_or_else(|| panic!("{name} has no %pre: {info}"));
        assert!(pre.contains("useradd") && pre.contains(name), "{pre}");
        assert!(info.contains("systemctl disable --now"), "{info}");
        assert!(info.contains("try-restart"), "{info}");
    }
}

/// A throwaway root with the files dpkg and the shadow tools need, and a `postgres` group
/// as a PostgreSQL package would have made.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        let files = [
            ("var/lib/dpkg/status", ""),
            (
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\npostgres:x:105:110::/var/lib/postgresql:/bin/sh\n",
            ),
            ("etc/group", "root:x:0:\npostgres:x:110:\nadm:x:4:\n"),
            (
                "etc/shadow",
                "root:*:19000:0:99999:7:::\npostgres:*:19000::::::\n",
            ),
            ("etc/gshadow", "root:*::\npostgres:!::\nadm:*::\n"),
        ];
        for (path, body) in files {
            std::fs::write(root.join(path), body).expect("write");
        }
        Self { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `dpkg --root` with the maintainer scripts run outside a chroot (they honour DPKG_ROOT);
    /// dependencies (libc6, passwd) are the host's, not the empty root's.
    fn dpkg(&self, args: &[&str], debs: &[PathBuf]) -> Output {
        let mut cmd = Command::new("dpkg");
        cmd.arg(format!("--root={}", self.dir.path().display()))
            .args(["--force-script-chrootless", "--force-depends"])
            .args(args)
            .args(debs);
        run(&mut cmd)
    }

    /// (uid, gid) of a user and of its group, from the root's own files.
    fn ids(&self, name: &str) -> (u32, u32) {
        let find = |file: &str| -> u32 {
            let body = std::fs::read_to_string(self.path(file)).expect("read");
            body.lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f[0] == name).then(|| f[2].parse().expect("numeric id"))
                })
                .unwrap_or_else(|| panic!("no {name} in {file}:\n{body}"))
        };
        (find("etc/passwd"), find("etc/group"))
    }

    fn meta(&self, rel: &str) -> std::fs::Metadata {
        std::fs::metadata(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
}

fn require_root() {
    assert!(
        running_as_root(),
        "installing into a throwaway root runs chown: run this test as root (make test does)"
    );
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[test]
fn the_debs_install_upgrade_remove_and_purge_in_a_throwaway_root() {
    require_root();
    tool("dpkg");
    let root = Root::new();
    let debs: Vec<PathBuf> = PACKAGES.iter().map(|p| deb(p)).collect();
    let installed = root.dpkg(&["--install"], &debs);
    // The unedited config only earns a warning from check-config; the install succeeds.
    let said = text(&installed.stderr);
    assert!(
        said.contains("/etc/lasect/agent.toml is not usable yet") && said.contains("tls.ca_file"),
        "{said}"
    );

    let passwd = std::fs::read_to_string(root.path("etc/passwd")).expect("passwd");
    let group = std::fs::read_to_string(root.path("etc/group")).expect("group");
    for svc in SERVICES {
        let line = passwd
            .lines()
            .find(|l| l.starts_with(&format!("{svc}:")))
            .unwrap_or_else(|| panic!("no user {svc}:\n{passwd}"));
        assert!(
            line.ends_with(&format!(":/var/lib/{svc}:/usr/sbin/nologin")),
            "{line}"
        );
        let (uid, gid) = root.ids(svc);
        assert!(uid > 0 && uid < 1000, "a system user: {line}");

        let state = root.meta(&format!("var/lib/{svc}"));
        assert!(state.is_dir());
        assert_eq!((state.uid(), state.gid()), (uid, gid), "{svc} state dir");
        assert_eq!(
            state.permissions().mode() & 0o7777,
            0o750,
            "{svc} state dir"
        );

        let conf = format!("etc/lasect/{}.toml", svc.trim_start_matches("lasect-"));
        let meta = root.meta(&conf);
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, gid),
            "{conf}: root, service group"
        );
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640, "{conf}");

        let unit = root.meta(&format!("usr/lib/systemd/system/{svc}.service"));
        assert_eq!(unit.permissions().mode() & 0o7777, 0o644);
    }
    // The agent reads PostgreSQL's logs through the postgres group, and joins nothing else.
    assert!(group.contains("postgres:x:110:lasect-agent\n"), "{group}");
    assert!(group.contains("adm:x:4:\n"), "{group}");
    let bin = root.meta("usr/bin/lasect");
    assert_eq!(bin.permissions().mode() & 0o7777, 0o755);

    // An upgrade keeps the operator's config, the spool and the identity.
    let edited = "# edited by the operator\n";
    let conf = root.path("etc/lasect/agent.toml");
    let mut body = std::fs::read_to_string(&conf).expect("read");
    body.push_str(edited);
    std::fs::write(&conf, &body).expect("edit");
    let spool = root.path("var/lib/lasect-agent/spool");
    let identity = root.path("var/lib/lasect-agent/identity");
    for dir in [&spool, &identity] {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join("kept"), "data").expect("write");
    }
    root.dpkg(&["--install"], &[deb("lasect-agent")]);
    assert!(
        std::fs::read_to_string(&conf)
            .expect("read")
            .ends_with(edited)
    );
    assert!(spool.join("kept").exists() && identity.join("kept").exists());
    let (uid, _) = root.ids("lasect-agent");
    assert_eq!(
        root.meta("var/lib/lasect-agent").uid(),
        uid,
        "the same user after the upgrade"
    );

    // Removal keeps data and config; purge removes both (the user stays: files elsewhere may
    // still belong to it).
    root.dpkg(&["--remove", "lasect-agent"], &[]);
    assert!(!root.path("usr/bin/lasect-agent").exists());
    assert!(spool.join("kept").exists() && conf.exists());
    root.dpkg(&["--purge", "lasect-agent"], &[]);
    assert!(!root.path("var/lib/lasect-agent").exists());
    assert!(!conf.exists());
    assert!(
        root.path("var/lib/lasect-api").exists(),
        "other packages untouched"
    );
    let passwd = std::fs::read_to_string(root.path("etc/passwd")).expect("passwd");
    assert!(passwd.contains("lasect-agent:"), "{passwd}");
}

/// A root with the packaged units and binaries and the host's own units (the targets they
/// name), for `systemd-analyze --root`.
fn unit_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in SERVICES {
        run(Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb(name))
            .arg(dir.path()));
    }
    let units = dir.path().join("usr/lib/systemd/system");
    run(Command::new("cp")
        .args(["-a", "-n", "/usr/lib/systemd/system/."])
        .arg(&units));
    dir
}

fn verify(root: &Path, unit: &str) -> Output {
    Command::new(tool("systemd-analyze"))
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg(format!("/usr/lib/systemd/system/{unit}"))
        .output()
        .expect("run systemd-analyze verify")
}

#[test]
fn every_unit_verifies_without_warnings_and_the_agent_is_exposed_at_most_2() {
    let root = unit_root();
    let clean = |unit: &str, what: &str| {
        let out = verify(root.path(), unit);
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "{what}: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    };
    for svc in SERVICES {
        clean(&format!("{svc}.service"), svc);
    }
    // The agent as the database user (packaging/README.md, "pgBackRest"): the drop-in where
    // the operator installs it.
    let dropin = root
        .path()
        .join("etc/systemd/system/lasect-agent.service.d/database-user.conf");
    std::fs::create_dir_all(dropin.parent().expect("parent")).expect("mkdir");
    std::fs::copy(
        root.path().join("usr/share/lasect/database-user.conf"),
        &dropin,
    )
    .expect("install the drop-in");
    clean(
        "lasect-agent.service",
        "lasect-agent with database-user.conf",
    );
    // Read, not skipped: the same drop-in with a bad line is reported.
    let mut broken = std::fs::read_to_string(&dropin).expect("read the drop-in");
    broken.push_str("ProtectSystem=sideways\n");
    std::fs::write(&dropin, broken).expect("write");
    let said = text(&verify(root.path(), "lasect-agent.service").stderr);
    assert!(
        said.contains("database-user.conf") && said.contains("sideways"),
        "{said}"
    );
    std::fs::remove_file(&dropin).expect("remove the drop-in");
    // The check is not blind: a unit with a bad setting and a missing binary is reported.
    let bad = root
        .path()
        .join("usr/lib/systemd/system/lasect-broken.service");
    std::fs::write(
        &bad,
        "[Service]\nExecStart=/usr/bin/lasect-nothing\nProtectSystem=sideways\n",
    )
    .expect("write");
    let out = verify(root.path(), "lasect-broken.service");
    let said = text(&out.stderr);
    assert!(
        said.contains("sideways") && said.contains("lasect-nothing"),
        "{said}"
    );
    std::fs::remove_file(&bad).expect("remove");

    let mut report = String::new();
    for svc in SERVICES {
        let out = run(Command::new(tool("systemd-analyze"))
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(format!("--root={}", root.path().display()))
            .arg(format!("{svc}.service")));
        let said = text(&out.stdout);
        let level: f64 = said
            .lines()
            .find_map(|l| l.split_once("Overall exposure level for "))
            .and_then(|(_, rest)| rest.split_once(": "))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in:\n{said}"));
        report.push_str(&format!("{svc}: {level}\n"));
        assert!(level <= 2.0, "{svc} is exposed {level} (> 2.0):\n{said}");
    }
    eprintln!("systemd-analyze security --offline=yes:\n{report}");
}

// --- docker-compose.yml -------------------------------------------------------------------

/// Reads the compose file, the Grafana datasource and the config templates into JSON, and
/// validates the compose file against the Compose specification's schema (Draft 2019-09), also
/// a copy with a misspelled key, so that a validator that accepts anything is noticed.
const COMPOSE_READER: &str = r#"
import json, sys, tomllib, pathlib, yaml, jsonschema
repo, schema_path = pathlib.Path(sys.argv[1]), sys.argv[2]
schema = json.load(open(schema_path))
validator = jsonschema.Draft201909Validator(schema)
compose = yaml.safe_load((repo / "docker-compose.yml").read_text())
errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose)]
broken = json.loads(json.dumps(compose))
broken["services"]["agent"]["volumez"] = broken["services"]["agent"].pop("volumes")
templates = {p.name: tomllib.loads(p.read_text())
             for p in sorted((repo / "packaging/docker/config").glob("*.toml"))}
datasource = yaml.safe_load((repo / "dashboards/provisioning/datasources/lasect.yaml").read_text())
provider = yaml.safe_load((repo / "dashboards/provisioning/dashboards/lasect.yaml").read_text())
json.dump({"errors": errors, "broken_errors": len(list(validator.iter_errors(broken))),
           "compose": compose, "templates": templates,
           "datasource": datasource, "provider": provider}, sys.stdout)
"#;

struct Compose {
    doc: serde_json::Value,
}

fn compose() -> &'static Compose {
    static READ: OnceLock<Compose> = OnceLock::new();
    READ.get_or_init(|| {
        let target = repo().join("target");
        let python = target.join("compose-venv/bin/python");
        let schema = target.join("compose-spec/compose-spec.json");
        assert!(
            python.exists() && schema.exists(),
            "{} or {} is missing: run `scripts/deps.sh --test` (or `make test`)",
            python.display(),
            schema.display()
        );
        let out = run(Command::new(python)
            .arg("-c")
            .arg(COMPOSE_READER)
            .arg(repo())
            .arg(schema));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("reader's JSON");
        Compose { doc }
    })
}

impl Compose {
    fn services(&self) -> &serde_json::Map<String, serde_json::Value> {
        self.doc["compose"]["services"]
            .as_object()
            .expect("services")
    }

    fn service(&self, name: &str) -> &serde_json::Value {
        self.services()
            .get(name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    /// A service's volumes as (source, target): a named volume or a repository path.
    fn mounts(&self, name: &str) -> Vec<(String, String)> {
        self.service(name)["volumes"]
            .as_array()
            .map(|v| v.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|m| {
                let m = m.as_str().expect("short volume syntax");
                let mut parts = m.split(':');
                let source = parts.next().expect("source").to_owned();
                let target = parts.next().unwrap_or_else(|| panic!("{m}: no target"));
                (source, target.to_owned())
            })
            .collect()
    }

    fn template(&self, file: &str) -> &serde_json::Value {
        &self.doc["templates"][file]
    }

    /// The `--config /etc/lasect/X.toml` a service is started with.
    fn config_of(&self, name: &str) -> Option<String> {
        let command: Vec<&str> = self.service(name)["command"]
            .as_array()?
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        let at = command.iter().position(|a| *a == "--config")?;
        Some(command[at + 1].to_owned())
    }
}

/// Every absolute path a config names (TLS files, state and key files, DSN sslrootcert).
fn paths_in(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) if s.starts_with('/') => out.push(s.clone()),
        serde_json::Value::String(s) => out.extend(
            s.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .filter(|(_, v)| v.starts_with('/'))
                .map(|(_, v)| v.to_owned()),
        ),
        serde_json::Value::Array(items) => items.iter().for_each(|v| paths_in(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| paths_in(v, out)),
        _ => {}
    }
}

fn under(path: &str, dir: &str) -> bool {
    path == dir || path.starts_with(&format!("{}/", dir.trim_end_matches('/')))
}

#[test]
fn the_compose_file_validates_against_the_compose_specification() {
    let c = compose();
    assert_eq!(c.doc["errors"], serde_json::json!([]), "schema errors");
    assert!(
        c.doc["broken_errors"].as_u64() > Some(0),
        "a misspelled key must fail the same validation"
    );
}

#[test]
fn every_compose_image_is_built_by_a_dockerfile_stage_of_the_repo_or_pinned() {
    let c = compose();
    let mut built = 0;
    for (name, service) in c.services() {
        let Some(build) = service.get("build") else {
            let image = service["image"].as_str().unwrap_or_default();
            let (_, tag) = image
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("{name}: image {image:?} has no tag"));
            assert!(tag != "latest", "{name}: {image} is not pinned");
            continue;
        };
        built += 1;
        let context = repo().join(build["context"].as_str().expect("context"));
        let dockerfile = context.join(build["dockerfile"].as_str().expect("dockerfile"));
        let text = std::fs::read_to_string(&dockerfile)
            .unwrap_or_else(|e| panic!("{name}: {}: {e}", dockerfile.display()));
        let target = build["target"].as_str().expect("target");
        assert!(
            text.lines()
                .any(|l| l.starts_with("FROM ") && l.ends_with(&format!(" AS {target}"))),
            "{name}: no stage {target} in {}",
            dockerfile.display()
        );
        // What the Dockerfile copies from the context exists.
        for line in text
            .lines()
            .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
        {
            let source = line.split_whitespace().nth(1).expect("COPY source");
            assert!(
                context.join(source).exists(),
                "{}: COPY {source}: not in the repository",
                dockerfile.display()
            );
        }
        // Runtime stages do not run as root; the init stage says why it does.
        let stage = text
            .split("\nFROM ")
            .find(|s| {
                s.lines()
                    .next()
                    .is_some_and(|l| l.ends_with(&format!(" AS {target}")))
            })
            .expect("stage text");
        if target != "init" {
            assert!(stage.contains("USER 10001:10001"), "{target} runs as root");
        }
    }
    assert!(
        built >= 4,
        "init, migrate, ingest, api and agent are built here"
    );
    let ignore = repo().join("packaging/docker/Dockerfile.dockerignore");
    let ignore = std::fs::read_to_string(&ignore).expect("Dockerfile.dockerignore");
    assert!(ignore.lines().any(|l| l == "target/"), "{ignore}");
}

#[test]
fn every_compose_mount_port_and_config_path_is_consistent() {
    let c = compose();
    let declared: Vec<&String> = c.doc["compose"]["volumes"]
        .as_object()
        .expect("volumes")
        .keys()
        .collect();
    let mut used = std::collections::BTreeSet::new();
    for name in c.services().keys() {
        for (source, target) in c.mounts(name) {
            assert!(target.starts_with('/'), "{name}: {target}");
            if let Some(rel) = source.strip_prefix("./") {
                assert!(
                    repo().join(rel).exists(),
                    "{name}: {source} is not in the repository"
                );
            } else {
                assert!(
                    declared.contains(&&source),
                    "{name}: volume {source} is not declared"
                );
                used.insert(source);
            }
        }
    }
    for v in &declared {
        assert!(used.contains(*v), "volume {v} is declared but unused");
    }

    // Each Lasect service reads its config from the rendered volume, and init renders every
    // template there.
    let init = c.mounts("init");
    assert!(init.contains(&("./packaging/docker/config".into(), "/templates".into())));
    assert!(init.contains(&("config".into(), "/config".into())));
    let mut configured = 0;
    for name in c.services().keys() {
        let Some(config) = c.config_of(name) else {
            continue;
        };
        configured += 1;
        let file = config
            .strip_prefix("/etc/lasect/")
            .expect("config under /etc/lasect");
        assert!(c.template(file).is_object(), "{name}: no template {file}");
        let mounts = c.mounts(name);
        assert!(
            mounts.contains(&("config".into(), "/etc/lasect".into())),
            "{name}"
        );
        let mut paths = Vec::new();
        // `migrate` reads the store DSN of the API's config and nothing else of it.
        let migrate_only = c.service(name)["command"][0] == "migrate";
        if migrate_only {
            paths_in(&c.template(file)["store_dsn"], &mut paths);
        } else {
            paths_in(c.template(file), &mut paths);
        }
        for path in paths {
            assert!(
                mounts.iter().any(|(_, t)| under(&path, t)),
                "{name}: {file} names {path}, which no volume of the service holds"
            );
        }
    }
    assert_eq!(configured, 4, "migrate, ingest, api, agent");

    // Ports: what is published is what the service listens on.
    for (name, file) in [("ingest", "ingest.toml"), ("api", "api.toml")] {
        let listen = c.template(file)["listen"].as_str().expect("listen");
        let port = listen.rsplit_once(':').expect("ip:port").1;
        let published: Vec<&str> = c.service(name)["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .filter_map(|p| p.as_str()?.rsplit_once(':').map(|(_, p)| p))
            .collect();
        assert_eq!(published, [port], "{name} listens on {listen}");
    }
    // The agent reaches ingest by its service name and port; DSNs name services on 5432.
    let ingest_port = c.template("ingest.toml")["listen"]
        .as_str()
        .and_then(|l| l.rsplit_once(':'))
        .expect("port")
        .1
        .to_owned();
    assert_eq!(
        c.template("agent.toml")["ingest"]["endpoint"],
        format!("https://ingest:{ingest_port}")
    );
    let dsns = [
        (
            "ingest.toml",
            c.template("ingest.toml")["store_dsn"].clone(),
        ),
        ("api.toml", c.template("api.toml")["store_dsn"].clone()),
        (
            "agent.toml",
            c.template("agent.toml")["instances"][0]["dsn"].clone(),
        ),
    ];
    for (file, dsn) in dsns {
        let dsn = dsn.as_str().expect("dsn");
        let host = dsn
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("host="))
            .expect("host");
        assert!(
            c.services().contains_key(host),
            "{file}: host {host} is no service"
        );
        assert!(dsn.contains("port=5432"), "{file}: {dsn}");
        assert!(
            dsn.contains("password=@"),
            "{file}: a password placeholder, never a literal"
        );
    }

    // Grafana: the provisioning and dashboards are where the provisioning files say, the
    // store's CA is where the datasource reads it, and every variable it names is set.
    let grafana = c.mounts("grafana");
    let provider_path = c.doc["provider"]["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path");
    assert!(grafana.contains(&("./dashboards/json".into(), provider_path.into())));
    assert!(grafana.contains(&(
        "./dashboards/provisioning".into(),
        "/etc/grafana/provisioning".into()
    )));
    let ds = &c.doc["datasource"]["datasources"][0];
    let ca = ds["jsonData"]["sslRootCertFile"]
        .as_str()
        .expect("sslRootCertFile");
    let (ca_dir, ca_file) = ca.rsplit_once('/').expect("a path");
    assert!(
        grafana.contains(&("store-ca".into(), ca_dir.into())),
        "{ca}"
    );
    let init_sh =
        std::fs::read_to_string(repo().join("packaging/docker/init.sh")).expect("init.sh");
    assert!(
        init_sh.contains(&format!("/store-ca/{ca_file}")),
        "init.sh writes no {ca_file}"
    );
    let env = &c.service("grafana")["environment"];
    let entrypoint = c.service("grafana")["entrypoint"].to_string();
    let text = serde_json::to_string(ds).expect("json");
    for var in text
        .split("${")
        .skip(1)
        .filter_map(|s| s.split_once('}'))
        .map(|(v, _)| v)
    {
        assert!(
            env.get(var).is_some() || entrypoint.contains(&format!("export {var}=")),
            "the datasource names ${{{var}}}, which Grafana's environment does not set"
        );
    }
}

/// Runs `argv` as a container of the compose file would see its files: in a private mount
/// namespace, chrooted into a root made of the host's /usr, /etc, /dev and /proc plus the
/// service's volumes (directories under `volumes`) and repository mounts at their targets,
/// read-only where the compose file says so.
fn in_container(mounts: &[(PathBuf, String, bool)], uid: Option<u32>, argv: &[&str]) -> Output {
    const SCRIPT: &str = r#"
set -eu
new="$1"; shift
mount -t tmpfs lasect-root "$new"
for d in usr etc dev proc; do mkdir -p "$new/$d"; mount --rbind "/$d" "$new/$d"; done
for l in bin sbin lib lib64; do
    if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$new/$l";
    elif [ -d "/$l" ]; then mkdir -p "$new/$l"; mount --rbind "/$l" "$new/$l"; fi
done
mkdir -p "$new/tmp"
while [ "$1" != -- ]; do
    if [ -d "$1" ]; then mkdir -p "$new$2"; else mkdir -p "$(dirname "$new$2")"; touch "$new$2"; fi
    mount --bind "$1" "$new$2"
    if [ "$3" = ro ]; then mount -o remount,bind,ro "$new$2"; fi
    shift 3
done
shift
exec chroot "$new" /usr/bin/env PATH=/opt/lasect/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
"#;
    let root = tempfile::tempdir().expect("tempdir");
    let mut sorted = mounts.to_vec();
    // Parents before what is mounted inside them (/var/lib/lasect before its keys/).
    sorted.sort_by_key(|(_, target, _)| target.matches('/').count());
    let mut cmd = Command::new(tool("unshare"));
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        SCRIPT,
        "sh",
    ])
    .arg(root.path());
    for (source, target, ro) in &sorted {
        cmd.arg(source)
            .arg(target)
            .arg(if *ro { "ro" } else { "rw" });
    }
    cmd.arg("--");
    if let Some(uid) = uid {
        cmd.args([
            "setpriv".to_owned(),
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".to_owned(),
        ]);
    }
    cmd.args(argv);
    cmd.output().expect("run unshare")
}

fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777)
}

/// uid of the lasect images, of postgres in the Alpine-based store and sample images, and of
/// Grafana in its image (packaging/docker/init.sh).
const LASECT_UID: u32 = 10001;
const POSTGRES_UID: u32 = 70;
const GRAFANA_UID: u32 = 472;

/// The compose file's named volumes as directories, filled as Docker would fill them.
struct Volumes {
    dir: tempfile::TempDir,
}

impl Volumes {
    fn new(c: &Compose) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in c.doc["compose"]["volumes"]
            .as_object()
            .expect("volumes")
            .keys()
        {
            std::fs::create_dir(dir.path().join(name)).expect("mkdir");
        }
        // Docker fills a new named volume from the image's directory at its mount point:
        // these exist in the lasect images, owned by lasect (packaging/docker/Dockerfile).
        let dockerfile = std::fs::read_to_string(repo().join("packaging/docker/Dockerfile"))
            .expect("Dockerfile");
        for (volume, path) in [
            ("api-state", "/var/lib/lasect"),
            ("agent-state", "/var/lib/lasect-agent"),
            ("lasect-keys", "/var/lib/lasect/keys"),
        ] {
            assert!(dockerfile.contains(path), "the image has no {path}");
            std::os::unix::fs::chown(dir.path().join(volume), Some(LASECT_UID), Some(LASECT_UID))
                .expect("chown");
        }
        Self { dir }
    }

    fn file(&self, volume: &str, name: &str) -> PathBuf {
        self.dir.path().join(volume).join(name)
    }

    /// A service's mounts with their sources here, plus the binaries and packaging/docker.
    fn view(&self, c: &Compose, service: &str) -> Vec<(PathBuf, String, bool)> {
        let raw: Vec<String> = c.service(service)["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .map(|m| m.as_str().expect("volume").to_owned())
            .collect();
        let mut out: Vec<(PathBuf, String, bool)> = c
            .mounts(service)
            .into_iter()
            .zip(raw)
            .map(|((source, target), raw)| {
                let path = match source.strip_prefix("./") {
                    Some(rel) => repo().join(rel),
                    None => self.dir.path().join(&source),
                };
                (path, target, raw.ends_with(":ro"))
            })
            .collect();
        let bins = binary_path("lasect-api")
            .parent()
            .expect("bin dir")
            .to_path_buf();
        out.push((bins, "/opt/lasect/bin".into(), true));
        out.push((
            repo().join("packaging/docker"),
            "/opt/lasect/docker".into(),
            true,
        ));
        out
    }

    /// Runs the init service, as the compose file mounts it.
    fn init(&self, c: &Compose) -> Output {
        in_container(&self.view(c, "init"), None, &["/opt/lasect/docker/init.sh"])
    }
}

#[test]
fn the_init_service_makes_secrets_tls_and_configs_each_service_can_read() {
    require_root();
    tool("setpriv");
    let c = compose();
    let volumes = Volumes::new(c);
    let view = |service: &str| volumes.view(c, service);
    let vol = |name: &str, file: &str| volumes.file(name, file);

    let first = volumes.init(c);
    let said = text(&first.stdout);
    assert!(first.status.success(), "{said}\n{}", text(&first.stderr));
    let admin = std::fs::read_to_string(vol("grafana-secrets", "admin_password")).expect("read");
    assert_eq!(admin.len(), 32);
    assert!(
        admin.chars().all(|ch| ch.is_ascii_alphanumeric()),
        "{admin}"
    );
    assert!(
        said.contains(&format!("user admin, password {admin}")),
        "{said}"
    );

    // Each secret belongs to the one user that reads it, and nobody else may read it.
    for (volume, file, uid, mode) in [
        ("store-secrets", "superuser_password", POSTGRES_UID, 0o400),
        ("store-secrets", "lasect_password", POSTGRES_UID, 0o400),
        ("sample-secrets", "agent_password", POSTGRES_UID, 0o400),
        ("grafana-secrets", "admin_password", GRAFANA_UID, 0o400),
        ("grafana-secrets", "store_password", GRAFANA_UID, 0o400),
        ("store-tls", "server.key", POSTGRES_UID, 0o400),
        ("tls-agent", "agent.key", LASECT_UID, 0o400),
        ("tls-ingest", "ingest.key", LASECT_UID, 0o400),
        ("tls-api", "api.key", LASECT_UID, 0o400),
        ("store-ca", "store-ca.pem", LASECT_UID, 0o444),
    ] {
        assert_eq!(
            owner_and_mode(&vol(volume, file)),
            (uid, uid, mode),
            "{volume}/{file}"
        );
    }
    // The CA key stays in the volume only init mounts.
    assert!(vol("ca", "ca.key").exists());
    for name in c.services().keys().filter(|n| *n != "init") {
        assert!(
            !c.mounts(name).iter().any(|(s, _)| s == "ca"),
            "{name} mounts the CA"
        );
    }
    let lasect_password =
        std::fs::read_to_string(vol("store-secrets", "lasect_password")).expect("read");
    for conf in ["agent.toml", "ingest.toml", "api.toml"] {
        let path = vol("config", conf);
        assert_eq!(owner_and_mode(&path), (0, LASECT_UID, 0o640), "{conf}");
        let body = std::fs::read_to_string(&path).expect("read");
        assert!(!body.contains('@'), "{conf} keeps a placeholder:\n{body}");
        if conf != "agent.toml" {
            assert!(
                body.contains(&format!("password={lasect_password} ")),
                "{conf}"
            );
        }
    }

    // A second start keeps everything and prints no password.
    let ca_before = std::fs::read(vol("ca", "ca.pem")).expect("read");
    let again = volumes.init(c);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        !text(&again.stdout).contains(&admin),
        "{}",
        text(&again.stdout)
    );
    assert_eq!(std::fs::read(vol("ca", "ca.pem")).expect("read"), ca_before);
    assert_eq!(
        std::fs::read_to_string(vol("grafana-secrets", "admin_password")).expect("read"),
        admin
    );

    // The agent, as its user and with its volumes only, accepts its config.
    let checked = in_container(
        &view("agent"),
        Some(LASECT_UID),
        &[
            "lasect-agent",
            "--config",
            "/etc/lasect/agent.toml",
            "check-config",
        ],
    );
    assert!(
        checked.status.success() && text(&checked.stdout).contains("config OK"),
        "{}\n{}",
        text(&checked.stdout),
        text(&checked.stderr)
    );

    // The API can read every file its config names, or create it; ingest can read them
    // all, once the API has made the DSN key on its first start (simulated here, as the API's
    // user in the API's view).
    for (service, conf) in [("api", "api.toml"), ("ingest", "ingest.toml")] {
        if service == "ingest" {
            let key = c.template("api.toml")["secrets"]["key_file"]
                .as_str()
                .expect("key_file");
            let made = in_container(
                &view("api"),
                Some(LASECT_UID),
                &["sh", "-c", "umask 077 && echo key > \"$0\"", key],
            );
            assert!(made.status.success(), "{}", text(&made.stderr));
        }
        let mut paths = Vec::new();
        paths_in(c.template(conf), &mut paths);
        let check = if service == "api" {
            "for p in \"$@\"; do [ -r \"$p\" ] || [ -w \"${p%/*}\" ] || \
             { echo \"cannot read or create $p\"; exit 1; }; done"
        } else {
            "for p in \"$@\"; do [ -r \"$p\" ] || { echo \"cannot read $p\"; exit 1; }; done"
        };
        let mut argv = vec!["sh", "-c", check, "sh"];
        argv.extend(paths.iter().map(String::as_str));
        let out = in_container(&view(service), Some(LASECT_UID), &argv);
        assert!(out.status.success(), "{service}: {}", text(&out.stdout));
    }
    // The store and Grafana read theirs as their images' users.
    for (service, uid, files) in [
        (
            "store",
            POSTGRES_UID,
            &[
                "/store-tls/server.key",
                "/store-tls/server.pem",
                "/store-secrets/superuser_password",
                "/store-secrets/lasect_password",
                "/store-secrets/grafana_password",
                "/docker-entrypoint-initdb.d/lasect.sh",
            ][..],
        ),
        (
            "sample-db",
            POSTGRES_UID,
            &[
                "/sample-secrets/superuser_password",
                "/sample-secrets/agent_password",
                "/docker-entrypoint-initdb.d/lasect.sh",
            ][..],
        ),
        (
            "grafana",
            GRAFANA_UID,
            &[
                "/grafana-secrets/admin_password",
                "/grafana-secrets/store_password",
                "/etc/grafana/lasect/store-ca.pem",
            ][..],
        ),
    ] {
        let mut argv = vec![
            "sh",
            "-c",
            "for p in \"$@\"; do [ -r \"$p\" ] || { echo \"$p\"; exit 1; }; done",
            "sh",
        ];
        argv.extend(files);
        let out = in_container(&view(service), Some(uid), &argv);
        assert!(
            out.status.success(),
            "{service} cannot read {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

/// The sample server's init script, run as the image would run it (as postgres, uid 70, with
/// the sample's volumes) against a real cluster: the agent's role logs in with the password
/// init generated, over scram, and has pg_monitor; pg_stat_statements exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_init_script_gives_the_agent_a_monitoring_role_with_the_generated_password() {
    require_root();
    let c = compose();
    let volumes = Volumes::new(c);
    let init = tokio::task::block_in_place(|| volumes.init(c));
    assert!(init.status.success(), "{}", text(&init.stderr));
    let pg = lasect_testkit::PgCluster::start(lasect_testkit::PgOptions {
        stat_statements: true,
        ..Default::default()
    })
    .expect("start pg");
    // The image's pg_hba asks every TCP login for a password; so does this one for the role.
    let hba = pg.data_dir().join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    std::fs::write(
        &hba,
        format!("host all lasect_agent 127.0.0.1/32 scram-sha-256\n{rules}"),
    )
    .expect("write pg_hba.conf");
    let admin = pg.connect("postgres").await.expect("connect");
    admin
        .execute("SELECT pg_reload_conf()", &[])
        .await
        .expect("reload");

    let port = pg.port().to_string();
    let pgport = format!("PGPORT={port}");
    let ran = tokio::task::block_in_place(|| {
        in_container(
            &volumes.view(c, "sample-db"),
            Some(POSTGRES_UID),
            &[
                "env",
                "PGHOST=127.0.0.1",
                &pgport,
                "POSTGRES_USER=postgres",
                "sh",
                "/docker-entrypoint-initdb.d/lasect.sh",
            ],
        )
    });
    assert!(
        ran.status.success(),
        "{}\n{}",
        text(&ran.stdout),
        text(&ran.stderr)
    );

    let password =
        std::fs::read_to_string(volumes.file("sample-secrets", "agent_password")).expect("read");
    // The DSN the rendered agent config uses, pointed at this cluster.
    let rendered =
        std::fs::read_to_string(volumes.file("config", "agent.toml")).expect("agent.toml");
    assert!(rendered.contains(&format!("user=lasect_agent password={password}\"")));
    let dsn =
        format!("host=127.0.0.1 port={port} dbname=postgres user=lasect_agent password={password}");
    let (agent, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .expect("lasect_agent logs in with the generated password");
    tokio::spawn(conn);
    let row = agent
        .query_one(
            "SELECT pg_has_role('pg_monitor', 'MEMBER'), \
                    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), \
                    EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')",
            &[],
        )
        .await
        .expect("query");
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2)
        ),
        (true, false, true)
    );
    let wrong = format!("host=127.0.0.1 port={port} dbname=postgres user=lasect_agent password=x");
    assert!(
        tokio_postgres::connect(&wrong, tokio_postgres::NoTls)
            .await
            .is_err(),
        "a wrong password is refused (scram, not trust)"
    );
}

/// The store's init script against a real cluster (the native layout: TimescaleDB is not
/// installed here; in the image the first migration creates it), run with the store's volumes
/// and the cluster's data directory as the store-data volume. Then the real migrations run as
/// the role it made, and Grafana's login reads metrics and nothing secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_init_script_makes_the_lasect_and_grafana_roles_the_migrations_build_on() {
    require_root();
    let c = compose();
    let volumes = Volumes::new(c);
    let init = tokio::task::block_in_place(|| volumes.init(c));
    assert!(init.status.success(), "{}", text(&init.stderr));
    let pg =
        lasect_testkit::PgCluster::start(lasect_testkit::PgOptions::default()).expect("start pg");
    // Password logins for the two roles, and the rule the image's entrypoint writes last.
    let hba = pg.data_dir().join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    std::fs::write(
        &hba,
        format!(
            "host all lasect,grafana 127.0.0.1/32 scram-sha-256\n{rules}\
             host all all all scram-sha-256\n"
        ),
    )
    .expect("write pg_hba.conf");
    let admin = pg.connect("postgres").await.expect("connect");
    admin
        .execute("SELECT pg_reload_conf()", &[])
        .await
        .expect("reload");

    let mut view = volumes.view(c, "store");
    for (source, target, _) in &mut view {
        if target == "/var/lib/postgresql/data" {
            *source = pg.data_dir();
        }
    }
    let pgport = format!("PGPORT={}", pg.port());
    // As root: the data directory belongs to this host's postgres user, not the image's.
    let ran = tokio::task::block_in_place(|| {
        in_container(
            &view,
            None,
            &[
                "env",
                "PGHOST=127.0.0.1",
                &pgport,
                "POSTGRES_USER=postgres",
                "PGDATA=/var/lib/postgresql/data",
                "sh",
                "/docker-entrypoint-initdb.d/lasect.sh",
            ],
        )
    });
    assert!(
        ran.status.success(),
        "{}\n{}",
        text(&ran.stdout),
        text(&ran.stderr)
    );
    let rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    assert!(
        rules.ends_with("hostssl all all all scram-sha-256\n"),
        "{rules}"
    );
    let auto = std::fs::read_to_string(pg.data_dir().join("postgresql.auto.conf")).expect("auto");
    assert!(
        auto.contains("ssl = 'on'") && auto.contains("ssl_key_file = '/store-tls/server.key'"),
        "{auto}"
    );

    let secret = |name: &str| {
        std::fs::read_to_string(volumes.file("store-secrets", name)).expect("read secret")
    };
    let lasect_dsn = format!(
        "host=127.0.0.1 port={} dbname=lasect user=lasect password={}",
        pg.port(),
        secret("lasect_password")
    );
    let migrated = tokio::task::block_in_place(|| {
        Command::new(binary_path("lasect-api"))
            .args(["migrate", "--store-dsn", &lasect_dsn])
            .env_remove("LASECT_STORE_DSN")
            .output()
            .expect("run lasect-api migrate")
    });
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));

    let grafana_dsn = format!(
        "host=127.0.0.1 port={} dbname=lasect user=grafana password={}",
        pg.port(),
        secret("grafana_password")
    );
    let (grafana, conn) = tokio_postgres::connect(&grafana_dsn, tokio_postgres::NoTls)
        .await
        .expect("grafana logs in with the generated password");
    tokio::spawn(conn);
    grafana
        .query("SELECT count(*) FROM metric_families", &[])
        .await
        .expect("grafana reads the metric families");
    let refused = grafana
        .query("SELECT password_hash FROM users", &[])
        .await
        .expect_err("grafana must not read users");
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
}
