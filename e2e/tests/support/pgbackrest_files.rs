//! The files the pgBackRest tests set up around a cluster, as an operator would.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use lasect_testkit::PgCluster;

/// Fails the test with the way to install pgBackRest when it is missing.
pub fn require_pgbackrest() {
    let version = std::process::Command::new("pgbackrest")
        .arg("version")
        .output()
        .expect("pgbackrest is installed (scripts/deps.sh --test)");
    assert!(version.status.success(), "{version:?}");
}

/// Gives `path` to the owner of the cluster's data directory (the database OS user), as an
/// operator would give it the repository and config directories.
pub fn give_to_server(cluster: &PgCluster, path: &Path) {
    let meta = std::fs::metadata(cluster.data_dir()).expect("data dir");
    std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid())).expect("chown");
}

/// How many pgBackRest processes of `stanza` are running on this host.
pub fn pgbackrest_of(stanza: &str) -> usize {
    let needle = format!("--stanza={stanza}");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmdline| {
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.iter().any(|a| a.ends_with(b"pgbackrest")) && args.contains(&needle.as_bytes())
        })
        .count()
}
