//! The durable spool: every batch is written to disk before it is sent, and
//! stays there until ingest acknowledges it.
//!
//! # Layout (`<state_dir>/spool/`)
//!
//! - `seg-<id>.log`: append-only segment files (format in [`segment`], each
//!   record's layout in [`record`]: length, CRC32C, version, priority, seq,
//!   creation time, sample count, then the compressed batch exactly as sent).
//! - `state`: finished seqs and lifetime counters (format in [`state`]).
//! - `quarantine/`: refused batches and damaged segment parts ([`quarantine`]).
//!
//! # Invariants
//!
//! - A batch is pushed to ingest only after its record is written to the
//!   spool (or, while the disk cannot be written, held in memory; see below).
//! - Records are written whole or not at all: a failed append cuts the file
//!   back; a crash mid-append leaves a torn tail that recovery removes.
//! - Only the newest segment is appended to, and a restarted agent starts a
//!   new one. A segment is deleted once every batch in it is finished
//!   (acknowledged, dropped for room, or quarantined) and it is not the one
//!   being written.
//! - On open, every unfinished record of every segment is queued again in
//!   seq order, with its original payload (so its original sample times).
//!   Finished seqs come from `state`, which may lag: a batch acknowledged
//!   just before a crash is sent again and ingest drops the duplicate.
//! - Damage (torn tail, bad length, CRC mismatch, bad header) is found by
//!   [`segment::scan`] when the spool opens (`recovery.rs`); the segment is cut at the first bad byte, the rest is
//!   copied to `quarantine/`, the damage is counted (`corrupt`) and logged
//!   once. Nothing in a segment makes opening fail.
//! - Size: segment files together stay under `max_bytes`. To make room the
//!   oldest priority-0 (metrics) batches are dropped, segment by segment,
//!   and counted in `dropped_batches`/`dropped_samples`; if that is not
//!   enough the new metrics batch itself is dropped and counted. Batches with
//!   priority > 0 are never dropped: they are copied into the current
//!   segment so their old one can go (if they alone exceed the bound, the
//!   spool grows beyond it).
//! - Disk full (ENOSPC) or any other write failure: the agent keeps running
//!   and keeps what is spooled. New batches are held in memory, up to
//!   `max_batches_in_memory` (beyond it the oldest held metrics batch is
//!   dropped and counted), and are still sent from memory. Every later push
//!   first retries writing the held batches, so the spool resumes by itself
//!   when space returns. The condition is logged once on entry and once on
//!   recovery and shown in [`OutboxStats::write_failing`].
//! - A batch dropped for room while the sender holds it (handed out by
//!   [`Outbox::unacked_after`] and not finished) is not counted yet: the push
//!   in flight may still be stored. It stays queued until its fate is known:
//!   its ack counts it as acknowledged; the sender starting over from the
//!   oldest batch (it abandoned what it held), a refusal, or closing the
//!   spool counts it as dropped. So `dropped_*` never counts a batch that
//!   ingest stored.
//! - Counters `dropped_*`, `quarantined` and `corrupt` are lifetime figures
//!   (persisted in `state`); `acked` counts since the process started.
//!
//! File access is synchronous under one mutex: appends and reads are small
//! and the agent is not latency-sensitive; fsync cost is chosen by
//! [`FsyncPolicy`].

pub mod quarantine;
pub mod record;
mod recovery;
pub mod segment;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::outbox::{Outbox, OutboxEntry, OutboxError, OutboxStats};
use record::RecordMeta;
pub use recovery::read_all;
use recovery::recover_segment;
pub use segment::DiskFaults;
use segment::{HEADER_LEN, Writer};
use state::State;

pub const DIR_NAME: &str = "spool";
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 << 20;
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// The state file is rewritten at most this often (and at close).
const STATE_WRITE_EVERY: Duration = Duration::from_secs(1);

/// When appended records are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every record: a batch is durable before it is sent.
    EveryBatch,
    /// At most this long after a record was written (by [`Spool::housekeeping`]
    /// or the next push): cheaper, a power loss can lose that much.
    Interval(Duration),
}

#[derive(Debug, Clone)]
pub struct SpoolOptions {
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    /// Batches held in memory while the spool cannot be written.
    pub max_batches_in_memory: usize,
    /// Test seam: make writes fail with ENOSPC.
    pub faults: DiskFaults,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            fsync: FsyncPolicy::EveryBatch,
            max_batches_in_memory: 8640,
            faults: DiskFaults::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot create spool directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot list spool directory {path}: {source}")]
    List {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The durable [`Outbox`].
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    quarantine_dir: PathBuf,
    options: SpoolOptions,
    inner: Mutex<Inner>,
    pushed: Notify,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    bytes: u64,
    seqs: Vec<u64>,
    /// Records of this segment not finished yet.
    live: usize,
}

#[derive(Debug, Clone)]
enum Location {
    Disk { segment: u64, offset: u64, len: u32 },
    Memory(Arc<OutboxEntry>),
}

#[derive(Debug, Clone)]
struct Pending {
    meta: RecordMeta,
    location: Location,
}

#[derive(Debug)]
struct Inner {
    segments: BTreeMap<u64, Segment>,
    writer: Option<Writer>,
    next_segment_id: u64,
    pending: BTreeMap<u64, Pending>,
    /// Seqs handed to the sender and not finished since.
    lent: BTreeSet<u64>,
    /// Batches dropped for room while lent: seq → sample count, settled by
    /// their ack (stored) or by the sender abandoning them (dropped).
    dropped_while_lent: BTreeMap<u64, u32>,
    held_in_memory: usize,
    /// Counters and the finished seqs of live segments.
    state: State,
    acked: u64,
    disk_bytes: u64,
    state_dirty: bool,
    state_written: Instant,
    state_write_failing: bool,
    unsynced: bool,
    synced: Instant,
    write_failing: bool,
}

impl Spool {
    /// Opens (or creates) the spool in `<state_dir>/spool`, recovering from
    /// any damage, and queues every unfinished batch.
    pub fn open(state_dir: &Path, mut options: SpoolOptions) -> Result<Self, SpoolError> {
        let dir = state_dir.join(DIR_NAME);
        let quarantine_dir = dir.join(quarantine::DIR_NAME);
        fs::create_dir_all(&quarantine_dir).map_err(|source| SpoolError::CreateDir {
            path: quarantine_dir.clone(),
            source,
        })?;
        // A few segments must fit in the budget, or nothing could ever be freed.
        options.segment_bytes = options
            .segment_bytes
            .min(options.max_bytes / 4)
            .max(HEADER_LEN as u64 + 1024);
        let _ = fs::remove_file(dir.join(state::TMP_NAME));
        let mut state = match fs::read(dir.join(state::FILE_NAME)) {
            Ok(bytes) => state::parse(&bytes).unwrap_or_else(|reason| {
                tracing::warn!(
                    path = %dir.join(state::FILE_NAME).display(),
                    reason,
                    "spool state file is damaged; every spooled batch will be sent again (ingest drops duplicates) and the spool's lifetime counters restart"
                );
                State::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the spool state file; every spooled batch will be sent again");
                State::default()
            }
        };

        let mut ids = Vec::new();
        let entries = fs::read_dir(&dir).map_err(|source| SpoolError::List {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| SpoolError::List {
                path: dir.clone(),
                source,
            })?;
            if let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(segment::parse_file_name)
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();

        let mut segments = BTreeMap::new();
        let mut pending = BTreeMap::new();
        let mut disk_bytes = 0;
        let corrupt_before = state.counters.corrupt;
        for &id in &ids {
            let path = dir.join(segment::file_name(id));
            if let Some(seg) = recover_segment(&path, &quarantine_dir, &mut state, &mut pending, id)
            {
                disk_bytes += seg.bytes;
                segments.insert(id, seg);
            }
        }
        // Finished seqs are only worth keeping while their segment exists.
        state.done = segments
            .values()
            .flat_map(|s| s.seqs.iter().copied())
            .filter(|seq| !pending.contains_key(seq))
            .collect();
        let queued = pending.len();
        if queued > 0 {
            tracing::info!(
                batches = queued,
                segments = segments.len(),
                "spool holds unacknowledged batches; sending them again in order"
            );
        }
        let now = Instant::now();
        let spool = Self {
            dir,
            quarantine_dir,
            options,
            inner: Mutex::new(Inner {
                segments,
                writer: None,
                next_segment_id: ids.last().map_or(1, |id| id + 1),
                pending,
                lent: BTreeSet::new(),
                dropped_while_lent: BTreeMap::new(),
                held_in_memory: 0,
                state,
                acked: 0,
                disk_bytes,
                state_dirty: true,
                state_written: now,
                state_write_failing: false,
                unsynced: false,
                synced: now,
                write_failing: false,
            }),
            pushed: Notify::new(),
        };
        {
            let mut inner = spool.lock();
            if inner.state.counters.corrupt != corrupt_before {
                spool.write_state(&mut inner);
            }
        }
        Ok(spool)
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Periodic duties: fsync under [`FsyncPolicy::Interval`] and persist the
    /// finished seqs. Call every few hundred milliseconds.
    pub fn housekeeping(&self) {
        let mut inner = self.lock();
        self.sync_if_due(&mut inner, false);
        if inner.state_dirty && inner.state_written.elapsed() >= STATE_WRITE_EVERY {
            self.write_state(&mut inner);
        }
    }

    /// Makes everything durable; call before the process exits.
    pub fn close(&self) {
        let mut inner = self.lock();
        // Whatever the sender still held is no longer coming back.
        self.settle_abandoned(&mut inner);
        self.sync_if_due(&mut inner, true);
        if inner.state_dirty {
            self.write_state(&mut inner);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation keeps Inner consistent between statements that can
        // panic, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sync_if_due(&self, inner: &mut Inner, force: bool) {
        if !inner.unsynced {
            return;
        }
        let due = match self.options.fsync {
            FsyncPolicy::EveryBatch => true,
            FsyncPolicy::Interval(every) => inner.synced.elapsed() >= every,
        };
        if !(due || force) {
            return;
        }
        if let Some(writer) = &inner.writer
            && let Err(e) = writer.sync()
        {
            tracing::warn!(error = %e, "cannot fsync the spool segment");
            return;
        }
        inner.unsynced = false;
        inner.synced = Instant::now();
    }

    fn write_state(&self, inner: &mut Inner) {
        match state::write(&self.dir, &inner.state) {
            Ok(()) => {
                if inner.state_write_failing {
                    tracing::info!("spool state file writable again");
                }
                inner.state_write_failing = false;
                inner.state_dirty = false;
            }
            Err(e) => {
                if !inner.state_write_failing {
                    tracing::warn!(error = %e, "cannot write the spool state file; acknowledged batches may be sent again after a restart");
                }
                inner.state_write_failing = true;
            }
        }
        inner.state_written = Instant::now();
    }

    /// Appends a record to the current segment (rolling or creating one as
    /// needed); returns where it went.
    fn append(&self, inner: &mut Inner, bytes: &[u8], seq: u64) -> io::Result<(u64, u64, u32)> {
        let len = bytes.len() as u64;
        if let Some(w) = &inner.writer
            && w.len > HEADER_LEN as u64
            && w.len + len > self.options.segment_bytes
        {
            self.close_writer(inner);
        }
        if inner.writer.is_none() {
            let id = inner.next_segment_id;
            let writer = Writer::create(&self.dir, id, self.options.faults.clone())?;
            inner.next_segment_id += 1;
            inner.segments.insert(
                id,
                Segment {
                    path: writer.path.clone(),
                    bytes: HEADER_LEN as u64,
                    seqs: Vec::new(),
                    live: 0,
                },
            );
            inner.disk_bytes += HEADER_LEN as u64;
            inner.writer = Some(writer);
        }
        let Some(writer) = inner.writer.as_mut() else {
            return Err(io::Error::other("no spool segment open"));
        };
        let id = writer.id;
        match writer.append(bytes) {
            Ok(offset) => {
                if let Some(seg) = inner.segments.get_mut(&id) {
                    seg.bytes += len;
                    seg.seqs.push(seq);
                    seg.live += 1;
                }
                inner.disk_bytes += len;
                inner.unsynced = true;
                self.sync_if_due(inner, false);
                Ok((id, offset, u32::try_from(len).unwrap_or(u32::MAX)))
            }
            Err(e) => {
                // Continue in a new segment next time: this one is deleted as
                // soon as its batches are finished, which is how space comes
                // back on a full disk; and if the failed write could not be
                // cut back, recovery drops its torn tail.
                self.close_writer(inner);
                Err(e)
            }
        }
    }

    fn close_writer(&self, inner: &mut Inner) {
        let Some(writer) = inner.writer.take() else {
            return;
        };
        if inner.unsynced {
            if let Err(e) = writer.sync() {
                tracing::warn!(error = %e, "cannot fsync the spool segment");
            }
            inner.unsynced = false;
            inner.synced = Instant::now();
        }
        if inner.segments.get(&writer.id).is_some_and(|s| s.live == 0) {
            self.delete_segment(inner, writer.id);
        }
    }

    fn delete_segment(&self, inner: &mut Inner, id: u64) {
        let Some(seg) = inner.segments.remove(&id) else {
            return;
        };
        // No directory fsync: a deleted segment that comes back after a
        // crash only causes resends that ingest discards.
        if let Err(e) = fs::remove_file(&seg.path) {
            tracing::warn!(path = %seg.path.display(), error = %e, "cannot delete a finished spool segment");
        }
        inner.disk_bytes = inner.disk_bytes.saturating_sub(seg.bytes);
        for seq in &seg.seqs {
            inner.state.done.remove(seq);
        }
        inner.state_dirty = true;
    }

    /// Marks a pending batch finished; deletes its segment when that was the
    /// last one in it.
    fn finish(&self, inner: &mut Inner, seq: u64) -> Option<Pending> {
        let p = inner.pending.remove(&seq)?;
        inner.lent.remove(&seq);
        match p.location {
            Location::Disk { segment, .. } => {
                inner.state.done.insert(seq);
                inner.state_dirty = true;
                let writing = inner.writer.as_ref().is_some_and(|w| w.id == segment);
                if let Some(seg) = inner.segments.get_mut(&segment) {
                    seg.live = seg.live.saturating_sub(1);
                    if seg.live == 0 && !writing {
                        self.delete_segment(inner, segment);
                    }
                }
            }
            Location::Memory(_) => inner.held_in_memory -= 1,
        }
        Some(p)
    }

    /// Finishes a batch dropped for room and counts it, unless the sender
    /// holds it: then the count waits for its fate (see the module doc).
    fn drop_for_room(&self, inner: &mut Inner, seq: u64, why: &str) {
        let lent = inner.lent.contains(&seq);
        let Some(p) = self.finish(inner, seq) else {
            return;
        };
        if lent {
            inner.dropped_while_lent.insert(seq, p.meta.sample_count);
        } else {
            self.count_drop(inner, Some(seq), p.meta.sample_count, why);
        }
    }

    /// The sender gave up every batch it held: those dropped for room in
    /// the meantime are lost, and counted.
    fn settle_abandoned(&self, inner: &mut Inner) {
        inner.lent.clear();
        for (seq, samples) in std::mem::take(&mut inner.dropped_while_lent) {
            self.count_drop(inner, Some(seq), samples, "spool full");
        }
    }

    fn count_drop(&self, inner: &mut Inner, seq: Option<u64>, samples: u32, why: &str) {
        let c = &mut inner.state.counters;
        c.dropped_batches += 1;
        c.dropped_samples += u64::from(samples);
        inner.state_dirty = true;
        let total = c.dropped_batches;
        // One line per drop would flood the log during a long outage.
        if total == 1 || total.is_multiple_of(100) {
            tracing::warn!(
                seq = ?seq,
                dropped_batches = c.dropped_batches,
                dropped_samples = c.dropped_samples,
                why,
                "dropped a metrics batch"
            );
        }
    }

    /// Frees space until `need` more bytes fit under `max_bytes`, oldest
    /// segment first: its metrics batches are dropped (and counted), its
    /// higher-priority batches are copied to the current segment, then it is
    /// deleted. False if it still does not fit.
    fn make_room(&self, inner: &mut Inner, need: u64) -> bool {
        let max = self.options.max_bytes;
        let fits = |inner: &Inner| inner.disk_bytes + need <= max;
        if fits(inner) {
            return true;
        }
        let writing = inner.writer.as_ref().map(|w| w.id);
        // Only segments that exist now: copies made below go to newer ones,
        // which are never evicted in the same call.
        let older: Vec<u64> = inner
            .segments
            .keys()
            .copied()
            .filter(|id| Some(*id) != writing)
            .collect();
        for id in older {
            if fits(inner) {
                return true;
            }
            self.evict(inner, id, true);
        }
        if !fits(inner)
            && let Some(id) = writing
        {
            // Only the current segment is left: close it and drop its metrics.
            self.close_writer(inner);
            self.evict(inner, id, false);
        }
        fits(inner)
    }

    /// Drops the metrics batches of a segment and, if `relocate`, copies its
    /// other unfinished batches to the current segment, so it can be deleted.
    fn evict(&self, inner: &mut Inner, id: u64, relocate: bool) {
        let Some(seqs) = inner.segments.get(&id).map(|s| s.seqs.clone()) else {
            return;
        };
        for seq in seqs {
            let Some(p) = inner.pending.get(&seq) else {
                continue;
            };
            if p.meta.priority == 0 {
                self.drop_for_room(inner, seq, "spool full");
                continue;
            }
            if !relocate {
                continue;
            }
            let Ok(Some(entry)) = self.load(inner, seq) else {
                continue;
            };
            let Ok((segment, offset, len)) = self.append(inner, &record::encode(&entry), seq)
            else {
                return;
            };
            if let Some(p) = inner.pending.get_mut(&seq) {
                p.location = Location::Disk {
                    segment,
                    offset,
                    len,
                };
            }
            let emptied = inner.segments.get_mut(&id).is_some_and(|s| {
                s.live = s.live.saturating_sub(1);
                s.live == 0
            });
            if emptied {
                self.delete_segment(inner, id);
            }
        }
    }

    /// Writes one record, making room first; `Ok(None)` means the new batch
    /// was dropped for room.
    fn store(&self, inner: &mut Inner, entry: &OutboxEntry) -> io::Result<Option<(u64, u64, u32)>> {
        let bytes = record::encode(entry);
        if !self.make_room(inner, bytes.len() as u64) && entry.priority == 0 {
            return Ok(None);
        }
        self.append(inner, &bytes, entry.seq).map(Some)
    }

    /// Tries to move batches held in memory to disk, oldest first.
    fn flush_held(&self, inner: &mut Inner) -> io::Result<()> {
        if inner.held_in_memory == 0 {
            return Ok(());
        }
        let held: Vec<Arc<OutboxEntry>> = inner
            .pending
            .values()
            .filter_map(|p| match &p.location {
                Location::Memory(e) => Some(Arc::clone(e)),
                Location::Disk { .. } => None,
            })
            .collect();
        for entry in held {
            match self.store(inner, &entry)? {
                Some((segment, offset, len)) => {
                    if let Some(p) = inner.pending.get_mut(&entry.seq) {
                        p.location = Location::Disk {
                            segment,
                            offset,
                            len,
                        };
                    }
                    inner.held_in_memory -= 1;
                }
                None => self.drop_for_room(inner, entry.seq, "spool full"),
            }
        }
        Ok(())
    }

    fn push_locked(&self, inner: &mut Inner, entry: OutboxEntry) {
        let meta = RecordMeta {
            seq: entry.seq,
            priority: entry.priority,
            created_unix_micros: entry.created_unix_micros,
            sample_count: entry.sample_count,
        };
        let stored = self
            .flush_held(inner)
            .and_then(|()| self.store(inner, &entry));
        match stored {
            Ok(Some((segment, offset, len))) => {
                if inner.write_failing {
                    tracing::info!("spool writable again; batches held in memory are on disk now");
                    inner.write_failing = false;
                }
                inner.pending.insert(
                    entry.seq,
                    Pending {
                        meta,
                        location: Location::Disk {
                            segment,
                            offset,
                            len,
                        },
                    },
                );
            }
            Ok(None) => self.count_drop(inner, Some(entry.seq), entry.sample_count, "spool full"),
            Err(e) => {
                if !inner.write_failing {
                    tracing::error!(
                        error = %e,
                        dir = %self.dir.display(),
                        max_in_memory = self.options.max_batches_in_memory,
                        "cannot write the spool; holding new batches in memory until it works again (logged again on recovery)"
                    );
                    inner.write_failing = true;
                }
                inner.pending.insert(
                    entry.seq,
                    Pending {
                        meta,
                        location: Location::Memory(Arc::new(entry)),
                    },
                );
                inner.held_in_memory += 1;
                self.bound_memory(inner);
            }
        }
    }

    fn bound_memory(&self, inner: &mut Inner) {
        while inner.held_in_memory > self.options.max_batches_in_memory.max(1) {
            let oldest = inner.pending.iter().find_map(|(seq, p)| {
                matches!(p.location, Location::Memory(_) if p.meta.priority == 0).then_some(*seq)
            });
            let Some(seq) = oldest else { break };
            self.drop_for_room(inner, seq, "disk full and memory bound reached");
        }
    }

    /// The full entry of a pending batch; `Ok(None)` if its record turned
    /// out damaged (then it is finished and counted as corrupt).
    fn load(&self, inner: &mut Inner, seq: u64) -> io::Result<Option<Arc<OutboxEntry>>> {
        let Some(p) = inner.pending.get(&seq) else {
            return Ok(None);
        };
        let (segment, offset, len) = match &p.location {
            Location::Memory(e) => return Ok(Some(Arc::clone(e))),
            Location::Disk {
                segment,
                offset,
                len,
            } => (*segment, *offset, *len),
        };
        let path = self.dir.join(segment::file_name(segment));
        let bytes = match segment::read_at(&path, offset, len) {
            Ok(bytes) => bytes,
            // The segment vanished or shrank under us (removed or cut by
            // hand): the batch is gone, and retrying cannot bring it back.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof
                ) =>
            {
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        match record::decode(&bytes) {
            Ok((entry, _)) if entry.seq == seq => Ok(Some(Arc::new(entry))),
            Ok(_) | Err(_) => {
                tracing::error!(seq, path = %path.display(), "spooled batch is damaged on disk; dropped it");
                inner.state.counters.corrupt += 1;
                self.finish(inner, seq);
                Ok(None)
            }
        }
    }

    fn record_bytes(&self, inner: &mut Inner, seq: u64) -> Option<Vec<u8>> {
        self.load(inner, seq)
            .ok()
            .flatten()
            .map(|e| record::encode(&e))
    }
}

impl Outbox for Spool {
    fn push(&self, entry: OutboxEntry) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        self.push_locked(&mut inner, entry);
        drop(inner);
        self.pushed.notify_one();
        Ok(())
    }

    fn unacked_after(
        &self,
        after: Option<u64>,
        max: usize,
    ) -> Result<Vec<Arc<OutboxEntry>>, OutboxError> {
        let mut inner = self.lock();
        if after.is_none() {
            // Starting over from the oldest: the sender dropped what it held.
            self.settle_abandoned(&mut inner);
        }
        let mut out = Vec::with_capacity(max.min(64));
        let mut from = after.map_or(0, |a| a.saturating_add(1));
        while out.len() < max {
            let Some(seq) = inner.pending.range(from..).next().map(|(s, _)| *s) else {
                break;
            };
            from = seq.saturating_add(1);
            match self.load(&mut inner, seq) {
                Ok(Some(entry)) => {
                    inner.lent.insert(seq);
                    out.push(entry);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(OutboxError::Storage(format!(
                        "cannot read spooled batch {seq}: {e}"
                    )));
                }
            }
            if seq == u64::MAX {
                break;
            }
        }
        Ok(out)
    }

    fn ack(&self, seq: u64) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        if self.finish(&mut inner, seq).is_some() || inner.dropped_while_lent.remove(&seq).is_some()
        {
            inner.acked += 1;
        }
        Ok(())
    }

    fn reject(&self, seq: u64, reason: &str) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        if let Some(samples) = inner.dropped_while_lent.remove(&seq) {
            // Its bytes went for room; there is nothing left to quarantine.
            self.count_drop(&mut inner, Some(seq), samples, "spool full");
            return Ok(());
        }
        let Some(bytes) = self.record_bytes(&mut inner, seq) else {
            return Ok(());
        };
        if let Err(e) = quarantine::write_batch(&self.quarantine_dir, seq, reason, &bytes) {
            tracing::warn!(seq, error = %e, "cannot write the refused batch to the spool quarantine");
        }
        if self.finish(&mut inner, seq).is_some() {
            inner.state.counters.quarantined += 1;
            tracing::error!(
                seq,
                reason,
                quarantined_total = inner.state.counters.quarantined,
                dir = %self.quarantine_dir.display(),
                "ingest refused a batch for good; moved it to quarantine"
            );
        }
        Ok(())
    }

    fn count_lost(&self, samples: u32, why: &'static str) {
        let mut inner = self.lock();
        self.count_drop(&mut inner, None, samples, why);
    }

    fn pushed(&self) -> Notified<'_> {
        self.pushed.notified()
    }

    fn stats(&self) -> OutboxStats {
        let inner = self.lock();
        let c = inner.state.counters;
        OutboxStats {
            // Batches dropped while lent are not settled yet.
            queued: inner.pending.len() + inner.dropped_while_lent.len(),
            queued_bytes: inner.disk_bytes,
            oldest_unacked_unix_micros: inner
                .pending
                .values()
                .map(|p| p.meta.created_unix_micros)
                .min(),
            held_in_memory: inner.held_in_memory,
            write_failing: inner.write_failing,
            acked: inner.acked,
            dropped_batches: c.dropped_batches,
            dropped_samples: c.dropped_samples,
            quarantined: c.quarantined,
            corrupt: c.corrupt,
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.close();
    }
}

impl SpoolOptions {
    /// The options an agent configuration asks for.
    pub fn from_config(config: &crate::config::AgentConfig) -> Self {
        let fsync = match config.spool.fsync_interval_ms {
            Some(ms) => FsyncPolicy::Interval(Duration::from_millis(ms)),
            None => FsyncPolicy::EveryBatch,
        };
        Self {
            max_bytes: config.spool.max_bytes,
            fsync,
            max_batches_in_memory: config.sender.max_batches_in_memory,
            ..Self::default()
        }
    }
}
