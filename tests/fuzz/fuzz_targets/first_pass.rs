//! Any bytes as a market-data frame, read trades first (each codec; every trade wanted, then
//! only those with a condition): whenever the frame decodes, the two passes give the frame
//! the one pass gives, and the trades handed on first are exactly its wanted trades.
#![no_main]
use libfuzzer_sys::fuzz_target;
use traderd::alpaca::stream::{
    Codec, DataMessage, StreamTrade, Wanted, decode_data_frame, decode_rest, trades_first,
};

fuzz_target!(|data: &[u8]| {
    let codes = ["@".to_string(), "MARK".to_string()];
    for codec in [Codec::Json, Codec::Msgpack] {
        for wanted in [Wanted::Every, Wanted::WithCondition(&codes)] {
            let Some(first) = trades_first(codec, data, wanted) else {
                continue;
            };
            let early: Vec<StreamTrade> = first.trades().cloned().collect();
            let two = decode_rest(first, codec, data).ok();
            let one = decode_data_frame(codec, data).ok();
            assert_eq!(two, one, "{codec:?}: the two passes and the one differ");
            if let Some(all) = one {
                let of_frame: Vec<StreamTrade> = all
                    .into_iter()
                    .filter_map(|m| match m {
                        DataMessage::Trade(t) if wanted.wants(&t.conditions) => Some(t),
                        _ => None,
                    })
                    .collect();
                assert_eq!(early, of_frame, "{codec:?}: not the frame's wanted trades");
            }
        }
    }
});
