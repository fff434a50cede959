//! The trading stream (`/stream`, §4 of the protocol notes): authorization, listening and
//! `trade_updates`. JSON by default, in text or binary frames (Alpaca's paper server sends
//! binary); msgpack when negotiated.

use crate::alpaca::model::TradeUpdate;
use serde::{Deserialize, Serialize};

/// One message of the trading stream.
#[derive(Debug, Clone, PartialEq)]
pub enum TradingMessage {
    /// `{"stream":"authorization","data":{"action":"authenticate","status":"authorized"}}`
    Authorization {
        status: String,
        action: String,
    },
    /// `{"stream":"listening","data":{"streams":["trade_updates"]}}`
    Listening {
        streams: Vec<String>,
    },
    TradeUpdate(Box<TradeUpdate>),
    /// A stream we do not model.
    Other {
        stream: String,
    },
}

#[derive(Deserialize)]
struct Envelope {
    stream: String,
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AuthData {
    status: String,
    action: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ListenData {
    streams: Vec<String>,
}

impl TradingMessage {
    fn from_envelope(e: Envelope) -> Result<TradingMessage, String> {
        Ok(match e.stream.as_str() {
            "authorization" => {
                let d: AuthData = serde_json::from_value(e.data).map_err(|x| x.to_string())?;
                TradingMessage::Authorization {
                    status: d.status,
                    action: d.action,
                }
            }
            "listening" => {
                let d: ListenData = serde_json::from_value(e.data).map_err(|x| x.to_string())?;
                TradingMessage::Listening { streams: d.streams }
            }
            "trade_updates" => TradingMessage::TradeUpdate(Box::new(
                serde_json::from_value(e.data).map_err(|x| x.to_string())?,
            )),
            other => TradingMessage::Other {
                stream: other.to_string(),
            },
        })
    }

    pub fn decode_json(bytes: &[u8]) -> Result<TradingMessage, String> {
        let e: Envelope = serde_json::from_slice(bytes).map_err(|x| x.to_string())?;
        Self::from_envelope(e)
    }

    pub fn decode_msgpack(bytes: &[u8]) -> Result<TradingMessage, String> {
        let e: Envelope = rmp_serde::from_slice(bytes).map_err(|x| x.to_string())?;
        Self::from_envelope(e)
    }
}

/// `{"stream": …, "data": …}` for the simulator to send.
#[derive(Serialize)]
pub struct Outgoing<'a, T: Serialize> {
    pub stream: &'a str,
    pub data: T,
}

/// What a trading-stream client sends: `authenticate` (with `data`), `auth` (flat), `listen`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TradingAction {
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<TradingActionData>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TradingActionData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams: Option<Vec<String>>,
}

impl TradingAction {
    pub fn authenticate(key: &str, secret: &str) -> Self {
        TradingAction {
            action: "authenticate".into(),
            data: Some(TradingActionData {
                key_id: Some(key.into()),
                secret_key: Some(secret.into()),
                streams: None,
            }),
            ..Default::default()
        }
    }
    pub fn listen(streams: &[&str]) -> Self {
        TradingAction {
            action: "listen".into(),
            data: Some(TradingActionData {
                streams: Some(streams.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    /// The key pair of either auth form.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match (self.key.as_deref(), self.secret.as_deref()) {
            (Some(k), Some(s)) => Some((k, s)),
            _ => {
                let d = self.data.as_ref()?;
                Some((d.key_id.as_deref()?, d.secret_key.as_deref()?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_auth_listen_and_updates() {
        let auth = TradingMessage::decode_json(
            br#"{"stream":"authorization","data":{"action":"authenticate","status":"authorized"}}"#,
        )
        .unwrap();
        assert_eq!(
            auth,
            TradingMessage::Authorization {
                status: "authorized".into(),
                action: "authenticate".into()
            }
        );
        let listen = TradingMessage::decode_json(
            br#"{"stream":"listening","data":{"streams":["trade_updates"]}}"#,
        )
        .unwrap();
        assert_eq!(
            listen,
            TradingMessage::Listening {
                streams: vec!["trade_updates".into()]
            }
        );
        let bad =
            TradingMessage::decode_json(br#"{"stream":"trade_updates","data":{"event":"fill"}}"#);
        assert!(
            bad.is_err(),
            "a trade update needs an order and a timestamp"
        );
    }

    #[test]
    fn both_auth_forms_give_the_key_pair() {
        let a: TradingAction = serde_json::from_str(
            r#"{"action":"authenticate","data":{"key_id":"K","secret_key":"S"}}"#,
        )
        .unwrap();
        let b: TradingAction =
            serde_json::from_str(r#"{"action":"auth","key":"K","secret":"S"}"#).unwrap();
        assert_eq!(a.credentials(), Some(("K", "S")));
        assert_eq!(b.credentials(), Some(("K", "S")));
        assert_eq!(
            serde_json::to_string(&TradingAction::listen(&["trade_updates"])).unwrap(),
            r#"{"action":"listen","data":{"streams":["trade_updates"]}}"#
        );
    }
}
