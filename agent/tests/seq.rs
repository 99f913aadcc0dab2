//! The batch sequence survives restarts and refuses damaged state.

use lasect_agent::seq::{SeqAllocator, SeqError};

fn take(seq: &mut SeqAllocator, n: usize) -> Vec<u64> {
    (0..n).map(|_| seq.next_seq().expect("next seq")).collect()
}

#[test]
fn a_fresh_agent_starts_at_one_and_increases() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut seq = SeqAllocator::open(dir.path()).expect("open");
    assert_eq!(take(&mut seq, 3), [1, 2, 3]);
    assert!(
        dir.path().join("seq").exists(),
        "the block is reserved on disk"
    );
}

#[test]
fn restarts_continue_above_every_issued_seq() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut highest = 0;
    // Small blocks so restarts happen both inside and across blocks.
    for run in 0..6 {
        let mut seq = SeqAllocator::open_with_block(dir.path(), 4).expect("open");
        let issued = take(&mut seq, run * 3 + 1);
        assert!(
            issued.windows(2).all(|w| w[0] < w[1]),
            "strictly increasing: {issued:?}"
        );
        assert!(
            issued[0] > highest,
            "run {run} reused a seq: started at {} after {highest}",
            issued[0]
        );
        highest = *issued.last().expect("issued at least one");
        // Dropped without any shutdown step, like a crash.
    }
}

#[test]
fn the_default_block_also_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut seq = SeqAllocator::open(dir.path()).expect("open");
    let before = take(&mut seq, 1500);
    drop(seq);
    let mut seq = SeqAllocator::open(dir.path()).expect("reopen");
    let after = seq.next_seq().expect("next");
    assert!(after > *before.last().expect("issued"), "{after}");
}

#[test]
fn opening_without_issuing_does_not_move_the_mark_backwards() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut seq = SeqAllocator::open_with_block(dir.path(), 10).expect("open");
    let first = take(&mut seq, 15);
    drop(seq);
    // Open and close without using it, twice.
    drop(SeqAllocator::open_with_block(dir.path(), 10).expect("open"));
    drop(SeqAllocator::open_with_block(dir.path(), 10).expect("open"));
    let mut seq = SeqAllocator::open_with_block(dir.path(), 10).expect("open");
    assert!(seq.next_seq().expect("next") > *first.last().expect("issued"));
}

#[test]
fn a_garbage_seq_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    for garbage in [
        &b"hello world\n"[..],
        b"",
        b"\x00\x01\x02",
        b"lasect-agent-seq v1 1000\n",
        b"42\n",
    ] {
        std::fs::write(dir.path().join("seq"), garbage).expect("write garbage");
        let err = SeqAllocator::open(dir.path()).expect_err("must refuse a damaged file");
        assert!(matches!(err, SeqError::Corrupt { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("seq") && text.contains("corrupt"), "{text}");
    }
}

#[test]
fn a_hand_lowered_mark_fails_the_checksum() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut seq = SeqAllocator::open_with_block(dir.path(), 5000).expect("open");
    take(&mut seq, 1);
    drop(seq);
    let path = dir.path().join("seq");
    let text = std::fs::read_to_string(&path).expect("read seq file");
    assert!(text.contains(" 5001 "), "{text:?}");
    std::fs::write(&path, text.replace(" 5001 ", " 1 ")).expect("write");
    let err = SeqAllocator::open(dir.path()).expect_err("must refuse");
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn a_missing_state_dir_is_created() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("a/b/state");
    let mut seq = SeqAllocator::open(&state).expect("open creates the directory");
    assert_eq!(seq.next_seq().expect("next"), 1);
    assert!(state.join("seq").is_file());
}

#[test]
fn a_state_dir_that_is_a_file_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("file");
    std::fs::write(&file, "x").expect("write");
    let err = SeqAllocator::open(&file).expect_err("not a directory");
    assert!(matches!(err, SeqError::CreateDir { .. }), "{err}");
}
