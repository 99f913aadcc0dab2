//! Replication between harness clusters: a streaming standby made with
//! `pg_basebackup` from a running cluster, and logical replication
//! (publication on one cluster, subscription on another).
//!
//! The standby is a [`PgCluster`] like any other (own temp dir, port and
//! socket dir, run as the `postgres` OS user when root, stopped and deleted
//! on Drop). Its `postgresql.auto.conf` is rewritten by the harness, so
//! `primary_conninfo` and `primary_slot_name` are written there, with
//! `standby.signal` next to it.

use std::path::Path;

use super::{PgCluster, PgOptions, chown_to};
use crate::{HarnessError, free_port};

/// `application_name` the standby connects with (pg_stat_replication).
pub const REPLICA_APPLICATION_NAME: &str = "lasect_replica";

impl PgCluster {
    /// A streaming standby of this cluster, made with `pg_basebackup`.
    /// With `slot`, a physical replication slot of that name is created on
    /// this cluster and used by the standby. Blocking (a second or two).
    pub fn start_replica(&self, slot: Option<&str>) -> Result<PgCluster, HarnessError> {
        let root = tempfile::Builder::new()
            .prefix("lasect-replica-")
            .tempdir()
            .map_err(HarnessError::io("create replica temp dir"))?;
        if let Some(user) = &self.run_as {
            chown_to(root.path(), user)?;
        }
        let mut replica = PgCluster {
            root,
            port: 0,
            bindir: self.bindir.clone(),
            run_as: self.run_as.clone(),
            tls_only: false,
        };
        let mut backup = replica.command("pg_basebackup");
        backup
            .arg("-D")
            .arg(replica.data_dir())
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-X",
                "stream",
                "-c",
                "fast",
            ])
            .args(["-p", &self.port.to_string(), "--no-sync"]);
        if let Some(slot) = slot {
            backup.args(["-C", "-S", slot]);
        }
        replica.run(&mut backup)?;
        std::fs::create_dir_all(replica.socket_dir())
            .map_err(HarnessError::io("create replica socket dir"))?;
        write_owned(&replica, &replica.data_dir().join("standby.signal"), "")?;
        if let Some(user) = &replica.run_as {
            chown_to(&replica.socket_dir(), user)?;
        }
        let mut settings = vec![(
            "primary_conninfo".to_string(),
            format!(
                "'host=127.0.0.1 port={} user=postgres application_name={REPLICA_APPLICATION_NAME}'",
                self.port
            ),
        )];
        if let Some(slot) = slot {
            settings.push(("primary_slot_name".into(), format!("'{slot}'")));
        }
        let opts = PgOptions {
            settings,
            ..PgOptions::default()
        };
        let mut last = None;
        for _ in 0..5 {
            replica.port = free_port();
            replica.write_conf(&opts)?;
            match replica.pg_ctl_start() {
                Ok(()) => return Ok(replica),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| HarnessError::Other("replica did not start".into())))
    }

    /// Subscribes database `dbname` of this cluster to `publication` of
    /// `publisher` (which needs `PgOptions::logical`), as `subscription`.
    /// The published tables must exist here with the same definitions.
    pub async fn subscribe(
        &self,
        publisher: &PgCluster,
        dbname: &str,
        publication: &str,
        subscription: &str,
    ) -> Result<(), HarnessError> {
        let client = self.connect(dbname).await?;
        client
            .batch_execute(&format!(
                "CREATE SUBSCRIPTION \"{subscription}\" CONNECTION '{}' PUBLICATION \"{publication}\"",
                publisher.dsn(dbname)
            ))
            .await?;
        Ok(())
    }
}

fn write_owned(cluster: &PgCluster, path: &Path, body: &str) -> Result<(), HarnessError> {
    std::fs::write(path, body).map_err(HarnessError::io(format!("write {}", path.display())))?;
    if let Some(user) = &cluster.run_as {
        chown_to(path, user)?;
    }
    Ok(())
}
