//! Any bytes as a segment image: scanning never panics, and every record it
//! reports decodes, with a matching CRC and the reported length.
#![no_main]

use lasect_agent::spool::{record, segment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (found, _end) = segment::scan(data);
    let mut next = segment::HEADER_LEN as u64;
    for r in found {
        assert_eq!(r.offset, next, "records are contiguous");
        let at = usize::try_from(r.offset).expect("offset fits");
        let (entry, len) = record::decode(&data[at..]).expect("a reported record decodes");
        assert_eq!(len, r.len as usize);
        assert_eq!(entry.seq, r.meta.seq);
        next += u64::from(r.len);
    }
    // Single records too, at the start of the data.
    let _ = record::decode(data);
});
