//! `host_filesystem`: usage of the filesystems holding an instance's data
//! directory, its WAL (`pg_wal`, following a symlink to wherever it lives)
//! and, when the logging collector is on, its log directory; one entry per
//! mount point, naming what of the instance lives there.
//!
//! The directories come from the server (`data_directory` and
//! `log_directory` need superuser or pg_read_all_settings, part of
//! pg_monitor); the agent must run on the database host to see them. A
//! directory the agent cannot reach is left out (logged at debug); the
//! family fails only when none is reachable. Sizes come from statvfs(3);
//! mount points from /proc/self/mountinfo (without it, the directory itself
//! stands for its filesystem).

use std::path::{Path, PathBuf};

use lasect_proto::v1::{FilesystemUsage, HostFilesystem};
use nix::sys::statvfs::statvfs;
use tokio_postgres::Client;

use super::FamilyError;

/// From pg_settings, not current_setting(): a role without
/// pg_read_all_settings does not see the directories there, where
/// current_setting() would raise an ERROR into the server's log every round.
const QUERY: &str = "SELECT max(setting) FILTER (WHERE name = 'data_directory') AS data, \
     max(setting) FILTER (WHERE name = 'log_directory') AS log, \
     coalesce(bool_or(setting = 'on') FILTER (WHERE name = 'logging_collector'), false) \
     AS collector FROM pg_settings \
     WHERE name IN ('data_directory', 'log_directory', 'logging_collector')";

/// One mount of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub device: String,
}

/// Parses /proc/self/mountinfo (see proc(5)); malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fs_type = right.next()?;
            let device = right.next().unwrap_or("");
            Some(Mount {
                mount_point: PathBuf::from(unescape(mount_point)),
                fs_type: fs_type.to_owned(),
                device: unescape(device),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(b) => {
                out.push(char::from(b));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The mount holding `path` (already canonical): the longest mount point
/// that is a prefix of it; of mounts on the same point, the last (it hides
/// the ones below).
pub fn mount_of<'m>(mounts: &'m [Mount], path: &Path) -> Option<&'m Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        if path.starts_with(&m.mount_point)
            && best
                .is_none_or(|b| m.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len())
        {
            best = Some(m);
        }
    }
    best
}

/// The directories of an instance with their roles, resolved to canonical
/// paths; unreachable ones are logged and left out.
fn directories(data: &str, log: &str, collector: bool) -> Vec<(&'static str, PathBuf)> {
    let data = PathBuf::from(data);
    let mut wanted = vec![("data", data.clone()), ("wal", data.join("pg_wal"))];
    if collector {
        let log = Path::new(log);
        // A relative log_directory is relative to the data directory.
        wanted.push(("log", data.join(log)));
    }
    wanted
        .into_iter()
        .filter_map(|(role, path)| match std::fs::canonicalize(&path) {
            Ok(p) => Some((role, p)),
            Err(e) => {
                tracing::debug!(role, path = %path.display(), error = %e, "directory not reachable");
                None
            }
        })
        .collect()
}

/// Usage of each filesystem holding `dirs`, one entry per mount point.
// statvfs counts are 32-bit on some targets: the conversions are not
// useless everywhere.
#[allow(clippy::useless_conversion)]
pub fn usage(dirs: &[(&'static str, PathBuf)], mounts: &[Mount]) -> Vec<FilesystemUsage> {
    let mut out: Vec<FilesystemUsage> = Vec::new();
    for (role, path) in dirs {
        let (mount_point, device, fs_type) = match mount_of(mounts, path) {
            Some(m) => (
                m.mount_point.display().to_string(),
                m.device.clone(),
                m.fs_type.clone(),
            ),
            None => (path.display().to_string(), String::new(), String::new()),
        };
        if let Some(known) = out.iter_mut().find(|f| f.mount_point == mount_point) {
            if !known.roles.split(',').any(|r| r == *role) {
                known.roles.push(',');
                known.roles.push_str(role);
            }
            continue;
        }
        let st = match statvfs(path.as_path()) {
            Ok(st) => st,
            Err(e) => {
                tracing::debug!(role, path = %path.display(), error = %e, "statvfs failed");
                continue;
            }
        };
        // Block counts are in units of f_frsize.
        let frsize = u64::from(st.fragment_size());
        let total = u64::from(st.blocks()).saturating_mul(frsize);
        let free_all = u64::from(st.blocks_free()).saturating_mul(frsize);
        let inodes = u64::from(st.files());
        let inodes_free = u64::from(st.files_free());
        out.push(FilesystemUsage {
            mount_point,
            device,
            fs_type,
            roles: (*role).to_owned(),
            total_bytes: total,
            used_bytes: total.saturating_sub(free_all),
            free_bytes: u64::from(st.blocks_available()).saturating_mul(frsize),
            total_inodes: inodes,
            used_inodes: inodes.saturating_sub(inodes_free),
            free_inodes: u64::from(st.files_available()),
        });
    }
    out
}

pub async fn collect(client: &Client) -> Result<HostFilesystem, FamilyError> {
    let row = client.query_one(QUERY, &[]).await?;
    let data: Option<String> = row.try_get("data")?;
    let log: Option<String> = row.try_get("log")?;
    let collector: bool = row.try_get("collector")?;
    let (Some(data), Some(log)) = (data, log) else {
        return Err(FamilyError::Unavailable(
            "this role cannot see data_directory and log_directory \
             (grant pg_read_all_settings or pg_monitor)"
                .into(),
        ));
    };
    let filesystems = tokio::task::spawn_blocking(move || {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .map(|t| parse_mountinfo(&t))
            .unwrap_or_default();
        usage(&directories(&data, &log, collector), &mounts)
    })
    .await
    .map_err(|e| FamilyError::Unavailable(format!("filesystem task failed: {e}")))?;
    if filesystems.is_empty() {
        return Err(FamilyError::Unavailable(
            "none of the instance's directories is reachable from the agent \
             (it must run on the database host, as a user that may read them)"
                .into(),
        ));
    }
    Ok(HostFilesystem { filesystems })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 8:2 / /var/lib/postgresql rw,relatime shared:2 - xfs /dev/sdb1 rw
31 22 8:3 / /mnt/wal\\040disk rw - ext4 /dev/sdc1 rw
32 30 0:5 / /var/lib/postgresql rw - tmpfs tmpfs rw
garbage
";

    #[test]
    fn parses_mountinfo_with_escapes() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 4);
        assert_eq!(m[2].mount_point, PathBuf::from("/mnt/wal disk"));
        assert_eq!(
            (m[1].fs_type.as_str(), m[1].device.as_str()),
            ("xfs", "/dev/sdb1")
        );
    }

    #[test]
    fn the_longest_and_latest_mount_holds_a_path() {
        let m = parse_mountinfo(MOUNTINFO);
        let of = |p: &str| mount_of(&m, Path::new(p)).map(|m| m.fs_type.as_str());
        assert_eq!(of("/var/lib/postgresql/15/main"), Some("tmpfs"));
        assert_eq!(of("/mnt/wal disk/pg_wal"), Some("ext4"));
        assert_eq!(
            of("/var/lib/postgresqlx"),
            Some("ext4"),
            "components, not bytes"
        );
        assert_eq!(of("/etc"), Some("ext4"));
    }

    #[test]
    fn directories_on_one_filesystem_are_one_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("pg_wal")).expect("dirs");
        std::fs::create_dir_all(data.join("log")).expect("dirs");
        let dirs = directories(data.to_str().expect("utf8"), "log", true);
        assert_eq!(dirs.len(), 3);
        let mounts =
            parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
        let fs = usage(&dirs, &mounts);
        assert_eq!(fs.len(), 1, "{fs:?}");
        assert_eq!(fs[0].roles, "data,wal,log");
        assert!(fs[0].total_bytes > 0 && fs[0].used_bytes <= fs[0].total_bytes);
        // Without the logging collector the log directory is not watched.
        assert_eq!(
            directories(data.to_str().expect("utf8"), "log", false).len(),
            2
        );
        // A missing directory is left out, not an error.
        assert!(directories("/nonexistent/lasect", "log", true).is_empty());
    }

    #[test]
    fn a_wal_symlink_is_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let wal = dir.path().join("elsewhere");
        std::fs::create_dir_all(&data).expect("data");
        std::fs::create_dir_all(&wal).expect("wal");
        std::os::unix::fs::symlink(&wal, data.join("pg_wal")).expect("symlink");
        let dirs = directories(data.to_str().expect("utf8"), "log", false);
        let resolved = dirs
            .iter()
            .find(|(r, _)| *r == "wal")
            .map(|(_, p)| p.clone());
        assert_eq!(
            resolved,
            Some(std::fs::canonicalize(&wal).expect("canonical"))
        );
    }
}
