//! `--fsync-probe`: how long the disk takes to make 8 KiB durable, sampled
//! every 10 ms while something else runs (the fleet steps of `make bench`).
//! Every push is acknowledged only after the store's commit reached the
//! disk, so an fsync that stalls for 200 ms stalls the pushes of that
//! moment just as long, whatever ingest does: the figure says whether a
//! slow push came from the machine's disk.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

#[derive(Debug, serde::Serialize)]
pub struct FsyncReport {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Syncs that took more than 50 ms.
    pub over_50ms: usize,
}

pub fn probe(dir: &Path, duration: Duration) -> anyhow::Result<FsyncReport> {
    let path = dir.join("lasect-fsync-probe");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    let block = [0x5a_u8; 8192];
    let mut took = Vec::new();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let start = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        took.push(start.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    took.sort_by(f64::total_cmp);
    let at = |q: f64| {
        took.get(((took.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok(FsyncReport {
        samples: took.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: took.last().copied().unwrap_or(0.0),
        over_50ms: took.iter().filter(|t| **t > 50.0).count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_measures_and_cleans_up() {
        let dir = tempfile::tempdir().expect("dir");
        let report = probe(dir.path(), Duration::from_millis(100)).expect("probe");
        assert!(report.samples >= 2, "{report:?}");
        assert!(report.p50_ms <= report.p99_ms && report.p99_ms <= report.max_ms);
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }
}
