//! Any bytes as a JSON market-data frame: the decoder returns messages or an error, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use traderd::alpaca::stream::{Codec, decode_data_frame};

fuzz_target!(|data: &[u8]| {
    if let Ok(messages) = decode_data_frame(Codec::Json, data) {
        // What decodes must encode again (the simulator's path).
        let _ = Codec::Json.encode(&messages);
    }
});
