//! `standby`: on a standby, the WAL receiver (pg_stat_wal_receiver) and the
//! received and replayed positions; nothing on a primary (no row, no error).
//!
//! LSNs are sent as byte positions (`lsn - '0/0'`). The replay delay is the
//! age of the last replayed transaction, which grows on an idle primary
//! too; the bytes behind are WAL received but not replayed yet. The
//! receiver's columns other than `status` are NULL for roles without
//! pg_read_all_stats; pg_stat_wal_receiver is the same from 13 to 17.

use lasect_proto::v1::StandbyStatus;
use tokio_postgres::Client;

pub const QUERY: &str = "SELECT coalesce(r.status, '') AS status, \
     coalesce(r.sender_host, '') AS sender_host, r.sender_port, \
     coalesce(r.slot_name, '') AS slot_name, \
     (pg_last_wal_receive_lsn() - '0/0')::int8 AS receive_lsn, \
     (pg_last_wal_replay_lsn() - '0/0')::int8 AS replay_lsn, \
     extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_delay, \
     greatest(0, pg_last_wal_receive_lsn() - pg_last_wal_replay_lsn())::int8 AS replay_lag_bytes, \
     extract(epoch FROM clock_timestamp() - r.last_msg_receipt_time)::float8 AS last_msg_age \
     FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver r ON true \
     WHERE pg_is_in_recovery()";

/// The standby's status, or `None` on a primary.
pub async fn collect(client: &Client) -> Result<Option<StandbyStatus>, tokio_postgres::Error> {
    let Some(row) = client.query_opt(QUERY, &[]).await? else {
        return Ok(None);
    };
    Ok(Some(StandbyStatus {
        receiver_status: row.try_get("status")?,
        sender_host: row.try_get("sender_host")?,
        sender_port: row.try_get("sender_port")?,
        slot_name: row.try_get("slot_name")?,
        receive_lsn: row.try_get("receive_lsn")?,
        replay_lsn: row.try_get("replay_lsn")?,
        replay_delay_seconds: row.try_get("replay_delay")?,
        replay_lag_bytes: row.try_get("replay_lag_bytes")?,
        last_msg_age_seconds: row.try_get("last_msg_age")?,
    }))
}
