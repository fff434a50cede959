//! Any bytes as a msgpack market-data frame (with Timestamp extensions): never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use traderd::alpaca::stream::{Codec, decode_data_frame};

fuzz_target!(|data: &[u8]| {
    if let Ok(messages) = decode_data_frame(Codec::Msgpack, data) {
        let _ = Codec::Msgpack.encode(&messages);
    }
});
