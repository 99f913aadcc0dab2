//! Arbitrary damage to spool segments: truncation at any point, flipped
//! bytes, garbage. Reading never panics, never returns a record other than
//! one that was written, and opening the spool never fails on it.

use lasect_agent::outbox::{Outbox, OutboxEntry};
use lasect_agent::spool::{Spool, SpoolOptions, record, segment};
use lasect_proto::payload::CompressedBatch;
use lasect_proto::v1::Codec;
use proptest::prelude::*;

fn entry(seq: u64, payload_len: usize) -> OutboxEntry {
    OutboxEntry {
        seq,
        priority: (seq % 3) as u8,
        created_unix_micros: 1_650_000_000_000_000 + seq as i64,
        sample_count: seq as u32,
        batch: CompressedBatch {
            codec: Codec::Lz4,
            uncompressed_size: 4096,
            payload: (0..payload_len)
                .map(|i| (i * 7 + seq as usize) as u8)
                .collect(),
        },
    }
}

/// A segment image holding `sizes.len()` records, and those records.
fn image(sizes: &[usize]) -> (Vec<u8>, Vec<OutboxEntry>) {
    let entries: Vec<OutboxEntry> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| entry(i as u64 + 1, n))
        .collect();
    let mut data = segment::header().to_vec();
    for e in &entries {
        data.extend_from_slice(&record::encode(e));
    }
    (data, entries)
}

#[derive(Debug, Clone)]
enum Damage {
    Truncate(prop::sample::Index),
    Flip(prop::sample::Index, u8),
    Append(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Damage::Truncate),
        (any::<prop::sample::Index>(), 1..=255u8).prop_map(|(i, m)| Damage::Flip(i, m)),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(Damage::Append),
    ]
}

fn apply(data: &mut Vec<u8>, damages: &[Damage]) {
    for d in damages {
        match d {
            Damage::Truncate(i) if !data.is_empty() => data.truncate(i.index(data.len())),
            Damage::Flip(i, mask) if !data.is_empty() => {
                let at = i.index(data.len());
                data[at] ^= mask;
            }
            Damage::Append(bytes) => data.extend_from_slice(bytes),
            _ => {}
        }
    }
}

proptest! {
    #[test]
    fn scanning_damaged_segments_yields_only_written_records(
        sizes in prop::collection::vec(0usize..400, 0..8),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let (mut data, written) = image(&sizes);
        apply(&mut data, &damages);
        let (found, _end) = segment::scan(&data);
        prop_assert!(found.len() <= written.len());
        for (i, located) in found.iter().enumerate() {
            let at = located.offset as usize;
            let (got, len) = record::decode(&data[at..]).expect("a located record decodes");
            prop_assert_eq!(len, located.len as usize);
            // Records are found in order from the start, so the i-th one
            // must be exactly the i-th written.
            prop_assert_eq!(&got, &written[i]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn opening_a_damaged_spool_never_fails_and_replays_a_prefix(
        sizes in prop::collection::vec(0usize..400, 1..8),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut data, written) = image(&sizes);
        apply(&mut data, &damages);
        let spool_dir = dir.path().join("spool");
        std::fs::create_dir_all(&spool_dir).expect("mkdir");
        std::fs::write(spool_dir.join(segment::file_name(1)), &data).expect("write");
        let replayed = |dir: &std::path::Path| -> Vec<OutboxEntry> {
            let spool = Spool::open(dir, SpoolOptions::default()).expect("open never fails");
            spool
                .unacked_after(None, usize::MAX)
                .expect("read")
                .into_iter()
                .map(|e| (*e).clone())
                .collect()
        };
        let first = replayed(dir.path());
        prop_assert!(first.len() <= written.len());
        prop_assert_eq!(&first[..], &written[..first.len()]);
        // A second start sees the same (no crash loop, no further loss).
        prop_assert_eq!(replayed(dir.path()), first);
    }
}
