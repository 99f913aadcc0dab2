//! Reading segments back: recovery at open (queue what is unfinished, cut
//! off and quarantine damage) and an offline reader for tools and tests.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use super::segment::{self, End};
use super::state::State;
use super::{DIR_NAME, Location, Pending, Segment, quarantine, record};
use crate::outbox::OutboxEntry;

/// Reads one segment at open: queues its unfinished records, cuts off and
/// quarantines damage. `None` when nothing of it is worth keeping (the file
/// is then gone).
pub(super) fn recover_segment(
    path: &Path,
    quarantine_dir: &Path,
    state: &mut State,
    pending: &mut BTreeMap<u64, Pending>,
    id: u64,
) -> Option<Segment> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read spool segment; skipping it");
            return None;
        }
    };
    let name = segment::file_name(id);
    let (records, end) = segment::scan(&data);
    let good_len = match &end {
        End::Clean => data.len() as u64,
        End::BadHeader(reason) => {
            state.counters.corrupt += 1;
            tracing::warn!(path = %path.display(), reason, "spool segment has no valid header; moved it to quarantine");
            if let Err(e) = quarantine::write_damaged(quarantine_dir, &name, 0, &data) {
                tracing::warn!(error = %e, "cannot write to the spool quarantine");
            }
            let _ = fs::remove_file(path);
            return None;
        }
        End::Torn { offset } => {
            state.counters.corrupt += 1;
            tracing::warn!(path = %path.display(), offset, lost_bytes = data.len() as u64 - offset, "spool segment ends in a torn record (crash during a write); cut it off");
            *offset
        }
        End::Corrupt { offset, error } => {
            state.counters.corrupt += 1;
            tracing::warn!(path = %path.display(), offset, %error, "spool segment is damaged; kept the records before the damage, moved the rest to quarantine");
            let from = usize::try_from(*offset)
                .unwrap_or(data.len())
                .min(data.len());
            if let Err(e) = quarantine::write_damaged(quarantine_dir, &name, *offset, &data[from..])
            {
                tracing::warn!(error = %e, "cannot write to the spool quarantine");
            }
            *offset
        }
    };
    if good_len < data.len() as u64 {
        let cut = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(good_len).and_then(|()| f.sync_all()));
        if let Err(e) = cut {
            // The damage stays, but scanning stops at it every time, so the
            // next start finds the same good prefix.
            tracing::warn!(path = %path.display(), error = %e, "cannot cut the damaged spool segment");
        }
    }
    let mut seg = Segment {
        path: path.to_owned(),
        bytes: good_len,
        seqs: Vec::with_capacity(records.len()),
        live: 0,
    };
    for r in records {
        let seq = r.meta.seq;
        seg.seqs.push(seq);
        if state.done.contains(&seq) || pending.contains_key(&seq) {
            continue;
        }
        pending.insert(
            seq,
            Pending {
                meta: r.meta,
                location: Location::Disk {
                    segment: id,
                    offset: r.offset,
                    len: r.len,
                },
            },
        );
        seg.live += 1;
    }
    if seg.live == 0 {
        let _ = fs::remove_file(path);
        return None;
    }
    Some(seg)
}

/// Every record readable in the spool directory's segments, in file order;
/// for tools and tests that inspect a spool offline.
pub fn read_all(state_dir: &Path) -> io::Result<Vec<OutboxEntry>> {
    let dir = state_dir.join(DIR_NAME);
    let mut ids: Vec<u64> = fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(segment::parse_file_name))
        .collect();
    ids.sort_unstable();
    let mut out = Vec::new();
    for id in ids {
        let data = fs::read(dir.join(segment::file_name(id)))?;
        for r in segment::scan(&data).0 {
            let from = usize::try_from(r.offset).unwrap_or(usize::MAX);
            if let Some(bytes) = data.get(from..)
                && let Ok((entry, _)) = record::decode(bytes)
            {
                out.push(entry);
            }
        }
    }
    Ok(out)
}
