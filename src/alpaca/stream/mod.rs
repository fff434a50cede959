//! Alpaca's two WebSocket protocols: market data ([`data`]) and the trading stream
//! ([`trading`]), in JSON and msgpack, with the msgpack Timestamp extension ([`time`]).
//! Used by our stream client and by the simulator's stream server.

pub mod data;
pub mod time;
pub mod trading;

pub use data::first::Wanted;
pub use data::{
    BarKind, ChannelLists, ClientAction, Code, Conditions, DataMessage, StreamBar, StreamQuote,
    StreamTrade, SubscriptionSet, Symbol,
};
pub use trading::{TradingAction, TradingMessage};

use serde::Serialize;

/// The frame encoding of a stream, chosen by the client's `Content-Type` at the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    #[default]
    Json,
    Msgpack,
}

impl Codec {
    pub fn content_type(self) -> &'static str {
        match self {
            Codec::Json => "application/json",
            Codec::Msgpack => "application/msgpack",
        }
    }

    pub fn from_content_type(value: Option<&str>) -> Codec {
        match value {
            Some(v) if v.to_ascii_lowercase().contains("msgpack") => Codec::Msgpack,
            _ => Codec::Json,
        }
    }

    /// Encodes any message (maps with named fields in msgpack).
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Vec<u8> {
        match self {
            Codec::Json => serde_json::to_vec(value).unwrap_or_default(),
            Codec::Msgpack => rmp_serde::to_vec_named(value).unwrap_or_default(),
        }
    }

    pub fn decode<'a, T: serde::Deserialize<'a>>(self, bytes: &'a [u8]) -> Result<T, String> {
        match self {
            Codec::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Codec::Msgpack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
        }
    }
}

/// A frame that could not be decoded: why, and a short printable sample of it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("undecodable frame ({reason}); starts with {sample}")]
pub struct FrameError {
    pub reason: String,
    pub sample: String,
}

/// At most 96 bytes of a frame, printable.
pub fn sample(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(96)];
    let text: String = String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { '·' } else { c })
        .collect();
    if bytes.len() > 96 {
        format!("{text:?}…")
    } else {
        format!("{text:?}")
    }
}

/// Decodes one market-data frame: an array of messages.
pub fn decode_data_frame(codec: Codec, bytes: &[u8]) -> Result<Vec<DataMessage>, FrameError> {
    let mut messages = Vec::new();
    decode_data_frame_into(codec, bytes, &mut messages)?;
    Ok(messages)
}

/// [`decode_data_frame`], its messages added to `out` (for a frame that does not decode,
/// none are).
pub fn decode_data_frame_into(
    codec: Codec,
    bytes: &[u8],
    out: &mut Vec<DataMessage>,
) -> Result<(), FrameError> {
    decode_data_frame_folding(codec, bytes, out, &mut ())
}

/// What a caller does with each message of a frame while the decoder adds it
/// ([`decode_data_frame_folding`]): one pass over the frame, where a walk after the decode
/// was a second one over memory the decoder had moved on from (~4 % of the market-data
/// session's thread under a flood).
pub trait FrameFold {
    /// One more message of the frame, in order: the one about to be added to the vector.
    fn message(&mut self, m: &DataMessage);
    /// Forget the messages told so far: the frame is decoded again another way (the quick
    /// msgpack pass gave up part-way through it), and each of its messages told again.
    fn restart(&mut self);
}

/// Nothing done per message.
impl FrameFold for () {
    fn message(&mut self, _: &DataMessage) {}
    fn restart(&mut self) {}
}

/// [`decode_data_frame_into`], `fold` told of each message as it is added (for a frame that
/// does not decode, of none, after a restart).
pub fn decode_data_frame_folding(
    codec: Codec,
    bytes: &[u8],
    out: &mut Vec<DataMessage>,
    fold: &mut impl FrameFold,
) -> Result<(), FrameError> {
    if codec == Codec::Msgpack {
        if data::fast::frame_into(bytes, out, fold) {
            return Ok(());
        }
        fold.restart();
    }
    let mut messages: Vec<DataMessage> = codec.decode(bytes).map_err(|reason| FrameError {
        reason,
        sample: sample(bytes),
    })?;
    messages.iter().for_each(|m| fold.message(m));
    if out.capacity() == 0 {
        *out = messages;
    } else {
        // Into a vector sized ahead (the feed's next batch), not in place of it: replaced,
        // it would then grow by doubling to a varying size, frame after frame.
        out.append(&mut messages);
    }
    Ok(())
}

/// The first pass of a market-data frame read trades first ([`data::first`]), its `wanted`
/// trades decoded (`None` for a frame the first pass leaves to serde: decode it whole).
pub fn trades_first(
    codec: Codec,
    bytes: &[u8],
    wanted: Wanted<'_>,
) -> Option<data::first::TradesFirst> {
    match codec {
        Codec::Msgpack => data::first::trades_first(bytes, wanted),
        Codec::Json => data::first::json::trades_first(bytes, wanted),
    }
}

/// The rest of a frame whose trades were read first: the whole frame in order, as
/// [`decode_data_frame`] answers it.
pub fn decode_rest(
    first: data::first::TradesFirst,
    codec: Codec,
    bytes: &[u8],
) -> Result<Vec<DataMessage>, FrameError> {
    match first.rest(bytes) {
        Some(messages) => Ok(messages),
        None => decode_data_frame(codec, bytes),
    }
}

/// Decodes one trading-stream frame.
pub fn decode_trading_frame(codec: Codec, bytes: &[u8]) -> Result<TradingMessage, FrameError> {
    let result = match codec {
        Codec::Json => TradingMessage::decode_json(bytes),
        Codec::Msgpack => {
            TradingMessage::decode_msgpack(bytes).or_else(|_| TradingMessage::decode_json(bytes))
        }
    };
    result.map_err(|reason| FrameError {
        reason,
        sample: sample(bytes),
    })
}
