use chrono::TimeZone;
use lasect_proto::v1::{
    ActivityGroup, ActivitySnapshot, ArchiverStats, BgwriterStats, DatabaseRow, DatabaseSnapshot,
    HostCpu as WireCpu, HostMemory as WireMemory, IndexRow, IndexSnapshot, InstanceInfo, LockCount,
    LockSnapshot, LockWait, Sample, SampleBatch, Setting, SettingChange, SettingsSnapshot,
    StatementRow, StatementSnapshot, StatementText, TableRow, TableSnapshot, WalStats,
};
use lasect_proto::v1::{DiskDevice, HostDiskIo, HostNetwork, NetInterface};
use lasect_proto::v1::{LogEvent, LogPlan, LogSnapshot};
use lasect_proto::v1::{ProgressRow, ProgressSnapshot};
use lasect_proto::v1::{
    ReplicationSlot, ReplicationSlotSnapshot, ReplicationSnapshot, ReplicationStandby,
};
use lasect_proto::v1::{WaitCount, WaitSnapshot};

use super::schema::{DATABASE, HOST_CPU, HOST_MEMORY, INDEX, STATEMENT, TABLE, TABLES, Value};
use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0)
        .single()
        .expect("valid time")
}

fn rules() -> Rules {
    Rules {
        max_samples: 100,
        now: now(),
    }
}

fn at(offset_secs: i64) -> i64 {
    (now() + TimeDelta::seconds(offset_secs)).timestamp_micros()
}

fn sample(instance: &str, time: i64, family: Family) -> Sample {
    Sample {
        instance: instance.into(),
        time_unix_micros: time,
        family: Some(family),
    }
}

fn cpu() -> Family {
    Family::HostCpu(WireCpu {
        cpu_count: 4,
        usage_percent: 12.5,
        load1: 0.5,
        load5: 0.4,
        load15: 0.3,
    })
}

fn memory() -> Family {
    Family::HostMemory(WireMemory {
        total_bytes: 8 << 30,
        used_bytes: 2 << 30,
        available_bytes: 6 << 30,
        free_bytes: 5 << 30,
        swap_total_bytes: 0,
        swap_used_bytes: 0,
    })
}

fn db_row() -> DatabaseRow {
    DatabaseRow {
        datid: 5,
        datname: "postgres".into(),
        numbackends: Some(3),
        xact_commit: Some(42),
        stats_reset_unix_micros: Some(at(-3600)),
        ..Default::default()
    }
}

fn database(rows: Vec<DatabaseRow>) -> Family {
    Family::Database(DatabaseSnapshot { databases: rows })
}

fn info(version_num: i32) -> Family {
    Family::InstanceInfo(InstanceInfo {
        server_version_num: version_num,
        version: "PostgreSQL 17.2".into(),
        in_recovery: false,
    })
}

fn validate(samples: Vec<Sample>) -> Result<Batch, BatchError> {
    Batch::from_samples(SampleBatch { samples }, &rules())
}

fn sample_error(samples: Vec<Sample>) -> (usize, SampleError) {
    match validate(samples) {
        Err(BatchError::Sample { index, error, .. }) => (index, error),
        other => panic!("expected a sample error, got {other:?}"),
    }
}

fn field_of(samples: Vec<Sample>) -> &'static str {
    match sample_error(samples).1 {
        SampleError::Field(f) => f.field,
        other => panic!("expected a field error, got {other}"),
    }
}

#[test]
fn a_mixed_batch_is_split_by_family() {
    let batch = validate(vec![
        sample("main", at(0), database(vec![db_row(), db_row()])),
        sample("", at(0), cpu()),
        sample("", at(1), memory()),
        sample("main", at(-10), info(170002)),
        sample("replica", at(-5), info(160001)),
        sample("main", at(-20), info(170001)),
    ])
    .expect("valid batch");
    assert_eq!(batch.stored_samples, 6);
    assert_eq!(batch.unknown_samples, 0);
    assert_eq!(batch.rows_of(&DATABASE).len(), 2);
    assert_eq!(batch.rows_of(&HOST_CPU).len(), 1);
    assert_eq!(batch.rows_of(&HOST_MEMORY).len(), 1);
    assert_eq!(batch.instances.len(), 2);
    let main = &batch.instances[0];
    assert_eq!(main.name.as_str(), "main");
    assert_eq!(main.last_sample.timestamp_micros(), at(0));
    // The newest InstanceInfo wins, whatever its position in the batch.
    let facts = main.facts.as_ref().expect("main has facts");
    assert_eq!(facts.value.server_version_num, 170002);
    let db = &batch.rows_of(&DATABASE)[0];
    assert_eq!(db.instance, Some(0));
    assert_eq!(db.values[3], Value::Int8(Some(42)));
    assert_eq!(batch.rows_of(&HOST_CPU)[0].instance, None);
    assert_eq!(batch.days().len(), 1);
}

#[test]
fn unknown_families_are_counted_and_skipped() {
    let unknown = Sample {
        instance: "whatever\u{7}".into(),
        time_unix_micros: -1,
        family: None,
    };
    let batch = validate(vec![unknown.clone(), sample("", at(0), cpu()), unknown])
        .expect("unknown samples are not errors");
    assert_eq!(batch.unknown_samples, 2);
    assert_eq!(batch.stored_samples, 1);
}

#[test]
fn seq_must_be_a_positive_bigint() {
    assert_eq!(Seq::try_from(1), Ok(Seq(1)));
    assert_eq!(Seq::try_from(i64::MAX as u64), Ok(Seq(i64::MAX)));
    assert_eq!(Seq::try_from(0), Err(BatchError::SeqOutOfRange(0)));
    assert_eq!(
        Seq::try_from(u64::MAX),
        Err(BatchError::SeqOutOfRange(u64::MAX))
    );
}

#[test]
fn too_many_samples() {
    let samples = vec![sample("", at(0), cpu()); 101];
    assert_eq!(
        validate(samples),
        Err(BatchError::TooManySamples {
            count: 101,
            limit: 100
        })
    );
}

#[test]
fn one_bad_sample_rejects_the_batch_and_names_it() {
    let mut bad = db_row();
    bad.xact_commit = Some(-1);
    let (index, error) = sample_error(vec![
        sample("main", at(0), database(vec![db_row()])),
        sample("", at(0), cpu()),
        sample("main", at(0), database(vec![db_row(), bad])),
    ]);
    assert_eq!(index, 2);
    assert_eq!(
        error.to_string(),
        "xact_commit must not be negative, got -1"
    );
}

#[test]
fn time_window() {
    let earliest = EARLIEST_MICROS;
    assert!(validate(vec![sample("", earliest, cpu())]).is_ok());
    assert!(validate(vec![sample("", at(86_400), cpu())]).is_ok());
    for time in [earliest - 1, at(86_401), 0, i64::MIN, i64::MAX] {
        assert_eq!(
            sample_error(vec![sample("", time, cpu())]).1,
            SampleError::TimeOutOfRange(time)
        );
    }
}

#[test]
fn instance_names() {
    assert!(validate(vec![sample(&"é".repeat(63), at(0), info(1))]).is_ok());
    for name in ["", &"x".repeat(64), "a\nb", "a\0b", "tab\there"] {
        assert_eq!(
            field_of(vec![sample(name, at(0), database(vec![]))]),
            "instance",
            "{name:?}"
        );
    }
    // Host families belong to the agent's host, never to an instance.
    for family in [cpu(), memory()] {
        assert_eq!(
            sample_error(vec![sample("main", at(0), family)]).1,
            SampleError::InstanceOnHostSample
        );
    }
}

#[test]
fn database_rows() {
    let check = |edit: fn(&mut DatabaseRow)| {
        let mut row = db_row();
        edit(&mut row);
        field_of(vec![sample("main", at(0), database(vec![row]))])
    };
    assert_eq!(check(|r| r.datname.clear()), "datname");
    assert_eq!(check(|r| r.datname = "a\0".into()), "datname");
    assert_eq!(check(|r| r.datname = "d".repeat(64)), "datname");
    assert_eq!(
        check(|r| r.numbackends = Some(i64::from(i32::MAX) + 1)),
        "numbackends"
    );
    assert_eq!(check(|r| r.numbackends = Some(-1)), "numbackends");
    assert_eq!(check(|r| r.size_bytes = Some(-5)), "size_bytes");
    assert_eq!(check(|r| r.deadlocks = Some(i64::MIN)), "deadlocks");
    assert_eq!(
        check(|r| r.stats_reset_unix_micros = Some(i64::MIN)),
        "stats_reset_unix_micros"
    );
    assert_eq!(check(|r| r.datfrozenxid_age = Some(-1)), "datfrozenxid_age");
    assert_eq!(
        check(|r| r.datminmxid_age = Some(i64::from(i32::MAX) + 1)),
        "datminmxid_age"
    );

    // Absent counters stay absent (NULL), never zero.
    let row = DatabaseRow {
        datid: u32::MAX,
        datname: "x".into(),
        ..Default::default()
    };
    let batch = validate(vec![sample("main", at(0), database(vec![row]))]).expect("valid");
    let values = &batch.rows_of(&DATABASE)[0].values;
    assert_eq!(values[0], Value::Int8(Some(i64::from(u32::MAX))));
    assert_eq!(values[2], Value::Int4(None));
    assert!(values[3..17].iter().all(|v| *v == Value::Int8(None)));
    assert_eq!(values[17], Value::Timestamptz(None));
    assert_eq!(values[18..], [Value::Int4(None), Value::Int4(None)]);

    let row = DatabaseRow {
        datfrozenxid_age: Some(1_500_000_000),
        datminmxid_age: Some(0),
        ..db_row()
    };
    let batch = validate(vec![sample("main", at(0), database(vec![row]))]).expect("valid");
    let values = &batch.rows_of(&DATABASE)[0].values;
    assert_eq!(
        values[18..],
        [Value::Int4(Some(1_500_000_000)), Value::Int4(Some(0))]
    );
}

#[test]
fn host_cpu_values() {
    let check = |edit: fn(&mut WireCpu)| {
        let Family::HostCpu(mut c) = cpu() else {
            unreachable!()
        };
        edit(&mut c);
        validate(vec![sample("", at(0), Family::HostCpu(c))])
    };
    assert!(check(|c| c.usage_percent = 100.0).is_ok());
    assert!(check(|c| c.usage_percent = 0.0).is_ok());
    for edit in [
        (|c: &mut WireCpu| c.usage_percent = 100.1) as fn(&mut WireCpu),
        |c| c.usage_percent = -0.1,
        |c| c.usage_percent = f64::NAN,
        |c| c.load1 = f64::INFINITY,
        |c| c.load5 = -1.0,
        |c| c.load15 = f64::NAN,
        |c| c.cpu_count = u32::MAX,
    ] {
        assert!(check(edit).is_err());
    }
}

#[test]
fn host_memory_must_fit_bigint() {
    let Family::HostMemory(mut m) = memory() else {
        unreachable!()
    };
    m.swap_used_bytes = u64::MAX;
    assert_eq!(
        field_of(vec![sample("", at(0), Family::HostMemory(m))]),
        "swap_used_bytes"
    );
}

#[test]
fn instance_info_values() {
    assert_eq!(
        field_of(vec![sample("main", at(0), info(-1))]),
        "server_version_num"
    );
    let nul = Family::InstanceInfo(InstanceInfo {
        server_version_num: 1,
        version: "a\0".into(),
        in_recovery: true,
    });
    assert_eq!(field_of(vec![sample("main", at(0), nul)]), "version");
}

fn statement(rows: Vec<StatementRow>, texts: Vec<StatementText>) -> Family {
    Family::Statement(StatementSnapshot { rows, texts })
}

fn statement_row() -> StatementRow {
    StatementRow {
        queryid: -42,
        dbid: 5,
        userid: 10,
        toplevel: true,
        calls: Some(3),
        total_exec_time_ms: Some(1.5),
        ..Default::default()
    }
}

#[test]
fn statement_rows_and_texts() {
    let text = StatementText {
        queryid: -42,
        query: "SELECT $1".into(),
    };
    let batch = validate(vec![sample(
        "main",
        at(0),
        statement(vec![statement_row()], vec![text]),
    )])
    .expect("valid");
    let rows = batch.rows_of(&STATEMENT);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].values[0], Value::Int8(Some(-42)));
    assert_eq!(rows[0].values[5], Value::Int8(Some(3)));
    assert_eq!(rows[0].values[6], Value::Int8(None));
    assert_eq!(batch.statement_texts.len(), 1);
    assert_eq!(batch.statement_texts[0].text.query, "SELECT $1");

    let check = |edit: fn(&mut StatementRow)| {
        let mut row = statement_row();
        edit(&mut row);
        field_of(vec![sample("main", at(0), statement(vec![row], vec![]))])
    };
    assert_eq!(check(|r| r.calls = Some(-1)), "calls");
    assert_eq!(
        check(|r| r.total_exec_time_ms = Some(f64::NAN)),
        "total_exec_time_ms"
    );
    assert_eq!(
        check(|r| r.shared_blk_read_time_ms = Some(-0.5)),
        "shared_blk_read_time_ms"
    );
    assert_eq!(check(|r| r.wal_bytes = Some(i64::MIN)), "wal_bytes");
    let nul = StatementText {
        queryid: 1,
        query: "a\0".into(),
    };
    assert_eq!(
        field_of(vec![sample("main", at(0), statement(vec![], vec![nul]))]),
        "query"
    );
    assert_eq!(
        field_of(vec![sample("", at(0), statement(vec![], vec![]))]),
        "instance"
    );
}

#[test]
fn rows_match_their_table_descriptors() {
    // Every family's row function yields one value per column, of the
    // column's type: the writer relies on it.
    let batch = validate(
        vec![
            sample("main", at(0), database(vec![db_row()])),
            sample("", at(0), cpu()),
            sample("", at(0), memory()),
            sample("main", at(0), statement(vec![statement_row()], vec![])),
            sample(
                "main",
                at(0),
                Family::Table(TableSnapshot {
                    tables: vec![table_row()],
                }),
            ),
            sample(
                "main",
                at(0),
                Family::Index(IndexSnapshot {
                    indexes: vec![index_row()],
                }),
            ),
            sample(
                "main",
                at(0),
                Family::Wal(WalStats {
                    current_lsn: Some(1),
                    ..Default::default()
                }),
            ),
            sample("main", at(0), Family::Bgwriter(BgwriterStats::default())),
            sample("main", at(0), Family::Archiver(ArchiverStats::default())),
            sample("main", at(0), settings(setting(), Some(change()))),
            sample("main", at(0), activity()),
            sample("main", at(0), lock(lock_wait())),
            sample("main", at(0), progress(progress_row())),
            sample("main", at(0), wait(10, wait_count())),
            sample("", at(0), net(iface())),
            sample("", at(0), disks(disk())),
            sample(
                "main",
                at(0),
                Family::Replication(ReplicationSnapshot {
                    standbys: vec![standby()],
                }),
            ),
            sample(
                "main",
                at(0),
                Family::ReplicationSlot(ReplicationSlotSnapshot {
                    slots: vec![slot()],
                }),
            ),
            sample("main", at(0), log_sample(log_event())),
        ]
        .into_iter()
        .chain(ops_samples())
        .collect(),
    )
    .expect("valid");
    // `backup` is written by the API from what the store knows; no agent sample carries it.
    let sent_by_agents = TABLES.iter().filter(|t| t.family != "backup").count();
    assert_eq!(batch.tables.len(), sent_by_agents);
    for t in &batch.tables {
        for row in &t.rows {
            let types: Vec<_> = row.values.iter().map(Value::column_type).collect();
            let want: Vec<_> = t.table.columns.iter().map(|(_, ty)| *ty).collect();
            assert_eq!(types, want, "{}", t.table.name);
            // A NULL in a NOT NULL column would fail the whole group's COPY at the store.
            let declared = lasect_families::find(t.table.family).expect("declared family");
            for (column, value) in declared.columns.iter().zip(&row.values) {
                assert!(
                    column.nullable || !value.is_null(),
                    "{}.{} is NOT NULL",
                    t.table.name,
                    column.name
                );
            }
        }
    }
}

fn table_row() -> TableRow {
    TableRow {
        datname: "app".into(),
        relid: 16384,
        schemaname: "public".into(),
        relname: "t".into(),
        n_live_tup: Some(75),
        n_dead_tup: Some(25),
        last_autovacuum_unix_micros: Some(at(-60)),
        ..Default::default()
    }
}

fn index_row() -> IndexRow {
    IndexRow {
        datname: "app".into(),
        indexrelid: 16390,
        relid: 16384,
        schemaname: "public".into(),
        relname: "t".into(),
        indexrelname: "t_pkey".into(),
        idx_scan: Some(0),
        is_primary: true,
        is_unique: true,
        ..Default::default()
    }
}

#[test]
fn table_and_index_rows() {
    let table = |t: TableRow| {
        sample(
            "main",
            at(0),
            Family::Table(TableSnapshot { tables: vec![t] }),
        )
    };
    let batch = validate(vec![table(table_row())]).expect("valid");
    let values = &batch.rows_of(&TABLE)[0].values;
    assert_eq!(values[15], Value::Float8(Some(0.25)), "dead tuple ratio");
    let mut idle = table_row();
    idle.n_live_tup = Some(0);
    idle.n_dead_tup = Some(0);
    let batch = validate(vec![table(idle)]).expect("valid");
    assert_eq!(
        batch.rows_of(&TABLE)[0].values[15],
        Value::Float8(Some(0.0))
    );
    let mut unknown = table_row();
    unknown.n_dead_tup = None;
    let batch = validate(vec![table(unknown)]).expect("valid");
    assert_eq!(batch.rows_of(&TABLE)[0].values[15], Value::Float8(None));

    let check = |edit: fn(&mut TableRow)| {
        let mut t = table_row();
        edit(&mut t);
        field_of(vec![table(t)])
    };
    assert_eq!(check(|t| t.relname.clear()), "relname");
    assert_eq!(check(|t| t.schemaname = "s\0".into()), "schemaname");
    assert_eq!(check(|t| t.n_dead_tup = Some(-1)), "n_dead_tup");
    assert_eq!(
        check(|t| t.last_vacuum_unix_micros = Some(i64::MAX)),
        "last_vacuum_unix_micros"
    );

    let index = |i: IndexRow| {
        sample(
            "main",
            at(0),
            Family::Index(IndexSnapshot { indexes: vec![i] }),
        )
    };
    let batch = validate(vec![index(index_row())]).expect("valid");
    assert_eq!(batch.rows_of(&INDEX)[0].values[14], Value::Bool(Some(true)));
    let mut bad = index_row();
    bad.indexrelname = "i".repeat(64);
    assert_eq!(field_of(vec![index(bad)]), "indexrelname");
    let mut bad = index_row();
    bad.size_bytes = Some(-3);
    assert_eq!(field_of(vec![index(bad)]), "size_bytes");
}

fn setting() -> Setting {
    Setting {
        name: "work_mem".into(),
        setting: "4096".into(),
        unit: "kB".into(),
        source: "default".into(),
        pending_restart: false,
    }
}

fn change() -> SettingChange {
    SettingChange {
        name: "work_mem".into(),
        old_setting: "4096".into(),
        new_setting: "8192".into(),
        pending_restart: false,
    }
}

fn settings(s: Setting, c: Option<SettingChange>) -> Family {
    Family::Settings(SettingsSnapshot {
        settings: vec![s],
        changes: c.into_iter().collect(),
    })
}

#[test]
fn server_stats_and_settings() {
    let wal = |w: WalStats| vec![sample("main", at(0), Family::Wal(w))];
    assert_eq!(
        field_of(wal(WalStats {
            wal_bytes: Some(-1),
            ..Default::default()
        })),
        "wal_bytes"
    );
    assert_eq!(
        field_of(wal(WalStats {
            wal_sync_time_ms: Some(f64::INFINITY),
            ..Default::default()
        })),
        "wal_sync_time_ms"
    );
    let arch = |a: ArchiverStats| vec![sample("main", at(0), Family::Archiver(a))];
    let batch = validate(arch(ArchiverStats::default())).expect("valid");
    assert_eq!(
        batch.rows_of(&schema::ARCHIVER)[0].values[1],
        Value::Text(None),
        "empty = none"
    );
    assert_eq!(
        field_of(arch(ArchiverStats {
            last_failed_wal: "x".repeat(65),
            ..Default::default()
        })),
        "last_failed_wal"
    );
    let bg = BgwriterStats {
        buffers_alloc: Some(-2),
        ..Default::default()
    };
    assert_eq!(
        field_of(vec![sample("main", at(0), Family::Bgwriter(bg))]),
        "buffers_alloc"
    );

    let batch = validate(vec![sample(
        "main",
        at(0),
        settings(setting(), Some(change())),
    )])
    .expect("valid");
    assert_eq!(batch.rows_of(&schema::SETTINGS).len(), 1);
    assert_eq!(batch.rows_of(&schema::SETTING_CHANGES).len(), 1);
    let mut bad = setting();
    bad.name.clear();
    assert_eq!(
        field_of(vec![sample("main", at(0), settings(bad, None))]),
        "name"
    );
    let mut bad = setting();
    bad.setting = "v".repeat(8193);
    assert_eq!(
        field_of(vec![sample("main", at(0), settings(bad, None))]),
        "setting"
    );
    let mut bad = change();
    bad.new_setting = "a\0".into();
    assert_eq!(
        field_of(vec![sample("main", at(0), settings(setting(), Some(bad)))]),
        "new_setting"
    );
}

fn activity() -> Family {
    Family::Activity(ActivitySnapshot {
        groups: vec![ActivityGroup {
            datname: "app".into(),
            usename: String::new(),
            application_name: "psql".into(),
            state: "active".into(),
            sessions: 3,
            waiting: 1,
        }],
        max_connections: Some(100),
        total_sessions: Some(25),
        waiting_sessions: Some(1),
        oldest_xact_age_seconds: Some(1.5),
        oldest_query_age_seconds: None,
        oldest_idle_in_xact_age_seconds: None,
    })
}

#[test]
fn activity_rows() {
    let batch = validate(vec![sample("main", at(0), activity())]).expect("valid");
    let summary = &batch.rows_of(&schema::ACTIVITY)[0].values;
    assert_eq!(summary[2], Value::Float8(Some(25.0)), "connection use %");
    let group = &batch.rows_of(&schema::ACTIVITY_SESSIONS)[0].values;
    assert_eq!(group[1], Value::Text(None), "unknown user");
    let Family::Activity(mut bad) = activity() else {
        unreachable!()
    };
    bad.groups[0].sessions = -1;
    assert_eq!(
        field_of(vec![sample("main", at(0), Family::Activity(bad))]),
        "sessions"
    );
    let Family::Activity(mut bad) = activity() else {
        unreachable!()
    };
    bad.oldest_query_age_seconds = Some(-1.0);
    assert_eq!(
        field_of(vec![sample("main", at(0), Family::Activity(bad))]),
        "oldest_query_age_seconds"
    );
}

fn lock_wait() -> LockWait {
    LockWait {
        blocked_pid: 100,
        blocking_pid: 200,
        datname: "app".into(),
        wait_seconds: Some(2.5),
        blocked_query: "SELECT 1".into(),
        blocking_query: String::new(),
    }
}

fn lock(wait: LockWait) -> Family {
    Family::Lock(LockSnapshot {
        counts: vec![LockCount {
            locktype: "relation".into(),
            mode: "AccessShareLock".into(),
            granted: true,
            count: 4,
        }],
        waits: vec![wait],
    })
}

#[test]
fn lock_rows() {
    let batch = validate(vec![sample("main", at(0), lock(lock_wait()))]).expect("valid");
    assert_eq!(batch.rows_of(&schema::LOCK).len(), 1);
    let wait = &batch.rows_of(&schema::LOCK_WAITS)[0].values;
    assert_eq!(wait[5], Value::Text(None), "empty query = unknown");
    let check = |edit: fn(&mut LockWait)| {
        let mut w = lock_wait();
        edit(&mut w);
        field_of(vec![sample("main", at(0), lock(w))])
    };
    assert_eq!(check(|w| w.blocked_pid = 0), "blocked_pid");
    assert_eq!(check(|w| w.blocking_pid = -5), "blocking_pid");
    assert_eq!(check(|w| w.wait_seconds = Some(f64::NAN)), "wait_seconds");
    assert_eq!(
        check(|w| w.blocked_query = "q".repeat(4097)),
        "blocked_query"
    );
}

fn standby() -> ReplicationStandby {
    ReplicationStandby {
        pid: 42,
        application_name: "walreceiver".into(),
        state: "streaming".into(),
        sync_state: "async".into(),
        sent_lag_bytes: Some(0),
        replay_lag_seconds: Some(0.25),
        ..Default::default()
    }
}

fn slot() -> ReplicationSlot {
    ReplicationSlot {
        slot_name: "s1".into(),
        slot_type: "logical".into(),
        plugin: "test_decoding".into(),
        datname: "postgres".into(),
        retained_bytes: Some(1 << 20),
        wal_status: "reserved".into(),
        safe_wal_size: Some(-5),
        ..Default::default()
    }
}

#[test]
fn replication_rows() {
    let repl = |r: ReplicationStandby| {
        vec![sample(
            "main",
            at(0),
            Family::Replication(ReplicationSnapshot { standbys: vec![r] }),
        )]
    };
    assert!(validate(repl(standby())).is_ok());
    let mut bad = standby();
    bad.flush_lag_bytes = Some(-1);
    assert_eq!(field_of(repl(bad)), "flush_lag_bytes");
    let mut bad = standby();
    bad.pid = 0;
    assert_eq!(field_of(repl(bad)), "pid");
    let slots = |s: ReplicationSlot| {
        vec![sample(
            "main",
            at(0),
            Family::ReplicationSlot(ReplicationSlotSnapshot { slots: vec![s] }),
        )]
    };
    let batch = validate(slots(slot())).expect("negative safe_wal_size is real");
    assert_eq!(
        batch.rows_of(&schema::REPLICATION_SLOT)[0].values[8],
        Value::Int8(Some(-5))
    );
    let mut bad = slot();
    bad.slot_name.clear();
    assert_eq!(field_of(slots(bad)), "slot_name");
}

fn progress_row() -> ProgressRow {
    ProgressRow {
        command: "basebackup".into(),
        pid: 7,
        phase: "streaming database files".into(),
        done: Some(25),
        total: Some(100),
        ..Default::default()
    }
}

fn progress(p: ProgressRow) -> Family {
    Family::Progress(ProgressSnapshot { commands: vec![p] })
}

#[test]
fn progress_rows() {
    let batch = validate(vec![sample("main", at(0), progress(progress_row()))]).expect("valid");
    let values = &batch.rows_of(&schema::PROGRESS)[0].values;
    assert_eq!(values[7], Value::Float8(Some(25.0)));
    let mut grown = progress_row();
    grown.done = Some(120);
    let batch = validate(vec![sample("main", at(0), progress(grown))]).expect("valid");
    assert_eq!(
        batch.rows_of(&schema::PROGRESS)[0].values[7],
        Value::Float8(Some(100.0))
    );
    let mut unknown = progress_row();
    unknown.total = Some(0);
    let batch = validate(vec![sample("main", at(0), progress(unknown))]).expect("valid");
    assert_eq!(
        batch.rows_of(&schema::PROGRESS)[0].values[7],
        Value::Float8(None)
    );
    let mut bad = progress_row();
    bad.done = Some(-1);
    assert_eq!(field_of(vec![sample("main", at(0), progress(bad))]), "done");
    let mut bad = progress_row();
    bad.command.clear();
    assert_eq!(
        field_of(vec![sample("main", at(0), progress(bad))]),
        "command"
    );
}

fn wait_count() -> WaitCount {
    WaitCount {
        wait_event_type: "Lock".into(),
        wait_event: "relation".into(),
        queryid: Some(-7),
        count: 15,
    }
}

fn wait(samples: u32, c: WaitCount) -> Family {
    Family::Wait(WaitSnapshot {
        samples,
        counts: vec![c],
    })
}

#[test]
fn wait_rows() {
    let batch = validate(vec![sample("main", at(0), wait(10, wait_count()))]).expect("valid");
    assert_eq!(
        batch.rows_of(&schema::WAIT)[0].values[5],
        Value::Float8(Some(1.5))
    );
    assert_eq!(
        field_of(vec![sample("main", at(0), wait(0, wait_count()))]),
        "samples"
    );
    let mut bad = wait_count();
    bad.count = -1;
    assert_eq!(
        field_of(vec![sample("main", at(0), wait(10, bad))]),
        "count"
    );
    let mut bad = wait_count();
    bad.wait_event.clear();
    assert_eq!(
        field_of(vec![sample("main", at(0), wait(10, bad))]),
        "wait_event"
    );
}

fn iface() -> NetInterface {
    NetInterface {
        name: "eth0".into(),
        rx_bytes: 1000,
        tx_bytes: 2000,
        rx_bytes_per_sec: Some(10.0),
        ..Default::default()
    }
}

fn net(i: NetInterface) -> Family {
    Family::HostNetwork(HostNetwork {
        interfaces: vec![i],
    })
}

fn disk() -> DiskDevice {
    DiskDevice {
        name: "sda".into(),
        reads: 10,
        read_bytes: 4096,
        util_percent: Some(12.5),
        ..Default::default()
    }
}

fn disks(d: DiskDevice) -> Family {
    Family::HostDiskIo(HostDiskIo { devices: vec![d] })
}

#[test]
fn host_network_and_disk_rows() {
    let batch = validate(vec![
        sample("", at(0), net(iface())),
        sample("", at(0), disks(disk())),
    ])
    .expect("valid");
    assert_eq!(batch.rows_of(&schema::HOST_NETWORK).len(), 1);
    assert_eq!(batch.rows_of(&schema::HOST_DISK_IO).len(), 1);
    assert_eq!(
        sample_error(vec![sample("main", at(0), net(iface()))]).1,
        SampleError::InstanceOnHostSample
    );
    let mut bad = iface();
    bad.tx_bytes = u64::MAX;
    assert_eq!(field_of(vec![sample("", at(0), net(bad))]), "tx_bytes");
    let mut bad = iface();
    bad.name.clear();
    assert_eq!(field_of(vec![sample("", at(0), net(bad))]), "name");
    let mut bad = disk();
    bad.util_percent = Some(100.5);
    assert_eq!(
        field_of(vec![sample("", at(0), disks(bad))]),
        "util_percent"
    );
    let mut bad = disk();
    bad.write_bytes_per_sec = Some(f64::NAN);
    assert_eq!(
        field_of(vec![sample("", at(0), disks(bad))]),
        "write_bytes_per_sec"
    );
}

/// One sample of each family of `ops_families`, every optional field set.
fn ops_samples() -> Vec<Sample> {
    use lasect_proto::v1 as w;
    vec![
        sample(
            "main",
            at(0),
            Family::SubscriptionCopy(w::SubscriptionCopySnapshot {
                copies: vec![w::SubscriptionCopy {
                    subname: "sub".into(),
                    schemaname: "public".into(),
                    relname: "orders".into(),
                    pid: 4242,
                    bytes_processed: 1 << 20,
                    tuples_processed: 50_000,
                }],
            }),
        ),
        sample(
            "main",
            at(0),
            Family::Publication(w::PublicationSnapshot {
                tables: vec![w::PublishedTable {
                    datname: "app".into(),
                    pubname: "pub".into(),
                    all_tables: false,
                    schemaname: "public".into(),
                    relname: "orders".into(),
                }],
            }),
        ),
        sample(
            "main",
            at(0),
            Family::ReplicationIdentity(w::ReplicationIdentity {
                system_identifier: 7_300_000_000_000_000_000,
                timeline_id: 2,
                in_recovery: true,
                wal_lsn: Some(100),
                port: 5433,
                server_addr: "10.0.0.2".into(),
                receiver_application_name: "standby1".into(),
            }),
        ),
        sample(
            "main",
            at(0),
            Family::SubscriptionSource(w::SubscriptionSourceSnapshot {
                subscriptions: vec![w::SubscriptionSource {
                    subname: "sub".into(),
                    datname: "app".into(),
                    enabled: true,
                    slot_name: "sub".into(),
                    conn_host: "10.0.0.1".into(),
                    conn_port: Some(5432),
                    conn_dbname: "app".into(),
                    publications: "pub".into(),
                }],
            }),
        ),
        sample(
            "main",
            at(0),
            Family::Standby(w::StandbyStatus {
                receiver_status: "streaming".into(),
                sender_host: "10.0.0.1".into(),
                sender_port: Some(5432),
                slot_name: "s".into(),
                receive_lsn: Some(100),
                replay_lsn: Some(90),
                replay_delay_seconds: Some(0.5),
                replay_lag_bytes: Some(10),
                last_msg_age_seconds: Some(0.1),
            }),
        ),
        sample(
            "main",
            at(0),
            Family::Subscription(w::SubscriptionSnapshot {
                workers: vec![w::SubscriptionWorker {
                    subname: "sub".into(),
                    pid: Some(7),
                    relid: Some(16384),
                    received_lsn: Some(1),
                    latest_end_lsn: Some(1),
                    last_msg_send_unix_micros: Some(1_700_000_000_000_000),
                    last_msg_receipt_unix_micros: Some(1_700_000_000_000_000),
                    latest_end_unix_micros: Some(1_700_000_000_000_000),
                    apply_error_count: Some(0),
                    sync_error_count: Some(0),
                    enabled: Some(true),
                    apply_worker_running: None,
                }],
                tables: vec![w::SubscriptionTable {
                    subname: "sub".into(),
                    schemaname: "public".into(),
                    relname: "t".into(),
                    state: "ready".into(),
                    sync_lsn: Some(5),
                }],
            }),
        ),
        sample(
            "main",
            at(0),
            Family::Custom(w::CustomMetricSnapshot {
                values: vec![w::CustomMetricValue {
                    metric: "m".into(),
                    datname: "app".into(),
                    labels: vec![w::CustomLabel {
                        name: "k".into(),
                        value: "v".into(),
                    }],
                    value_name: "v".into(),
                    value: Some(1.0),
                }],
            }),
        ),
        sample(
            "main",
            at(0),
            Family::HostFilesystem(w::HostFilesystem {
                filesystems: vec![w::FilesystemUsage {
                    mount_point: "/".into(),
                    device: "/dev/sda1".into(),
                    fs_type: "ext4".into(),
                    roles: "data".into(),
                    total_bytes: 10,
                    used_bytes: 5,
                    free_bytes: 5,
                    total_inodes: 10,
                    used_inodes: 1,
                    free_inodes: 9,
                }],
            }),
        ),
        sample(
            "main",
            at(0),
            Family::CollectorEvent(w::CollectorEvent {
                collector: "statement".into(),
                kind: "unavailable".into(),
                message: "pg_stat_statements is not installed".into(),
                sqlstate: String::new(),
                suppressed: 0,
            }),
        ),
    ]
}

fn log_event() -> LogEvent {
    LogEvent {
        time_unix_micros: Some(at(-30)),
        severity: "ERROR".into(),
        sqlstate: "22012".into(),
        message: "division by zero".into(),
        statement: "SELECT ?/?".into(),
        pid: Some(42),
        source: "jsonlog".into(),
        ..LogEvent::default()
    }
}

fn log_sample(event: LogEvent) -> Family {
    Family::Log(LogSnapshot {
        events: vec![event],
        plans: vec![LogPlan {
            time_unix_micros: None,
            query_id: Some(-9),
            plan: "Result".into(),
            truncated: Some(true),
            ..LogPlan::default()
        }],
        dropped_events: 3,
        truncated_lines: 0,
        unparsed_lines: 2,
    })
}

#[test]
fn log_events_are_stored_at_their_own_time() {
    let batch = validate(vec![sample("main", at(0), log_sample(log_event()))]).expect("valid");
    let events = batch.rows_of(&super::schema::LOG);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].time.timestamp_micros(), at(-30));
    assert_eq!(events[0].values[1], Value::Text(Some("22012".into())));
    assert_eq!(
        events[0].values[3],
        Value::Text(None),
        "empty detail is NULL"
    );
    let plans = batch.rows_of(&super::schema::LOG_PLANS);
    assert_eq!(
        plans[0].time.timestamp_micros(),
        at(0),
        "no time: the sample's"
    );
    assert_eq!(plans[0].values.last(), Some(&Value::Bool(Some(true))));
    let drops = batch.rows_of(&super::schema::LOG_DROPS);
    assert_eq!(drops[0].values[0], Value::Int8(Some(3)));
}

#[test]
fn bad_log_events_are_refused() {
    let bad = |f: fn(&mut LogEvent)| {
        let mut e = log_event();
        f(&mut e);
        field_of(vec![sample("main", at(0), log_sample(e))])
    };
    assert_eq!(bad(|e| e.sqlstate = "2201'".into()), "sqlstate");
    assert_eq!(bad(|e| e.severity.clear()), "severity");
    assert_eq!(bad(|e| e.message = "a\0b".into()), "message");
    assert_eq!(bad(|e| e.pid = Some(0)), "pid");
    assert_eq!(bad(|e| e.duration_ms = Some(f64::NAN)), "duration_ms");
    let mut future = log_event();
    future.time_unix_micros = Some(at(86_400 * 30));
    assert!(matches!(
        sample_error(vec![sample("main", at(0), log_sample(future))]).1,
        SampleError::TimeOutOfRange(_)
    ));
}

#[test]
fn subscription_rows_say_enabled_and_apply_worker_running() {
    use lasect_proto::v1 as w;
    let worker = |enabled, running| w::SubscriptionWorker {
        subname: "sub".into(),
        enabled,
        apply_worker_running: running,
        ..Default::default()
    };
    let batch = validate(vec![sample(
        "main",
        at(0),
        Family::Subscription(w::SubscriptionSnapshot {
            workers: vec![
                worker(Some(true), Some(false)),
                worker(Some(false), Some(true)),
                // An older agent sends neither: unknown, not false.
                worker(None, None),
            ],
            tables: vec![],
        }),
    )])
    .expect("valid");
    let got: Vec<_> = batch
        .rows_of(&super::schema::SUBSCRIPTION)
        .iter()
        .map(|r| r.values[r.values.len() - 2..].to_vec())
        .collect();
    assert_eq!(
        got,
        [
            [Value::Bool(Some(true)), Value::Bool(Some(false))],
            [Value::Bool(Some(false)), Value::Bool(Some(true))],
            [Value::Bool(None), Value::Bool(None)],
        ]
    );
}
