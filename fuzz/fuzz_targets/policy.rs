//! Policy load + validate on arbitrary input: never panics; every
//! diagnostic points inside the file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let report = snapward::policy::lint_text("fuzz.yaml", text, true);
        for d in &report.diagnostics {
            assert!(d.span.offset() <= text.len(), "span outside the file");
        }
    }
});
