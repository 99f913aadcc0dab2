//! The durable spool on a real filesystem: write, replay, ack, segment
//! deletion, damage, the size bound, a full disk and quarantine.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use lasect_agent::outbox::{Outbox, OutboxEntry};
use lasect_agent::spool::{DiskFaults, FsyncPolicy, Spool, SpoolOptions, read_all};
use lasect_proto::payload::CompressedBatch;
use lasect_proto::v1::Codec;

fn entry(seq: u64, priority: u8, payload_len: usize) -> OutboxEntry {
    OutboxEntry {
        seq,
        priority,
        created_unix_micros: 1_600_000_000_000_000 + i64::try_from(seq).expect("small") * 1_000_000,
        sample_count: 2,
        batch: CompressedBatch {
            codec: Codec::Lz4,
            uncompressed_size: 1000,
            // Varies with seq so a mix-up between batches would show.
            payload: (0..payload_len)
                .map(|i| (i as u64).wrapping_mul(31).wrapping_add(seq) as u8)
                .collect(),
        },
    }
}

fn small(max_bytes: u64) -> SpoolOptions {
    SpoolOptions {
        max_bytes,
        segment_bytes: 4096,
        ..SpoolOptions::default()
    }
}

fn open(dir: &Path, options: SpoolOptions) -> Spool {
    Spool::open(dir, options).expect("open spool")
}

fn all(spool: &Spool) -> Vec<OutboxEntry> {
    spool
        .unacked_after(None, usize::MAX)
        .expect("read spool")
        .into_iter()
        .map(|e| (*e).clone())
        .collect()
}

fn seqs(spool: &Spool) -> Vec<u64> {
    all(spool).iter().map(|e| e.seq).collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("spool"))
        .expect("list spool")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

#[test]
fn batches_survive_a_restart_in_order_with_their_original_content() {
    let dir = tempfile::tempdir().expect("temp dir");
    let written: Vec<OutboxEntry> = (1..=40).map(|s| entry(s, 0, 300)).collect();
    {
        let spool = open(dir.path(), small(1 << 20));
        for e in &written {
            spool.push(e.clone()).expect("push");
        }
        assert!(segments(dir.path()).len() > 2, "segments roll at the size");
        // Out of order, and not a whole segment's worth.
        for seq in [3, 1, 2, 7] {
            spool.ack(seq).expect("ack");
        }
        assert_eq!(spool.stats().acked, 4);
    }
    let spool = open(dir.path(), small(1 << 20));
    let expected: Vec<OutboxEntry> = written
        .iter()
        .filter(|e| ![1, 2, 3, 7].contains(&e.seq))
        .cloned()
        .collect();
    assert_eq!(
        all(&spool),
        expected,
        "same batches, same order, same timestamps"
    );
    let after = spool.unacked_after(Some(10), 3).expect("read");
    assert_eq!(
        after.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [11, 12, 13]
    );
}

#[test]
fn a_segment_is_deleted_once_every_batch_in_it_is_finished() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = open(dir.path(), small(1 << 20));
    for seq in 1..=40 {
        spool.push(entry(seq, 0, 300)).expect("push");
    }
    let before = segments(dir.path());
    let first = &before[0];
    let in_first: Vec<u64> = {
        let data = fs::read(first).expect("read segment");
        lasect_agent::spool::segment::scan(&data)
            .0
            .iter()
            .map(|r| r.meta.seq)
            .collect()
    };
    assert!(in_first.len() > 1);
    for &seq in &in_first[..in_first.len() - 1] {
        spool.ack(seq).expect("ack");
    }
    assert!(first.exists(), "one batch of it is still unacknowledged");
    spool
        .reject(*in_first.last().expect("one"), "refused")
        .expect("reject");
    assert!(!first.exists(), "every batch finished: segment deleted");
    // Acknowledging everything deletes everything but the segment being written.
    for seq in 1..=40 {
        spool.ack(seq).expect("ack");
    }
    assert_eq!(segments(dir.path()).len(), 1);
    drop(spool);
    let spool = open(dir.path(), small(1 << 20));
    assert_eq!(spool.stats().queued, 0);
    assert!(
        segments(dir.path()).is_empty(),
        "finished segment removed at open"
    );
}

#[test]
fn a_torn_tail_is_cut_counted_and_the_rest_replayed() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let spool = open(dir.path(), small(1 << 20));
        for seq in 1..=5 {
            spool.push(entry(seq, 0, 200)).expect("push");
        }
    }
    let seg = segments(dir.path()).pop().expect("a segment");
    let len = fs::metadata(&seg).expect("stat").len();
    // Cut in the middle of the last record, as a crash during write would.
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .and_then(|f| f.set_len(len - 100))
        .expect("truncate");
    let spool = open(dir.path(), small(1 << 20));
    assert_eq!(seqs(&spool), [1, 2, 3, 4]);
    assert_eq!(spool.stats().corrupt, 1);
    let cut_len = fs::metadata(&seg).expect("stat").len();
    assert!(cut_len < len - 100, "torn tail cut off");
    // Appending goes on, in a new segment.
    spool.push(entry(6, 0, 200)).expect("push");
    drop(spool);
    let spool = open(dir.path(), small(1 << 20));
    assert_eq!(seqs(&spool), [1, 2, 3, 4, 6]);
    assert_eq!(spool.stats().corrupt, 1, "counted once, not at every start");
}

#[test]
fn garbage_and_bit_flips_are_quarantined_and_never_replayed() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let spool = open(dir.path(), small(1 << 20));
        for seq in 1..=6 {
            spool.push(entry(seq, 0, 200)).expect("push");
        }
    }
    let seg = segments(dir.path()).pop().expect("a segment");
    let mut data = fs::read(&seg).expect("read");
    let record_len = (data.len() - 16) / 6;
    // Flip a payload bit in record 4 (seq 4).
    data[16 + 3 * record_len + 60] ^= 0x04;
    data.extend_from_slice(b"garbage appended after the last record");
    fs::write(&seg, &data).expect("write");

    let spool = open(dir.path(), small(1 << 20));
    assert_eq!(
        seqs(&spool),
        [1, 2, 3],
        "nothing after the damage is trusted"
    );
    assert_eq!(spool.stats().corrupt, 1);
    let quarantined: Vec<_> = fs::read_dir(dir.path().join("spool/quarantine"))
        .expect("quarantine dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(
        quarantined[0].starts_with("damaged-seg-"),
        "{quarantined:?}"
    );

    // A segment with a bad header is quarantined whole; opening still works.
    fs::write(
        dir.path().join("spool/seg-00000000000000ff.log"),
        b"not a segment",
    )
    .expect("write");
    drop(spool);
    let spool = open(dir.path(), small(1 << 20));
    assert_eq!(seqs(&spool), [1, 2, 3]);
    assert_eq!(spool.stats().corrupt, 2);
}

#[test]
fn a_damaged_state_file_only_causes_resends() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let spool = open(dir.path(), small(1 << 20));
        for seq in 1..=4 {
            spool.push(entry(seq, 0, 100)).expect("push");
        }
        spool.ack(1).expect("ack");
        spool.ack(2).expect("ack");
    }
    {
        let spool = open(dir.path(), small(1 << 20));
        assert_eq!(seqs(&spool), [3, 4], "acks persisted");
    }
    fs::write(
        dir.path().join("spool/state"),
        b"lasect-agent-spool-state v1\nbroken",
    )
    .expect("write");
    let spool = open(dir.path(), small(1 << 20));
    assert_eq!(
        seqs(&spool),
        [1, 2, 3, 4],
        "sent again; ingest drops duplicates"
    );
}

#[test]
fn the_size_bound_drops_the_oldest_metrics_and_never_higher_priorities() {
    let dir = tempfile::tempdir().expect("temp dir");
    let max = 64 << 10;
    let spool = open(dir.path(), small(max));
    // Every 10th batch has priority 1.
    for seq in 1..=600 {
        let priority = u8::from(seq % 10 == 0);
        spool.push(entry(seq, priority, 300)).expect("push");
    }
    let stats = spool.stats();
    let kept = seqs(&spool);
    assert!(stats.dropped_batches > 0, "{stats:?}");
    assert_eq!(stats.dropped_samples, 2 * stats.dropped_batches);
    assert_eq!(kept.len() as u64 + stats.dropped_batches, 600);
    for seq in (10..=600).step_by(10) {
        assert!(kept.contains(&seq), "priority 1 batch {seq} kept");
    }
    // The metrics batches kept are the newest ones.
    let oldest_kept_metrics = kept.iter().copied().find(|s| s % 10 != 0).expect("some");
    let expected: Vec<u64> = (1..=600)
        .filter(|s| s % 10 == 0 || *s >= oldest_kept_metrics)
        .collect();
    assert_eq!(kept, expected);
    // Priority batches were copied forward, so the bound holds.
    let on_disk: u64 = segments(dir.path())
        .iter()
        .map(|p| fs::metadata(p).expect("stat").len())
        .sum();
    assert_eq!(on_disk, stats.queued_bytes);
    assert!(on_disk <= max, "{on_disk} bytes on disk");
    drop(spool);
    let spool = open(dir.path(), small(max));
    assert_eq!(
        spool.stats().dropped_batches,
        stats.dropped_batches,
        "drop counters are kept across restarts"
    );
}

#[test]
fn a_full_disk_holds_batches_in_memory_and_resumes_when_space_returns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let faults = DiskFaults::default();
    let options = SpoolOptions {
        max_batches_in_memory: 5,
        faults: faults.clone(),
        ..small(1 << 20)
    };
    let spool = open(dir.path(), options.clone());
    for seq in 1..=3 {
        spool.push(entry(seq, 0, 100)).expect("push");
    }
    faults.set_full(true);
    for seq in 4..=10 {
        spool.push(entry(seq, 0, 100)).expect("push never fails");
    }
    let stats = spool.stats();
    assert!(stats.write_failing);
    assert_eq!(stats.held_in_memory, 5);
    assert_eq!(
        stats.dropped_batches, 2,
        "memory bound: oldest held dropped"
    );
    // Held batches are still delivered from memory.
    assert_eq!(seqs(&spool), [1, 2, 3, 6, 7, 8, 9, 10]);
    spool.ack(6).expect("ack");

    faults.set_full(false);
    spool.push(entry(11, 0, 100)).expect("push");
    let stats = spool.stats();
    assert!(!stats.write_failing);
    assert_eq!(stats.held_in_memory, 0);
    drop(spool);
    let spool = open(dir.path(), options);
    assert_eq!(seqs(&spool), [1, 2, 3, 7, 8, 9, 10, 11], "all on disk now");
}

/// A tmpfs mounted for one test, unmounted on drop.
struct TinyFs {
    dir: tempfile::TempDir,
}

impl TinyFs {
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self { dir })
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_really_full_filesystem_keeps_the_agent_going() {
    let fs = match TinyFs::mount("256k") {
        Ok(fs) => fs,
        Err(why) => {
            // The same behaviour is covered through the DiskFaults seam above.
            eprintln!("cannot mount a tmpfs ({why}); ENOSPC is tested through the seam only");
            return;
        }
    };
    let state_dir = fs.dir.path();
    let options = SpoolOptions {
        max_batches_in_memory: 1000,
        fsync: FsyncPolicy::EveryBatch,
        ..SpoolOptions::default()
    };
    let spool = Arc::new(open(state_dir, options.clone()));
    // 8 KiB batches: the 256 KiB filesystem is full after about 30.
    let mut seq = 0;
    while !spool.stats().write_failing {
        seq += 1;
        assert!(seq < 100, "the tiny filesystem never filled up");
        spool.push(entry(seq, 0, 8 << 10)).expect("push");
    }
    let first_held = seq;
    for _ in 0..5 {
        seq += 1;
        spool.push(entry(seq, 0, 8 << 10)).expect("push");
    }
    let stats = spool.stats();
    assert_eq!(stats.held_in_memory, 6);
    assert_eq!(stats.queued as u64, seq, "nothing lost");
    // Ingest acknowledges what was on disk: its segment goes, space returns.
    for s in 1..first_held {
        spool.ack(s).expect("ack");
    }
    seq += 1;
    spool.push(entry(seq, 0, 8 << 10)).expect("push");
    let stats = spool.stats();
    assert!(!stats.write_failing, "{stats:?}");
    assert_eq!(stats.held_in_memory, 0);
    drop(spool);
    let spool = open(state_dir, options);
    assert_eq!(seqs(&spool), (first_held..=seq).collect::<Vec<_>>());
    let mut f = fs::File::create(state_dir.join("probe")).expect("space is back");
    f.write_all(b"ok").expect("write");
}

#[test]
fn quarantine_keeps_the_last_hundred_refused_batches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = open(dir.path(), small(1 << 20));
    for seq in 1..=105 {
        spool.push(entry(seq, 0, 50)).expect("push");
    }
    for seq in 1..=105 {
        spool
            .reject(seq, &format!("InvalidArgument: bad sample\nin {seq}"))
            .expect("reject");
    }
    let stats = spool.stats();
    assert_eq!((stats.quarantined, stats.queued), (105, 0));
    let qdir = dir.path().join("spool/quarantine");
    let files = fs::read_dir(&qdir).expect("quarantine").count();
    assert_eq!(files, 100);
    let text = fs::read(qdir.join(format!("batch-{:020}.rec", 105))).expect("newest kept");
    let line = text.split(|b| *b == b'\n').next().expect("line");
    assert_eq!(
        String::from_utf8_lossy(line),
        "lasect-quarantine v1 seq=105 reason=InvalidArgument: bad sample in 105"
    );
    // What follows the line is the batch's spool record, intact.
    let rest = &text[line.len() + 1..];
    let (back, _) = lasect_agent::spool::record::decode(rest).expect("record");
    assert_eq!(back, entry(105, 0, 50));
    // Refusing again (or an unknown seq) changes nothing.
    spool.reject(105, "again").expect("reject");
    assert_eq!(spool.stats().quarantined, 105);
}

#[test]
fn a_segment_removed_under_the_agent_costs_its_batches_not_the_queue() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = open(dir.path(), small(1 << 20));
    for seq in 1..=40 {
        spool.push(entry(seq, 0, 300)).expect("push");
    }
    let first = segments(dir.path()).remove(0);
    fs::remove_file(&first).expect("remove by hand");
    let left = seqs(&spool);
    assert!(!left.is_empty() && left[0] > 1, "{left:?}");
    assert_eq!(left.last(), Some(&40));
    let stats = spool.stats();
    assert_eq!(stats.queued, left.len());
    assert_eq!(stats.corrupt as usize + left.len(), 40);
}

#[test]
fn read_all_lists_every_spooled_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = open(dir.path(), small(1 << 20));
    for seq in 1..=30 {
        spool.push(entry(seq, 0, 300)).expect("push");
    }
    spool.ack(5).expect("ack");
    let listed: Vec<u64> = read_all(dir.path())
        .expect("read")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(listed, (1..=30).collect::<Vec<_>>());
}

/// A batch dropped for room while the sender holds it may still be stored
/// by the push in flight: its ack counts it as delivered, not dropped; only
/// when the sender starts over without it is it counted as dropped.
#[test]
fn a_batch_dropped_while_in_flight_counts_as_dropped_only_if_never_acked() {
    let dir = tempfile::tempdir().expect("temp dir");
    // 16 KiB in 4 KiB segments: about fifty 300-byte batches fit.
    let spool = open(dir.path(), small(16 << 10));
    for seq in 1..=10 {
        spool.push(entry(seq, 0, 300)).expect("push");
    }
    // The sender takes the four oldest into its window...
    let held: Vec<u64> = spool
        .unacked_after(None, 4)
        .expect("read")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(held, [1, 2, 3, 4]);
    // ...and ingest is slow: new batches push the oldest segments out.
    for seq in 11..=100 {
        spool.push(entry(seq, 0, 300)).expect("push");
    }
    let rest = spool.unacked_after(Some(4), usize::MAX).expect("read");
    assert!(
        rest.first().is_some_and(|e| e.seq > 5),
        "segment 1 was evicted"
    );
    let stats = spool.stats();
    let dropped_unheld = stats.dropped_batches;
    assert_eq!(
        dropped_unheld + 4 + rest.len() as u64,
        100,
        "the held four are neither dropped nor gone: {stats:?}"
    );
    assert_eq!(stats.queued, rest.len() + 4, "{stats:?}");

    // Two of the held pushes are stored after all.
    spool.ack(1).expect("ack");
    spool.ack(2).expect("ack");
    let stats = spool.stats();
    assert_eq!((stats.acked, stats.dropped_batches), (2, dropped_unheld));
    assert_eq!(stats.queued, rest.len() + 2);
    // The sender starts over: the two it never got an answer for are lost.
    let again = spool.unacked_after(None, 4).expect("start over");
    assert_eq!(again.first().map(|e| e.seq), rest.first().map(|e| e.seq));
    let stats = spool.stats();
    assert_eq!(stats.dropped_batches, dropped_unheld + 2, "{stats:?}");
    assert_eq!(stats.dropped_samples, 2 * stats.dropped_batches);
    assert_eq!(stats.queued, rest.len());
}
