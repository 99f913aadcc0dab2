//! The agent as an unprivileged user (issue 17, packaging/README.md "pgBackRest"), through
//! the real binaries and pgBackRest 2.45 on a harness cluster:
//! - run as the database OS user (what the packages' `database-user.conf` drop-in sets up):
//!   pgBackRest and the drill's `pg_ctl` start directly, with no `runuser`: stanza create, a
//!   full backup, then a restore drill that passes and leaves its scratch directory empty;
//! - run as another unprivileged user (`nobody`, like a packaged agent without the drop-in):
//!   a stanza run fails at once, naming it and the fix (and the owner once it may look into
//!   the cluster's directory), and nothing reaches the repository.
//!
//! Needs root (to become those users) and pgBackRest (`scripts/deps.sh --test`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lasect_e2e::Stack;
use lasect_testkit::{ChildGuard, binary_path};
use nix::unistd::User;
use serde_json::json;

use crate::support::pgbackrest_files::{
    archiving_cluster, backup_run, create_stanza, full_backup, give_to_server, require_pgbackrest,
};

const AGENT_ID: &str = "backup-user-agent";

/// `dir/<name>/`: the agent's config, TLS files and state directory, owned by `uid:gid` (0700),
/// as the packages give them to the agent's user.
fn agent_home(
    stack: &Stack,
    dir: &Path,
    name: &str,
    uid: u32,
    gid: u32,
    instance: &str,
) -> PathBuf {
    let home = dir.join(name);
    let state = home.join("state");
    std::fs::create_dir_all(&state).expect("agent dirs");
    let tls = stack.tls();
    for (from, to) in [
        (tls.join("ca.pem"), "ca.pem"),
        (tls.join(format!("agents/{AGENT_ID}.pem")), "agent.pem"),
        (tls.join(format!("agents/{AGENT_ID}.key")), "agent.key"),
    ] {
        std::fs::copy(&from, home.join(to)).expect("copy TLS file");
    }
    let config = home.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{state}\"\n\
             [ingest]\nendpoint = \"https://127.0.0.1:{port}\"\nserver_name = \"lasect-ingest\"\n\
             [tls]\nca_file = \"{home}/ca.pem\"\ncert_file = \"{home}/agent.pem\"\n\
             key_file = \"{home}/agent.key\"\n\
             [collect]\ninterval_secs = 5\n\
             [control]\nallow = [\"sql\", \"backup\", \"restore\"]\n\
             [[instances]]\nname = \"archived\"\ndsn = \"{instance}\"\n",
            state = state.display(),
            port = stack.ingest_port,
            home = home.display(),
        ),
    )
    .expect("agent config");
    for entry in walk(&home) {
        std::os::unix::fs::chown(&entry, Some(uid), Some(gid)).expect("chown");
    }
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    home
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The agent of `home`, started as `uid:gid` (and that user's groups) by `setpriv` (which execs: the guard's signals reach
/// the agent itself).
fn start_agent_as(uid: u32, gid: u32, home: &Path) -> ChildGuard {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={uid}"),
        &format!("--regid={gid}"),
        "--init-groups",
        "--",
    ])
    .arg(binary_path("lasect-agent"))
    .arg("--config")
    .arg(home.join("agent.toml"))
    .env("HOME", home);
    let mut agent = ChildGuard::spawn(c).expect("spawn agent");
    agent
        .wait_for_line("Control stream open", Duration::from_secs(60))
        .expect("control stream");
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_user_backs_up_and_drills_and_another_user_is_told_why_not() {
    let _pgbackrest = crate::support::pgbackrest().await;
    require_pgbackrest();
    let archiving = archiving_cluster("lasect-backup-user-");
    let (dir, repo, archived) = (&archiving.dir, &archiving.repo, &archiving.cluster);
    let owner = std::fs::metadata(archived.data_dir()).expect("data dir");
    let owner_name = User::from_uid(owner.uid().into())
        .expect("passwd")
        .expect("the database user has a name")
        .name;
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).expect("dir");
    give_to_server(archived, &scratch);

    let stack = Stack::new(AGENT_ID).await;
    let _api = stack.start_api();
    let _ingest = stack.start_ingest(&stack.secrets_toml());

    // Another unprivileged user: refused before pgBackRest runs, with the way out.
    let nobody = User::from_name("nobody")
        .expect("passwd")
        .expect("a nobody user");
    let (nobody_uid, nobody_gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    let homes = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        homes.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .expect("chmod");
    let nobody_home = agent_home(
        &stack,
        homes.path(),
        "nobody-agent",
        nobody_uid,
        nobody_gid,
        &archived.dsn("postgres"),
    );
    let mut agent = start_agent_as(nobody_uid, nobody_gid, &nobody_home);
    let instance = stack.instance_id("archived").await;
    let repo_id = archiving
        .add_main_repository(&stack, instance, json!({}))
        .await;
    let main = format!("api/v1/instances/{instance}/backup/repositories/{repo_id}");
    let stanza_create = || async {
        let run = backup_run(
            &stack,
            &format!("{main}/stanza?wait=120"),
            Some(json!({"action": "create"})),
        )
        .await;
        assert_eq!(run["status"], "failed", "{run}");
        run
    };
    let said = |run: &serde_json::Value, parts: &[&str]| {
        let error = run["error"].as_str().unwrap_or("");
        for part in parts {
            assert!(error.contains(part), "{part}: {run}");
        }
    };
    // The cluster's directory closed to others: it cannot even find out who owns the data
    // directory.
    let cluster_root = archived.data_dir().parent().expect("root").to_owned();
    let mode = |m: u32| {
        std::fs::set_permissions(
            &cluster_root,
            std::os::unix::fs::PermissionsExt::from_mode(m),
        )
        .expect("chmod");
    };
    mode(0o700);
    let hidden = stanza_create().await;
    said(
        &hidden,
        &[
            "runs as nobody",
            "may not look into",
            "Permission denied",
            "database-user.conf",
        ],
    );
    // Allowed to look: it names the owner as well.
    mode(0o711);
    let refused = stanza_create().await;
    said(
        &refused,
        &[
            "runs as nobody",
            &format!("must run as {owner_name}"),
            "database-user.conf",
            "packaging/README.md",
        ],
    );
    let written: Vec<_> = std::fs::read_dir(repo).expect("repo").collect();
    assert!(
        written.is_empty(),
        "the repository was written: {written:?}"
    );
    agent.kill();

    // The database user: everything runs directly, as it.
    let home = agent_home(
        &stack,
        dir.path(),
        "owner-agent",
        owner.uid(),
        owner.gid(),
        &archived.dsn("postgres"),
    );
    let _agent = start_agent_as(owner.uid(), owner.gid(), &home);
    create_stanza(&stack, &main).await;
    let full = full_backup(&stack, &main).await;
    assert_eq!(full["summary"]["backup"]["type"], "full", "{full}");
    let drill = backup_run(
        &stack,
        &format!("{main}/drills?wait=120"),
        Some(json!({
            "check_sql": "SELECT count(*) AS n FROM pg_class",
            "scratch_dir": scratch.display().to_string(),
        })),
    )
    .await;
    assert_eq!(drill["status"], "succeeded", "{drill}");
    assert_eq!(drill["summary"]["passed"], true, "{drill}");
    let left: Vec<_> = std::fs::read_dir(&scratch).expect("scratch").collect();
    assert!(left.is_empty(), "the drill left {left:?}");
    let listed = stack.cli(&["backup", "list", "-i", "archived"]);
    assert!(listed.contains("full"), "{listed}");
}
