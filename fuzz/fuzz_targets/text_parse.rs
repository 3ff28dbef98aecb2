#![no_main]
//! The text parser must never panic, and report a line inside the input; whatever it
//! accepts must survive the writer and the protobuf encoder.

use batchgate_format::{delimited, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match text::parse(data) {
        Ok(families) => {
            let mut out = Vec::new();
            for f in &families {
                assert!(!f.metric.is_empty());
                text::write_family(&mut out, f);
                delimited::encode(f, &mut out);
            }
            let _ = text::parse(&out);
        }
        Err(e) => {
            let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
            assert!(e.line >= 1 && e.line <= lines, "{e}");
        }
    }
});
