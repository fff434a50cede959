//! Any bytes as a msgpack market-data frame (with Timestamp extensions): never panics, and
//! the hand decoder of trades and quotes, when it answers, answers what serde does.
#![no_main]
use libfuzzer_sys::fuzz_target;
use traderd::alpaca::stream::{Codec, DataMessage, data::fast, decode_data_frame};

fuzz_target!(|data: &[u8]| {
    if let Some(by_hand) = fast::frame(data) {
        assert_eq!(Codec::Msgpack.decode::<Vec<DataMessage>>(data).ok(), Some(by_hand));
    }
    if let Ok(messages) = decode_data_frame(Codec::Msgpack, data) {
        let _ = Codec::Msgpack.encode(&messages);
    }
});
