//! Hostile or broken batches are refused whole, and nothing is written.

use lasect_proto::v1::{Codec, HostCpu, PushRequest, Sample, SampleBatch, sample::Family};
use prost::Message;
use tonic::Code;

use crate::samples;
use crate::support::{
    Counts, Ingest, MAX_MESSAGE_BYTES, MAX_UNCOMPRESSED_BYTES, now_micros, push, request,
};

fn lz4_request(seq: u64, plain: &[u8], declared: u32) -> PushRequest {
    PushRequest {
        seq,
        created_unix_micros: now_micros(),
        codec: Codec::Lz4 as i32,
        uncompressed_size: declared,
        payload: lz4_flex::block::compress(plain),
        priority: 0,
        sample_count: 1,
        ..Default::default()
    }
}

/// A sample of a family field (999) that this build does not know.
fn unknown_sample_bytes() -> Vec<u8> {
    let mut raw = Vec::new();
    prost::encoding::string::encode(1, &"main".to_owned(), &mut raw);
    prost::encoding::int64::encode(2, &now_micros(), &mut raw);
    prost::encoding::bytes::encode(999, &vec![1u8, 2, 3], &mut raw);
    let mut sample = Vec::new();
    prost::encoding::bytes::encode(1, &raw, &mut sample);
    sample
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_are_refused_and_nothing_is_written() {
    let ingest = Ingest::start().await;
    let mut client = ingest.agent().await;

    let expect_refused = |result: Result<_, tonic::Status>, code: Code, needle: &str| {
        let status = result.expect_err("batch must be refused");
        assert_eq!(status.code(), code, "{status:?}");
        assert!(
            status.message().contains(needle),
            "{needle:?} not in {status:?}"
        );
    };

    // An lz4 bomb: a tiny payload that claims to expand beyond the limit.
    let zeros = vec![0u8; MAX_UNCOMPRESSED_BYTES + 1];
    let bomb = lz4_request(1, &zeros, zeros.len() as u32);
    assert!(bomb.payload.len() < 64 << 10);
    expect_refused(
        push(&mut client, bomb).await,
        Code::InvalidArgument,
        "exceeds the limit",
    );

    // A payload that is not LZ4 at all.
    let mut corrupt = request(1, samples::one_of_each());
    corrupt.payload = vec![0xff; 64];
    expect_refused(
        push(&mut client, corrupt).await,
        Code::InvalidArgument,
        "decompress",
    );

    // LZ4 that lies about its size.
    let mut lying = request(1, samples::one_of_each());
    lying.uncompressed_size -= 1;
    expect_refused(
        push(&mut client, lying).await,
        Code::InvalidArgument,
        "decompress",
    );

    // Valid LZ4, but not a SampleBatch.
    let garbage = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff not protobuf";
    let not_proto = lz4_request(1, garbage, garbage.len() as u32);
    expect_refused(
        push(&mut client, not_proto).await,
        Code::InvalidArgument,
        "SampleBatch",
    );

    // An unsupported codec: unset, or a value this build does not know.
    for unknown in [Codec::Unspecified as i32, 7] {
        let mut codec = request(1, samples::one_of_each());
        codec.codec = unknown;
        expect_refused(
            push(&mut client, codec).await,
            Code::InvalidArgument,
            "codec",
        );
    }

    // A zstd bomb, declared honestly (over the limit) or understated.
    let zstd_bomb = lasect_proto::payload::compress(Codec::ZstdDictV1, &zeros).expect("zstd");
    assert!(zstd_bomb.len() < 64 << 10);
    for (declared, needle) in [
        (zeros.len() as u32, "exceeds the limit"),
        (1024, "decompress"),
    ] {
        let bomb = PushRequest {
            codec: Codec::ZstdDictV1 as i32,
            uncompressed_size: declared,
            payload: zstd_bomb.clone(),
            ..request(1, vec![])
        };
        expect_refused(push(&mut client, bomb).await, Code::InvalidArgument, needle);
    }

    // seq 0 and seq beyond bigint.
    for seq in [0, u64::MAX] {
        let r = request(seq, samples::one_of_each());
        expect_refused(push(&mut client, r).await, Code::InvalidArgument, "seq");
    }

    // One bad sample among good ones rejects the whole batch.
    let mut mixed = samples::one_of_each();
    mixed.insert(2, samples::host_cpu(now_micros(), 150.0));
    expect_refused(
        push(&mut client, request(1, mixed)).await,
        Code::InvalidArgument,
        "sample 2 (host_cpu): usage_percent",
    );

    // A host sample that names an instance.
    let mut misplaced = samples::host_memory(now_micros());
    misplaced.instance = "main".to_owned();
    expect_refused(
        push(&mut client, request(1, vec![misplaced])).await,
        Code::InvalidArgument,
        "instance must be empty",
    );

    // Too many samples for the configured limit (1000).
    let many = vec![samples::host_cpu(now_micros(), 1.0); 1001];
    expect_refused(
        push(&mut client, request(1, many)).await,
        Code::InvalidArgument,
        "limit",
    );

    // A message beyond max_message_bytes is refused by the gRPC layer.
    let huge = PushRequest {
        payload: vec![7u8; MAX_MESSAGE_BYTES + 1],
        ..request(1, vec![])
    };
    expect_refused(push(&mut client, huge).await, Code::OutOfRange, "too large");

    // The agent's own report (hostname, spool backlog) is kept even while
    // its batches are refused, so its row may exist once reports are
    // flushed; no batch, instance or sample may.
    let counts = ingest.counts().await;
    assert_eq!(
        Counts {
            agents: 0,
            ..counts
        },
        Counts::default(),
        "nothing is written"
    );

    // A sample of a family this ingest does not know is skipped and counted
    // (sent as LZ4, as agents before the zstd codec do: still accepted).
    let known = SampleBatch {
        samples: vec![samples::host_cpu(now_micros(), 3.0)],
    };
    let mut plain = known.encode_to_vec();
    plain.extend(unknown_sample_bytes());
    let ack = push(&mut client, lz4_request(5, &plain, plain.len() as u32))
        .await
        .expect("batch with an unknown family is accepted");
    assert!(!ack.duplicate);
    assert_eq!((ack.stored_samples, ack.unknown_samples), (1, 1));
    let counts = ingest.counts().await;
    assert_eq!(
        (counts.batches, counts.host_cpu, counts.instances),
        (1, 1, 0)
    );

    // Sanity: the unknown sample really decodes with no family.
    let decoded = SampleBatch::decode(plain.as_slice()).expect("decodes");
    assert!(matches!(
        decoded.samples.as_slice(),
        [
            Sample {
                family: Some(Family::HostCpu(HostCpu { .. })),
                ..
            },
            Sample { family: None, .. }
        ]
    ));
}
