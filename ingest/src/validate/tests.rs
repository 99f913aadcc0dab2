use chrono::TimeZone;
use lasect_proto::v1::{
    DatabaseRow, DatabaseSnapshot, HostCpu as WireCpu, HostMemory as WireMemory, InstanceInfo,
    Sample, SampleBatch,
};

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
    assert_eq!(batch.databases.len(), 2);
    assert_eq!(batch.host_cpu.len(), 1);
    assert_eq!(batch.host_memory.len(), 1);
    assert_eq!(batch.instances.len(), 2);
    let main = &batch.instances[0];
    assert_eq!(main.name.as_str(), "main");
    assert_eq!(main.last_sample.timestamp_micros(), at(0));
    // The newest InstanceInfo wins, whatever its position in the batch.
    let facts = main.facts.as_ref().expect("main has facts");
    assert_eq!(facts.value.server_version_num, 170002);
    assert_eq!(batch.databases[0].instance, 0);
    assert_eq!(batch.databases[0].stats.counters[0], Some(42));
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

    // Absent counters stay absent (NULL), never zero.
    let row = DatabaseRow {
        datid: u32::MAX,
        datname: "x".into(),
        ..Default::default()
    };
    let batch = validate(vec![sample("main", at(0), database(vec![row]))]).expect("valid");
    let stats = &batch.databases[0].stats;
    assert_eq!(stats.datid, i64::from(u32::MAX));
    assert_eq!(stats.numbackends, None);
    assert!(stats.counters.iter().all(Option::is_none));
    assert_eq!(stats.stats_reset, None);
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
