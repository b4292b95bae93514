//! Snapshot verification on arbitrary bytes: never panics; whatever it
//! accepts has an identity whose file size is the input's length.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = snapward::snapshot::verify_reader(data) {
        assert_eq!(id.file_size, data.len() as u64);
    }
});
