//! Any bytes as the only segment and/or the state file of a spool: opening
//! never fails or panics, and a second open sees the same queue.
#![no_main]

use lasect_agent::outbox::Outbox as _;
use lasect_agent::spool::{Spool, SpoolOptions, segment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile_dir() else { return };
    let spool_dir = dir.join("spool");
    let _ = std::fs::create_dir_all(&spool_dir);
    // First byte picks what the data becomes.
    let (kind, rest) = data.split_first().unwrap_or((&0, &[][..]));
    if kind % 2 == 0 {
        let _ = std::fs::write(spool_dir.join(segment::file_name(1)), rest);
    } else {
        let _ = std::fs::write(spool_dir.join("state"), rest);
    }
    let seqs = |dir: &std::path::Path| -> Vec<u64> {
        let spool = Spool::open(dir, SpoolOptions::default()).expect("open never fails");
        spool
            .unacked_after(None, usize::MAX)
            .expect("read")
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    let first = seqs(&dir);
    assert_eq!(seqs(&dir), first);
    let _ = std::fs::remove_dir_all(&dir);
});

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "lasect-fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
