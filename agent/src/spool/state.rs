//! The spool's state file, `<state_dir>/spool/state`: which spooled batches
//! are finished (acknowledged, dropped or quarantined) and the spool's
//! lifetime counters.
//!
//! ```text
//! lasect-agent-spool-state v1
//! dropped_batches <n>
//! dropped_samples <n>
//! quarantined <n>
//! corrupt <n>
//! done <a>-<b>,<c>,...        (seq ranges, ascending; may be empty)
//! crc <crc32c of every byte before this line, 8 hex digits>
//! ```
//!
//! The file is replaced atomically and durably
//! (`lasect_pki::atomic_file::write_atomic`: temp file, fsync, rename, fsync
//! the directory). It may lag behind: a batch acknowledged but not yet
//! recorded here is simply sent again after a crash, and ingest discards the
//! duplicate. A missing or damaged file therefore costs resends, never data.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use lasect_pki::atomic_file::write_atomic;

pub const FILE_NAME: &str = "state";
/// The temp file of agents before `write_atomic`; removed when the spool opens.
pub const TMP_NAME: &str = "state.tmp";
const MAGIC_LINE: &str = "lasect-agent-spool-state v1";

/// Counters kept across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub dropped_batches: u64,
    pub dropped_samples: u64,
    pub quarantined: u64,
    /// Damaged segment parts found (torn tails, corrupt or vanished records).
    pub corrupt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub counters: Counters,
    pub done: BTreeSet<u64>,
}

pub fn render(state: &State) -> String {
    let c = &state.counters;
    let mut text = format!(
        "{MAGIC_LINE}\ndropped_batches {}\ndropped_samples {}\nquarantined {}\ncorrupt {}\ndone ",
        c.dropped_batches, c.dropped_samples, c.quarantined, c.corrupt
    );
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for &seq in &state.done {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == seq => *end = seq,
            _ => ranges.push((seq, seq)),
        }
    }
    for (i, (a, b)) in ranges.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        if a == b {
            let _ = write!(text, "{a}");
        } else {
            let _ = write!(text, "{a}-{b}");
        }
    }
    text.push('\n');
    let crc = crc32c::crc32c(text.as_bytes());
    let _ = writeln!(text, "crc {crc:08x}");
    text
}

/// Parses a state file; `Err` says why it is unusable.
pub fn parse(bytes: &[u8]) -> Result<State, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let body_end = text
        .rfind("crc ")
        .ok_or_else(|| "no checksum line".to_string())?;
    let (body, crc_line) = text.split_at(body_end);
    let crc = crc_line
        .strip_prefix("crc ")
        .and_then(|c| c.strip_suffix('\n'))
        .and_then(|c| u32::from_str_radix(c, 16).ok())
        .ok_or_else(|| "unreadable checksum line".to_string())?;
    if crc32c::crc32c(body.as_bytes()) != crc {
        return Err("checksum mismatch".into());
    }
    let mut lines = body.lines();
    if lines.next() != Some(MAGIC_LINE) {
        return Err("unrecognised format or version".into());
    }
    let mut state = State::default();
    let number = |name: &str, line: Option<&str>| -> Result<u64, String> {
        line.and_then(|l| l.strip_prefix(name))
            .and_then(|l| l.strip_prefix(' '))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("unreadable {name}"))
    };
    state.counters.dropped_batches = number("dropped_batches", lines.next())?;
    state.counters.dropped_samples = number("dropped_samples", lines.next())?;
    state.counters.quarantined = number("quarantined", lines.next())?;
    state.counters.corrupt = number("corrupt", lines.next())?;
    let done = lines
        .next()
        .and_then(|l| l.strip_prefix("done "))
        .ok_or_else(|| "no done line".to_string())?;
    for part in done.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b) = a
            .parse::<u64>()
            .ok()
            .zip(b.parse::<u64>().ok())
            .filter(|(a, b)| a <= b)
            .ok_or_else(|| format!("bad seq range {part:?}"))?;
        // Ranges only cover batches still in live segments, so they are small;
        // refuse absurd ones rather than allocate for them.
        if b - a > 100_000_000 {
            return Err(format!("seq range {part:?} is implausibly long"));
        }
        state.done.extend(a..=b);
    }
    Ok(state)
}

/// Replaces the state file atomically and durably.
pub fn write(dir: &Path, state: &State) -> io::Result<()> {
    write_atomic(&dir.join(FILE_NAME), render(state).as_bytes(), 0o644)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let state = State {
            counters: Counters {
                dropped_batches: 3,
                dropped_samples: 30,
                quarantined: 1,
                corrupt: 2,
            },
            done: [1, 2, 3, 7, 9, 10].into_iter().collect(),
        };
        let text = render(&state);
        assert!(text.contains("done 1-3,7,9-10\n"), "{text}");
        assert_eq!(parse(text.as_bytes()), Ok(state));
        assert_eq!(
            parse(render(&State::default()).as_bytes()),
            Ok(State::default())
        );
        let flipped = text.replace("dropped_batches 3", "dropped_batches 4");
        assert_eq!(parse(flipped.as_bytes()), Err("checksum mismatch".into()));
        for cut in 0..text.len() {
            assert!(parse(&text.as_bytes()[..cut]).is_err(), "cut at {cut}");
        }
    }
}
