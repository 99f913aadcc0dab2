//! The ingest batch decoder (`lasect_ingest::push`: decompression of every
//! codec, protobuf, validation into rows) on random and mutated inputs: it
//! never panics, and whatever it accepts keeps the invariants the writer
//! relies on. The same harness (`fuzz_harness::one`) is the cargo-fuzz target
//! in `ingest/fuzz`; this runs it in the normal suite, without nightly.

use chrono::{DateTime, Utc};
use lasect_ingest::fuzz_harness;
use lasect_ingest::push::{DecodeLimits, check_invariants, decode_batch};
use lasect_proto::payload;
use lasect_proto::v1::sample::Family;
use lasect_proto::v1::{
    ActivityGroup, ActivitySnapshot, Codec, DatabaseRow, DatabaseSnapshot, HostCpu, HostMemory,
    IndexRow, IndexSnapshot, InstanceInfo, Sample, SampleBatch, StatementRow, StatementSnapshot,
    StatementText, TableRow, TableSnapshot, WaitCount, WaitSnapshot,
};
use proptest::prelude::*;
use prost::Message;

const NOW_MICROS: i64 = 1_750_000_000_000_000;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(NOW_MICROS).expect("valid time")
}

/// A valid batch with instance-keyed, host and multi-row families and a
/// statement text.
fn valid_batch() -> SampleBatch {
    let sample = |instance: &str, family| Sample {
        instance: instance.to_owned(),
        time_unix_micros: NOW_MICROS - 10_000_000,
        family: Some(family),
    };
    SampleBatch {
        samples: vec![
            sample(
                "main",
                Family::InstanceInfo(InstanceInfo {
                    server_version_num: 170_002,
                    version: "PostgreSQL 17.2".to_owned(),
                    in_recovery: false,
                }),
            ),
            sample(
                "main",
                Family::Database(DatabaseSnapshot {
                    databases: vec![DatabaseRow {
                        datid: 5,
                        datname: "postgres".to_owned(),
                        xact_commit: Some(42),
                        ..Default::default()
                    }],
                }),
            ),
            sample(
                "",
                Family::HostCpu(HostCpu {
                    cpu_count: 4,
                    usage_percent: 12.5,
                    load1: 0.5,
                    load5: 0.4,
                    load15: 0.3,
                }),
            ),
            sample(
                "",
                Family::HostMemory(HostMemory {
                    total_bytes: 1 << 30,
                    used_bytes: 1 << 29,
                    ..Default::default()
                }),
            ),
            sample(
                "replica",
                Family::Statement(StatementSnapshot {
                    rows: vec![StatementRow {
                        queryid: -7,
                        dbid: 5,
                        userid: 10,
                        toplevel: true,
                        calls: Some(3),
                        total_exec_time_ms: Some(1.5),
                        ..Default::default()
                    }],
                    texts: vec![StatementText {
                        queryid: -7,
                        query: "SELECT 1".to_owned(),
                    }],
                }),
            ),
            sample(
                "main",
                Family::Table(TableSnapshot {
                    tables: vec![TableRow {
                        datname: "app".to_owned(),
                        relid: 16_384,
                        schemaname: "public".to_owned(),
                        relname: "orders".to_owned(),
                        n_live_tup: Some(10),
                        n_dead_tup: Some(1),
                        ..Default::default()
                    }],
                }),
            ),
            sample(
                "main",
                Family::Index(IndexSnapshot {
                    indexes: vec![IndexRow {
                        datname: "app".to_owned(),
                        indexrelid: 16_390,
                        relid: 16_384,
                        schemaname: "public".to_owned(),
                        relname: "orders".to_owned(),
                        indexrelname: "orders_pkey".to_owned(),
                        is_unique: true,
                        is_primary: true,
                        ..Default::default()
                    }],
                }),
            ),
            sample(
                "main",
                Family::Activity(ActivitySnapshot {
                    groups: vec![ActivityGroup {
                        datname: "app".to_owned(),
                        state: "active".to_owned(),
                        sessions: 3,
                        ..Default::default()
                    }],
                    max_connections: Some(100),
                    total_sessions: Some(3),
                    ..Default::default()
                }),
            ),
            sample(
                "main",
                Family::Wait(WaitSnapshot {
                    samples: 10,
                    counts: vec![WaitCount {
                        wait_event_type: "IO".to_owned(),
                        wait_event: "DataFileRead".to_owned(),
                        queryid: Some(-7),
                        count: 4,
                    }],
                }),
            ),
        ],
    }
}

fn limits() -> DecodeLimits {
    DecodeLimits {
        max_uncompressed_bytes: 1 << 20,
        max_samples_per_batch: 10_000,
    }
}

#[test]
fn the_valid_batch_decodes_with_every_codec() {
    let batch = valid_batch();
    for codec in [Codec::ZstdDictV1, Codec::Lz4] {
        let c = payload::encode_with(&batch, codec).expect("encode");
        let decoded = decode_batch(
            codec as i32,
            c.uncompressed_size,
            &c.payload,
            limits(),
            now(),
        )
        .expect("valid batch");
        check_invariants(&decoded).expect("invariants");
        assert_eq!(decoded.stored_samples, batch.samples.len() as u32);
        assert_eq!(decoded.instances.len(), 2, "main and replica");
        assert_eq!(decoded.statement_texts.len(), 1);
    }
}

/// Applies `edits` (position, byte, kind) to `bytes`: overwrite, insert or
/// delete one byte, or cut the rest.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, byte, kind) in edits {
        if bytes.is_empty() {
            bytes.push(byte);
            continue;
        }
        let at = at % bytes.len();
        match kind % 4 {
            0 => bytes[at] = byte,
            1 => bytes.insert(at, byte),
            2 => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

fn check(input: &[u8]) {
    if let Err(broken) = fuzz_harness::one(input, now()) {
        panic!("accepted batch breaks an invariant: {broken}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes in every mode of the harness.
    #[test]
    fn random_inputs_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(&data);
    }

    /// A valid protobuf batch with a few bytes changed, compressed by the
    /// harness with either codec, or coded as a delta push: reaches
    /// validation (and the delta codec) with near-valid samples.
    #[test]
    fn mutated_batches_never_panic(
        mode in prop_oneof![Just(0u8), Just(1u8), Just(5u8)],
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let mut input = vec![mode];
        input.extend(mutate(valid_batch().encode_to_vec(), &edits));
        check(&input);
    }

    /// A valid compressed payload with a few bytes changed, under its own
    /// codec and declared size: reaches the decompressors with near-valid
    /// frames.
    #[test]
    fn mutated_payloads_never_panic(
        zstd in any::<bool>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let codec = if zstd { Codec::ZstdDictV1 } else { Codec::Lz4 };
        let c = payload::encode_with(&valid_batch(), codec).expect("encode");
        let payload = mutate(c.payload, &edits);
        let result = decode_batch(codec as i32, c.uncompressed_size, &payload, limits(), now());
        if let Ok(batch) = result {
            prop_assert!(check_invariants(&batch).is_ok());
        }
    }
}

/// The seed corpus of the fuzz target (`ingest/fuzz/seeds/push_decode`): every seed built here
/// decodes, and so does every committed seed (a stale corpus would start the fuzzer on garbage).
/// `LASECT_WRITE_SEEDS=1 cargo test -p lasect-ingest --test push_decode seeds` rewrites them.
#[test]
fn seeds_decode_and_the_committed_corpus_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/push_decode");
    let plain = valid_batch().encode_to_vec();
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    seeds.push(("protobuf-zstd", [&[0u8][..], &plain].concat()));
    seeds.push(("protobuf-lz4", [&[1u8][..], &plain].concat()));
    for (name, codec) in [("raw-lz4", Codec::Lz4), ("raw-zstd", Codec::ZstdDictV1)] {
        let c = payload::encode_with(&valid_batch(), codec).expect("encode");
        let size = c.uncompressed_size.to_le_bytes();
        let mut seed = vec![2u8, codec as u8, size[0], size[1], size[2]];
        seed.extend(&c.payload);
        seeds.push((name, seed));
    }
    seeds.push(("protobuf-delta", [&[5u8][..], &plain].concat()));
    seeds.push((
        "raw-delta",
        fuzz_harness::delta_seed(&plain).expect("the batch codes as a delta"),
    ));
    let write = std::env::var_os("LASECT_WRITE_SEEDS").is_some();
    for (name, seed) in &seeds {
        let accepted = fuzz_harness::one(seed, now()).expect("invariants");
        assert!(accepted.is_ok(), "seed {name} decodes: {accepted:?}");
        if write {
            std::fs::create_dir_all(&dir).expect("seed dir");
            std::fs::write(dir.join(name), seed).expect("write seed");
        }
    }
    for (name, _) in &seeds {
        let committed = std::fs::read(dir.join(name)).expect("committed seed");
        let accepted = fuzz_harness::one(&committed, now()).expect("invariants");
        assert!(
            accepted.is_ok(),
            "committed seed {name} decodes: {accepted:?}"
        );
    }
}
