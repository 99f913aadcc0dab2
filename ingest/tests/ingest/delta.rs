//! Delta pushes against the real binary: a batch coded against bases the
//! ingest kept is stored exactly as if it had been sent whole; a push whose
//! bases ingest does not hold is answered FAILED_PRECONDITION and writes
//! nothing; the bound on kept memory holds.

use lasect_proto::bases::SenderBases;
use lasect_proto::payload::{self, DELTA_CODEC};
use lasect_proto::v1::{PushRequest, Sample, SampleBatch};
use prost::Message as _;
use tonic::Code;

use crate::samples;
use crate::support::{Ingest, now_micros, push, request};

fn batch(time: i64, commits: i64) -> Vec<Sample> {
    let mut db = samples::database("main", time, &["postgres", "app"]);
    if let Some(lasect_proto::v1::sample::Family::Database(d)) = &mut db.family {
        for (i, row) in d.databases.iter_mut().enumerate() {
            row.xact_commit = Some(commits + i as i64 * 1_000);
            row.blks_hit = Some(commits * 50);
        }
    }
    vec![
        samples::instance_info("main", time),
        db,
        samples::host_cpu(time, 12.5),
    ]
}

/// The delta push of `samples` as batch `seq`, coded with `bases`.
fn delta_request(bases: &mut SenderBases, seq: u64, samples: Vec<Sample>) -> PushRequest {
    let plain = SampleBatch { samples }.encode_to_vec();
    let coded = bases.encode(seq, &plain).expect("encode");
    assert!(coded.coded_samples > 0, "there are bases to code against");
    PushRequest {
        seq,
        created_unix_micros: now_micros(),
        codec: DELTA_CODEC as i32,
        uncompressed_size: coded.plain.len() as u32,
        payload: payload::compress(DELTA_CODEC, &coded.plain).expect("compress"),
        delta_crc32c: Some(coded.crc32c),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_pushes_are_stored_as_the_batches_they_stand_for() {
    let ingest = Ingest::start().await;
    let mut client = ingest.agent().await;
    let mut bases = SenderBases::default();
    let start = now_micros() - 60_000_000;

    // Not offered: not kept, so nothing to code against yet.
    let ack = push(&mut client, request(1, batch(start, 100)))
        .await
        .expect("push");
    assert!(!ack.kept);
    // Two whole batches offered and kept.
    for (seq, commits) in [(2u64, 200), (3, 300)] {
        let samples = batch(start + seq as i64 * 10_000_000, commits);
        let plain = SampleBatch {
            samples: samples.clone(),
        }
        .encode_to_vec();
        let mut req = request(seq, samples);
        req.offer_base = true;
        let ack = push(&mut client, req).await.expect("push");
        assert!(ack.kept, "seq {seq} kept");
        bases.kept(seq, &plain);
    }
    // Deltas, the first offered (kept), the next coded against it.
    for (seq, commits) in [(4u64, 410), (5, 525)] {
        let time = start + seq as i64 * 10_000_000;
        let samples = batch(time, commits);
        let plain = SampleBatch {
            samples: samples.clone(),
        }
        .encode_to_vec();
        let mut req = delta_request(&mut bases, seq, samples);
        req.offer_base = seq == 4;
        let ack = push(&mut client, req).await.expect("delta push");
        assert_eq!((ack.seq, ack.stored_samples, ack.kept), (seq, 3, seq == 4));
        if ack.kept {
            bases.kept(seq, &plain);
        }
        assert_eq!(
            commits_at(&ingest, time).await,
            vec![
                ("app".to_owned(), commits + 1_000, commits * 50),
                ("postgres".to_owned(), commits, commits * 50),
            ],
            "seq {seq}"
        );
    }
    // A delta push sent again is a duplicate, like any other.
    let again = delta_request(&mut bases, 5, batch(start + 50_000_000, 525));
    let ack = push(&mut client, again).await.expect("resend");
    assert!(ack.duplicate);
    assert_eq!(
        ingest.metric("lasect_ingest_delta_batches_total").await,
        3.0
    );
    assert!(ingest.metric("lasect_ingest_delta_bases_bytes").await > 0.0);
}

async fn commits_at(ingest: &Ingest, time: i64) -> Vec<(String, i64, i64)> {
    let store = ingest.store().await;
    let at = chrono::DateTime::from_timestamp_micros(time).expect("time");
    store
        .query(
            "SELECT datname, xact_commit, blks_hit FROM metric_database
             WHERE time = $1 ORDER BY datname",
            &[&at],
        )
        .await
        .expect("read rows")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_push_without_its_bases_is_refused_for_a_whole_resend() {
    let ingest = Ingest::start().await;
    let mut client = ingest.agent().await;
    let start = now_micros() - 60_000_000;

    // The agent believes seq 1 was kept; this ingest never saw it.
    let mut bases = SenderBases::default();
    bases.kept(
        1,
        &SampleBatch {
            samples: batch(start, 100),
        }
        .encode_to_vec(),
    );
    let req = delta_request(&mut bases, 2, batch(start + 10_000_000, 200));
    let status = push(&mut client, req).await.expect_err("no base");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("send the batch whole"),
        "{status:?}"
    );

    // Ingest kept seq 1, but the agent's idea of it differs: the CRC of the
    // rebuilt batch does not match, and nothing is written.
    let mut keep = request(1, batch(start, 100));
    keep.offer_base = true;
    assert!(push(&mut client, keep).await.expect("push").kept);
    let mut wrong = SenderBases::default();
    wrong.kept(
        1,
        &SampleBatch {
            samples: batch(start, 999),
        }
        .encode_to_vec(),
    );
    let req = delta_request(&mut wrong, 2, batch(start + 10_000_000, 200));
    let status = push(&mut client, req).await.expect_err("crc");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("CRC32C"), "{status:?}");
    assert_eq!(ingest.counts().await.batches, 1, "only seq 1 is stored");
    assert_eq!(
        ingest
            .metric("lasect_ingest_errors_total{kind=\"delta_base\"}")
            .await,
        2.0
    );

    // Whole, the same batch is stored.
    let ack = push(&mut client, request(2, batch(start + 10_000_000, 200)))
        .await
        .expect("whole");
    assert_eq!(ack.stored_samples, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_configured_without_memory_for_bases_keeps_none() {
    let ingest = Ingest::start_with("delta_bases_max_bytes = 0").await;
    let mut client = ingest.agent().await;
    let mut req = request(1, batch(now_micros() - 10_000_000, 1));
    req.offer_base = true;
    let ack = push(&mut client, req).await.expect("push");
    assert!(!ack.kept, "an agent is never invited to send deltas");
}
