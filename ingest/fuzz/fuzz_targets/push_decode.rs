//! The payload of a push, decoded as ingest decodes it (every codec,
//! size-limited decompression, protobuf, validation into rows): never a
//! panic, and an accepted batch keeps the invariants the writer relies on.
//! The first input byte picks the mode (see `lasect_ingest::fuzz_harness::one`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A fixed receive time keeps runs reproducible.
    let now = chrono::DateTime::from_timestamp_micros(1_750_000_000_000_000).expect("valid time");
    if let Err(broken) = lasect_ingest::fuzz_harness::one(data, now) {
        panic!("accepted batch breaks an invariant: {broken}");
    }
});
