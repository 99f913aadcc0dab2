//! `instance_info`: version and recovery state of an instance.

use lasect_proto::v1::InstanceInfo;
use tokio_postgres::Client;

pub(crate) async fn collect(client: &Client) -> Result<InstanceInfo, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int4, version(), pg_is_in_recovery()",
            &[],
        )
        .await?;
    Ok(InstanceInfo {
        server_version_num: row.try_get(0)?,
        version: row.try_get(1)?,
        in_recovery: row.try_get(2)?,
    })
}
