//! Any bytes as a trading-stream frame (`trade_updates`, authorization, listening), in JSON and
//! msgpack: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use traderd::alpaca::stream::{Codec, decode_trading_frame};

fuzz_target!(|data: &[u8]| {
    let _ = decode_trading_frame(Codec::Json, data);
    let _ = decode_trading_frame(Codec::Msgpack, data);
});
