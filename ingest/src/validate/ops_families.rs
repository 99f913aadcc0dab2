//! Row checks of the families added for standbys, logical replication,
//! user-defined metrics, filesystems and collector failures (see
//! [`families`](super::families) for the others; same conventions: values
//! in table column order, empty text is NULL where a column is optional).

use lasect_proto::v1;

use super::checks::{
    FieldError, MAX_IDENTIFIER_BYTES, counter, invalid, name, text, time, unsigned,
};
use super::families::Row;
use super::schema::Value;

/// Empty text is "none" (NULL).
fn optional_text(field: &'static str, value: String, max: usize) -> Result<Value, FieldError> {
    let value = text(field, value, max)?;
    Ok(Value::Text((!value.is_empty()).then_some(value)))
}

/// Host names and addresses of a WAL sender (a host name is at most 253 bytes).
const MAX_HOST_BYTES: usize = 255;

/// `standby`: one row per sample of a standby.
pub fn standby_row(s: v1::StandbyStatus) -> Result<Row, FieldError> {
    if let Some(port) = s.sender_port
        && !(0..=65_535).contains(&port)
    {
        return Err(invalid("sender_port", format!("{port} is not a TCP port")));
    }
    Ok(vec![
        optional_text("receiver_status", s.receiver_status, MAX_IDENTIFIER_BYTES)?,
        optional_text("sender_host", s.sender_host, MAX_HOST_BYTES)?,
        Value::Int4(s.sender_port),
        optional_text("slot_name", s.slot_name, MAX_IDENTIFIER_BYTES)?,
        counter("receive_lsn", s.receive_lsn)?,
        counter("replay_lsn", s.replay_lsn)?,
        // Negative when the primary's clock is ahead of the standby's.
        finite("replay_delay_seconds", s.replay_delay_seconds)?,
        counter("replay_lag_bytes", s.replay_lag_bytes)?,
        finite("last_msg_age_seconds", s.last_msg_age_seconds)?,
    ])
}

/// `replication_identity`: one row per sample.
pub fn replication_identity_row(r: v1::ReplicationIdentity) -> Result<Row, FieldError> {
    if r.timeline_id <= 0 {
        return Err(invalid(
            "timeline_id",
            format!("must be positive, got {}", r.timeline_id),
        ));
    }
    if !(1..=65_535).contains(&r.port) {
        return Err(invalid("port", format!("{} is not a TCP port", r.port)));
    }
    Ok(vec![
        // A u64 in the control file, shown by PostgreSQL as a bigint: any value.
        Value::Int8(Some(r.system_identifier)),
        Value::Int4(Some(r.timeline_id)),
        Value::Bool(Some(r.in_recovery)),
        counter("wal_lsn", r.wal_lsn)?,
        Value::Int4(Some(r.port)),
        optional_text("server_addr", r.server_addr, MAX_HOST_BYTES)?,
        optional_text(
            "receiver_application_name",
            r.receiver_application_name,
            MAX_IDENTIFIER_BYTES,
        )?,
    ])
}

/// Publications a subscription may name, as sent (comma-separated names).
const MAX_PUBLICATIONS_BYTES: usize = 64 * 64;

/// `subscription_source`: one row per subscription.
pub fn subscription_source_row(s: v1::SubscriptionSource) -> Result<Row, FieldError> {
    if let Some(port) = s.conn_port
        && !(1..=65_535).contains(&port)
    {
        return Err(invalid("conn_port", format!("{port} is not a TCP port")));
    }
    Ok(vec![
        name("subname", s.subname)?,
        name("datname", s.datname)?,
        Value::Bool(Some(s.enabled)),
        optional_text("slot_name", s.slot_name, MAX_IDENTIFIER_BYTES)?,
        // A conninfo host may list several hosts (comma-separated).
        optional_text("conn_host", s.conn_host, 4 * MAX_HOST_BYTES)?,
        Value::Int4(s.conn_port),
        optional_text("conn_dbname", s.conn_dbname, MAX_IDENTIFIER_BYTES)?,
        optional_text("publications", s.publications, MAX_PUBLICATIONS_BYTES)?,
    ])
}

/// `subscription_copy`: one row per table a table-sync worker is copying.
pub fn subscription_copy_row(c: v1::SubscriptionCopy) -> Result<Row, FieldError> {
    if c.pid <= 0 {
        return Err(invalid("pid", format!("{} is not a process id", c.pid)));
    }
    Ok(vec![
        name("subname", c.subname)?,
        name("schemaname", c.schemaname)?,
        name("relname", c.relname)?,
        Value::Int4(Some(c.pid)),
        counter("bytes_processed", Some(c.bytes_processed))?,
        counter("tuples_processed", Some(c.tuples_processed))?,
    ])
}

/// `publication`: one row per published table.
pub fn publication_row(t: v1::PublishedTable) -> Result<Row, FieldError> {
    if t.schemaname.is_empty() != t.relname.is_empty() {
        return Err(invalid(
            "relname",
            "schemaname and relname are both set or both empty",
        ));
    }
    Ok(vec![
        name("datname", t.datname)?,
        name("pubname", t.pubname)?,
        Value::Bool(Some(t.all_tables)),
        optional_text("schemaname", t.schemaname, MAX_IDENTIFIER_BYTES)?,
        optional_text("relname", t.relname, MAX_IDENTIFIER_BYTES)?,
    ])
}

fn finite(field: &'static str, value: Option<f64>) -> Result<Value, FieldError> {
    match value {
        Some(v) if !v.is_finite() => Err(invalid(field, format!("must be finite, got {v}"))),
        v => Ok(Value::Float8(v)),
    }
}

/// `subscription`: one row per worker of a subscription.
pub fn subscription_worker_row(w: v1::SubscriptionWorker) -> Result<Row, FieldError> {
    if let Some(pid) = w.pid
        && pid <= 0
    {
        return Err(invalid("pid", format!("must be positive, got {pid}")));
    }
    Ok(vec![
        name("subname", w.subname)?,
        Value::Int4(w.pid),
        Value::Int8(w.relid.map(i64::from)),
        counter("received_lsn", w.received_lsn)?,
        counter("latest_end_lsn", w.latest_end_lsn)?,
        time("last_msg_send_unix_micros", w.last_msg_send_unix_micros)?,
        time(
            "last_msg_receipt_unix_micros",
            w.last_msg_receipt_unix_micros,
        )?,
        time("latest_end_unix_micros", w.latest_end_unix_micros)?,
        counter("apply_error_count", w.apply_error_count)?,
        counter("sync_error_count", w.sync_error_count)?,
        Value::Bool(w.enabled),
        Value::Bool(w.apply_worker_running),
    ])
}

const SYNC_STATES: [&str; 5] = ["init", "data_copy", "finished", "sync_done", "ready"];

/// `subscription_tables`: one row per subscribed table.
pub fn subscription_table_row(t: v1::SubscriptionTable) -> Result<Row, FieldError> {
    if !SYNC_STATES.contains(&t.state.as_str()) {
        return Err(invalid(
            "state",
            format!("{:?} is not one of {}", t.state, SYNC_STATES.join(", ")),
        ));
    }
    Ok(vec![
        name("subname", t.subname)?,
        name("schemaname", t.schemaname)?,
        name("relname", t.relname)?,
        Value::Text(Some(t.state)),
        counter("sync_lsn", t.sync_lsn)?,
    ])
}

/// Labels of a custom metric per row, at most.
pub const MAX_CUSTOM_LABELS: usize = 32;
/// Longest label value kept; the agent truncates longer ones.
pub const MAX_CUSTOM_LABEL_VALUE_BYTES: usize = 1024;

/// `custom`: one value of one row of a user-defined metric; the labels
/// become one jsonb object.
pub fn custom_row(v: v1::CustomMetricValue) -> Result<Row, FieldError> {
    if v.labels.len() > MAX_CUSTOM_LABELS {
        return Err(invalid(
            "labels",
            format!("{} labels, more than {MAX_CUSTOM_LABELS}", v.labels.len()),
        ));
    }
    let mut labels = serde_json::Map::new();
    for l in v.labels {
        let key = match name("labels.name", l.name)? {
            Value::Text(Some(k)) => k,
            _ => return Err(invalid("labels.name", "must not be empty")),
        };
        let value = text("labels.value", l.value, MAX_CUSTOM_LABEL_VALUE_BYTES)?;
        if labels
            .insert(key, serde_json::Value::String(value))
            .is_some()
        {
            return Err(invalid("labels.name", "must be unique within a row"));
        }
    }
    Ok(vec![
        name("metric", v.metric)?,
        name("datname", v.datname)?,
        Value::Jsonb(Some(serde_json::Value::Object(labels))),
        name("value_name", v.value_name)?,
        finite("value", v.value)?,
    ])
}

/// Mount points and device paths are paths: bounded like PATH_MAX.
const MAX_PATH_BYTES: usize = 4096;

/// `host_filesystem`: one row per mount point.
pub fn filesystem_row(f: v1::FilesystemUsage) -> Result<Row, FieldError> {
    let mount_point = text("mount_point", f.mount_point, MAX_PATH_BYTES)?;
    if !mount_point.starts_with('/') {
        return Err(invalid("mount_point", "must be an absolute path"));
    }
    let roles = text("roles", f.roles, 64)?;
    if roles.is_empty() {
        return Err(invalid("roles", "must not be empty"));
    }
    if f.used_bytes > f.total_bytes || f.used_inodes > f.total_inodes {
        return Err(invalid("used_bytes", "used must not exceed total"));
    }
    Ok(vec![
        Value::Text(Some(mount_point)),
        optional_text("device", f.device, MAX_PATH_BYTES)?,
        optional_text("fs_type", f.fs_type, MAX_IDENTIFIER_BYTES)?,
        Value::Text(Some(roles)),
        unsigned("total_bytes", f.total_bytes)?,
        unsigned("used_bytes", f.used_bytes)?,
        unsigned("free_bytes", f.free_bytes)?,
        unsigned("total_inodes", f.total_inodes)?,
        unsigned("used_inodes", f.used_inodes)?,
        unsigned("free_inodes", f.free_inodes)?,
    ])
}

const EVENT_KINDS: [&str; 4] = ["unavailable", "query", "timeout", "connect"];
/// Longest event message kept; the agent truncates longer ones.
pub const MAX_EVENT_MESSAGE_BYTES: usize = 4096;

/// `collector_event`: one row per reported failure.
pub fn collector_event_row(e: v1::CollectorEvent) -> Result<Row, FieldError> {
    if !EVENT_KINDS.contains(&e.kind.as_str()) {
        return Err(invalid(
            "kind",
            format!("{:?} is not one of {}", e.kind, EVENT_KINDS.join(", ")),
        ));
    }
    // SQLSTATEs are five characters of [0-9A-Z].
    if !(e.sqlstate.is_empty()
        || (e.sqlstate.len() == 5
            && e.sqlstate
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())))
    {
        return Err(invalid(
            "sqlstate",
            format!("{:?} is not a SQLSTATE", e.sqlstate),
        ));
    }
    let collector = text("collector", e.collector, 2 * MAX_IDENTIFIER_BYTES)?;
    if collector.is_empty() {
        return Err(invalid("collector", "must not be empty"));
    }
    Ok(vec![
        Value::Text(Some(collector)),
        Value::Text(Some(e.kind)),
        Value::Text(Some(text("message", e.message, MAX_EVENT_MESSAGE_BYTES)?)),
        Value::Text((!e.sqlstate.is_empty()).then_some(e.sqlstate)),
        Value::Int8(Some(i64::from(e.suppressed))),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_labels_become_one_object_and_bad_ones_are_refused() {
        let label = |n: &str, v: &str| v1::CustomLabel {
            name: n.into(),
            value: v.into(),
        };
        let ok = v1::CustomMetricValue {
            metric: "queue_depth".into(),
            datname: "app".into(),
            labels: vec![label("queue", "mail"), label("prio", "1")],
            value_name: "depth".into(),
            value: Some(3.0),
        };
        let row = custom_row(ok.clone()).expect("valid");
        assert_eq!(
            row[2],
            Value::Jsonb(Some(serde_json::json!({"queue": "mail", "prio": "1"})))
        );
        assert_eq!(row[4], Value::Float8(Some(3.0)));

        let mut dup = ok.clone();
        dup.labels.push(label("queue", "x"));
        assert_eq!(custom_row(dup).expect_err("refused").field, "labels.name");
        let mut nan = ok.clone();
        nan.value = Some(f64::NAN);
        assert_eq!(custom_row(nan).expect_err("refused").field, "value");
        let mut many = ok.clone();
        many.labels = (0..33).map(|i| label(&format!("l{i}"), "")).collect();
        assert_eq!(custom_row(many).expect_err("refused").field, "labels");
        let mut nul = ok;
        nul.labels[0].value = "a\0b".into();
        assert_eq!(custom_row(nul).expect_err("refused").field, "labels.value");
    }

    #[test]
    fn events_need_a_known_kind_and_a_real_sqlstate() {
        let ok = v1::CollectorEvent {
            collector: "statement".into(),
            kind: "query".into(),
            message: "permission denied".into(),
            sqlstate: "42501".into(),
            suppressed: 2,
        };
        let row = collector_event_row(ok.clone()).expect("valid");
        assert_eq!(row[3], Value::Text(Some("42501".into())));
        assert_eq!(row[4], Value::Int8(Some(2)));
        let mut kind = ok.clone();
        kind.kind = "boom".into();
        assert_eq!(
            collector_event_row(kind).expect_err("refused").field,
            "kind"
        );
        let mut state = ok.clone();
        state.sqlstate = "4250'".into();
        assert_eq!(
            collector_event_row(state).expect_err("refused").field,
            "sqlstate"
        );
        let mut empty = ok;
        empty.sqlstate.clear();
        assert_eq!(
            collector_event_row(empty).expect("valid")[3],
            Value::Text(None)
        );
    }

    #[test]
    fn topology_rows_are_checked() {
        let id = v1::ReplicationIdentity {
            system_identifier: 7,
            timeline_id: 1,
            in_recovery: false,
            wal_lsn: Some(10),
            port: 5432,
            server_addr: String::new(),
            receiver_application_name: String::new(),
        };
        assert!(replication_identity_row(id.clone()).is_ok());
        let mut tli = id;
        tli.timeline_id = 0;
        assert_eq!(
            replication_identity_row(tli).expect_err("refused").field,
            "timeline_id"
        );
        let src = v1::SubscriptionSource {
            subname: "sub".into(),
            datname: "app".into(),
            enabled: true,
            slot_name: String::new(),
            conn_host: "db1".into(),
            conn_port: Some(5432),
            conn_dbname: "app".into(),
            publications: "p".into(),
        };
        let row = subscription_source_row(src.clone()).expect("valid");
        assert_eq!(row[3], Value::Text(None), "no slot is NULL");
        let mut port = src;
        port.conn_port = Some(70_000);
        assert_eq!(
            subscription_source_row(port).expect_err("refused").field,
            "conn_port"
        );
        let table = v1::PublishedTable {
            datname: "app".into(),
            pubname: "p".into(),
            all_tables: false,
            schemaname: "public".into(),
            relname: "orders".into(),
        };
        assert!(publication_row(table.clone()).is_ok());
        let mut none = table.clone();
        none.schemaname.clear();
        none.relname.clear();
        assert_eq!(
            publication_row(none).expect("no tables")[3],
            Value::Text(None)
        );
        let mut half = table;
        half.schemaname.clear();
        assert_eq!(publication_row(half).expect_err("refused").field, "relname");
    }

    #[test]
    fn filesystems_and_sync_states_are_checked() {
        let fs = v1::FilesystemUsage {
            mount_point: "/".into(),
            device: "/dev/sda1".into(),
            fs_type: "ext4".into(),
            roles: "data,wal".into(),
            total_bytes: 100,
            used_bytes: 40,
            free_bytes: 50,
            total_inodes: 10,
            used_inodes: 1,
            free_inodes: 9,
        };
        assert!(filesystem_row(fs.clone()).is_ok());
        let mut over = fs.clone();
        over.used_bytes = 101;
        assert!(filesystem_row(over).is_err());
        let mut relative = fs;
        relative.mount_point = "data".into();
        assert_eq!(
            filesystem_row(relative).expect_err("refused").field,
            "mount_point"
        );

        let table = v1::SubscriptionTable {
            subname: "sub".into(),
            schemaname: "public".into(),
            relname: "t".into(),
            state: "ready".into(),
            sync_lsn: Some(1),
        };
        assert!(subscription_table_row(table.clone()).is_ok());
        let mut odd = table;
        odd.state = "r".into();
        assert_eq!(
            subscription_table_row(odd).expect_err("refused").field,
            "state"
        );
    }

    #[test]
    fn standby_ports_and_delays() {
        let s = v1::StandbyStatus {
            receiver_status: "streaming".into(),
            sender_port: Some(5432),
            replay_delay_seconds: Some(-0.5),
            ..Default::default()
        };
        let row = standby_row(s.clone()).expect("valid");
        assert_eq!(row[1], Value::Text(None));
        assert_eq!(row[6], Value::Float8(Some(-0.5)));
        let mut port = s;
        port.sender_port = Some(70_000);
        assert_eq!(standby_row(port).expect_err("refused").field, "sender_port");
    }
}
