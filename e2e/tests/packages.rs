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
    for svc in SERVICES {
        let out = verify(root.path(), &format!("{svc}.service"));
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "{svc}: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
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
