#![no_main]
//! The delimited decoder must never panic, and what it decodes must re-encode and decode to
//! the same messages.

use batchgate_format::{delimited, text};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(families) = delimited::decode(data) {
        let mut out = Vec::new();
        for f in &families {
            delimited::encode(f, &mut out);
        }
        let again = delimited::decode(&out).expect("re-encoded stream decodes");
        let bytes =
            |v: &[batchgate_format::MetricFamily]| -> Vec<Vec<u8>> { v.iter().map(Message::encode_to_vec).collect() };
        assert_eq!(bytes(&again), bytes(&families));
        let mut text_out = Vec::new();
        for f in &families {
            text::write_family(&mut text_out, f);
        }
    }
});
