//! The protocol state of one market-data connection, without I/O: authentication,
//! subscriptions (additive, with `*`), the replies Alpaca gives, and which market events this
//! connection should see.

use crate::alpaca::stream::data::{Luld, TradingStatus};
use crate::alpaca::stream::{BarKind, ChannelLists, ClientAction, DataMessage, SubscriptionSet};
use crate::sim::market::MarketEvent;
use std::collections::BTreeSet;

/// One channel's subscription: named symbols, or all of them.
#[derive(Debug, Default, Clone)]
struct Channel {
    star: bool,
    symbols: BTreeSet<String>,
}

impl Channel {
    fn wants(&self, symbol: &str) -> bool {
        self.star || self.symbols.contains(symbol)
    }
    fn add(&mut self, list: &[String]) {
        for s in list {
            if s == "*" {
                self.star = true
            } else {
                self.symbols.insert(s.clone());
            }
        }
    }
    fn remove(&mut self, list: &[String]) {
        for s in list {
            if s == "*" {
                self.star = false
            } else {
                self.symbols.remove(s);
            }
        }
    }
    fn listed(&self) -> Vec<String> {
        let mut v: Vec<String> = self.symbols.iter().cloned().collect();
        if self.star {
            v.insert(0, "*".into());
        }
        v
    }
}

/// What the caller decides about an auth attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthVerdict {
    Ok,
    /// Wrong keys or auth refused by a fault: 402.
    Failed,
    /// The key already has a connection to this endpoint: 406.
    ConnectionLimit,
    /// The feed needs a plan the account does not have: 409.
    InsufficientSubscription,
}

/// The outcome of one client message.
#[derive(Debug, Default)]
pub struct Reply {
    pub messages: Vec<DataMessage>,
    /// Close the connection after sending.
    pub close: bool,
    /// The key that just authenticated.
    pub authenticated_key: Option<String>,
}

#[derive(Debug, Default)]
pub struct DataSession {
    authenticated: bool,
    /// trades, quotes, bars, updatedBars, dailyBars, statuses, lulds
    channels: [Channel; 7],
    /// Trades plus quotes symbols allowed (0 = unlimited), like the free plan's 30.
    symbol_limit: usize,
    /// Subscription changes so far (the flood regenerates its frames on one).
    changes: u64,
}

fn valid_symbol(s: &str) -> bool {
    s == "*"
        || (!s.is_empty()
            && s.len() <= 21
            && s.chars().all(|c| {
                c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, '.' | '/' | '-')
            }))
}

fn error(code: u16, msg: &str) -> DataMessage {
    DataMessage::Error {
        code,
        msg: msg.into(),
    }
}

impl DataSession {
    pub fn new(symbol_limit: usize) -> Self {
        DataSession {
            symbol_limit,
            ..Default::default()
        }
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// The greeting every connection gets first.
    pub fn greeting() -> DataMessage {
        DataMessage::Success {
            msg: "connected".into(),
        }
    }

    /// Handles one client message; `authorize` decides an auth attempt.
    pub fn on_action(
        &mut self,
        action: Result<ClientAction, String>,
        authorize: impl FnOnce(&str, &str) -> AuthVerdict,
    ) -> Reply {
        let mut reply = Reply::default();
        let Ok(action) = action else {
            reply.messages.push(error(400, "invalid syntax"));
            return reply;
        };
        match action.action.as_str() {
            "auth" => {
                if self.authenticated {
                    reply.messages.push(error(403, "already authenticated"));
                    return reply;
                }
                let (key, secret) = (
                    action.key.unwrap_or_default(),
                    action.secret.unwrap_or_default(),
                );
                match authorize(&key, &secret) {
                    AuthVerdict::Ok => {
                        self.authenticated = true;
                        reply.messages.push(DataMessage::Success {
                            msg: "authenticated".into(),
                        });
                        reply.authenticated_key = Some(key);
                    }
                    AuthVerdict::Failed => {
                        reply.messages.push(error(402, "auth failed"));
                        reply.close = true;
                    }
                    AuthVerdict::ConnectionLimit => {
                        reply.messages.push(error(406, "connection limit exceeded"));
                        reply.close = true;
                    }
                    AuthVerdict::InsufficientSubscription => {
                        reply.messages.push(error(409, "insufficient subscription"));
                        reply.close = true;
                    }
                }
            }
            "subscribe" | "unsubscribe" => {
                if !self.authenticated {
                    reply.messages.push(error(401, "not authenticated"));
                    return reply;
                }
                let lists = &action.channels;
                if lists.is_empty()
                    || !lists
                        .lists()
                        .iter()
                        .all(|l| l.iter().all(|s| valid_symbol(s)))
                {
                    reply.messages.push(error(400, "invalid syntax"));
                    return reply;
                }
                let before = self.channels.clone();
                self.apply(action.action == "subscribe", lists);
                if self.symbol_limit > 0 && self.streamed_symbols() > self.symbol_limit {
                    self.channels = before;
                    reply.messages.push(error(405, "symbol limit exceeded"));
                    return reply;
                }
                self.changes += 1;
                reply
                    .messages
                    .push(DataMessage::Subscription(Box::new(self.subscription())));
            }
            _ => reply.messages.push(error(400, "invalid syntax")),
        }
        reply
    }

    fn apply(&mut self, add: bool, lists: &ChannelLists) {
        for (channel, list) in self.channels.iter_mut().zip(lists.lists()) {
            if add {
                channel.add(list)
            } else {
                channel.remove(list)
            }
        }
    }

    fn streamed_symbols(&self) -> usize {
        let mut all: BTreeSet<&String> = self.channels[0].symbols.iter().collect();
        all.extend(self.channels[1].symbols.iter());
        all.len()
    }

    /// The whole subscription set, as Alpaca confirms it after every change.
    pub fn subscription(&self) -> SubscriptionSet {
        let [t, q, b, u, d, s, l] = &self.channels;
        SubscriptionSet {
            trades: t.listed(),
            quotes: q.listed(),
            bars: b.listed(),
            updated_bars: u.listed(),
            daily_bars: d.listed(),
            statuses: s.listed(),
            lulds: l.listed(),
            corrections: t.listed(),
            cancel_errors: t.listed(),
        }
    }

    /// The messages of a batch of market events this connection subscribed to, in order.
    pub fn messages_for(&self, events: &[MarketEvent]) -> Vec<DataMessage> {
        if !self.authenticated {
            return Vec::new();
        }
        let [trades, quotes, bars, updated, daily, statuses, lulds] = &self.channels;
        events
            .iter()
            .filter_map(|e| match e {
                MarketEvent::Trade { symbol, trade } if trades.wants(symbol) => {
                    Some(DataMessage::trade(symbol, trade))
                }
                MarketEvent::Quote { symbol, quote } if quotes.wants(symbol) => {
                    Some(DataMessage::quote(symbol, quote))
                }
                MarketEvent::BarClosed { symbol, bar } if bars.wants(symbol) => {
                    Some(DataMessage::bar(symbol, BarKind::Minute, bar))
                }
                MarketEvent::DailyBarClosed { symbol, bar } if daily.wants(symbol) => {
                    Some(DataMessage::bar(symbol, BarKind::Daily, bar))
                }
                MarketEvent::BarUpdated { symbol, bar } if updated.wants(symbol) => {
                    Some(DataMessage::bar(symbol, BarKind::Updated, bar))
                }
                MarketEvent::Status {
                    symbol,
                    code,
                    message,
                    reason,
                    at,
                } if statuses.wants(symbol) => Some(DataMessage::Status(Box::new(TradingStatus {
                    symbol: symbol.clone(),
                    status_code: code.clone(),
                    status_message: message.clone(),
                    reason_code: reason.clone(),
                    reason_message: String::new(),
                    timestamp: *at,
                }))),
                MarketEvent::Luld {
                    symbol,
                    up,
                    down,
                    at,
                } if lulds.wants(symbol) => Some(DataMessage::Luld(Luld {
                    symbol: symbol.clone(),
                    limit_up: *up,
                    limit_down: *down,
                    indicator: "B".into(),
                    timestamp: *at,
                })),
                _ => None,
            })
            .collect()
    }

    /// How many times the subscription changed.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The symbols subscribed for trades, quotes and bars (the listed ones for `*`), for the
    /// flood.
    pub fn flood_channels(&self, listed: &[String]) -> crate::sim::flood::Channels {
        let of = |c: &Channel| -> Vec<String> {
            if c.star {
                listed.to_vec()
            } else {
                c.symbols.iter().cloned().collect()
            }
        };
        crate::sim::flood::Channels {
            trades: of(&self.channels[0]),
            quotes: of(&self.channels[1]),
            bars: of(&self.channels[2]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(json: &str) -> Result<ClientAction, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn the_handshake_and_its_refusals() {
        let mut s = DataSession::new(0);
        let r = s.on_action(
            action(r#"{"action":"subscribe","trades":["AAPL"]}"#),
            |_, _| AuthVerdict::Ok,
        );
        assert_eq!(r.messages, vec![error(401, "not authenticated")]);
        let r = s.on_action(
            action(r#"{"action":"auth","key":"k","secret":"bad"}"#),
            |_, _| AuthVerdict::Failed,
        );
        assert_eq!(
            (r.messages[0].clone(), r.close),
            (error(402, "auth failed"), true)
        );
        let r = s.on_action(
            action(r#"{"action":"auth","key":"k","secret":"s"}"#),
            |_, _| AuthVerdict::Ok,
        );
        assert_eq!(r.authenticated_key.as_deref(), Some("k"));
        let r = s.on_action(
            action(r#"{"action":"auth","key":"k","secret":"s"}"#),
            |_, _| AuthVerdict::Ok,
        );
        assert_eq!(r.messages, vec![error(403, "already authenticated")]);
        for bad in [
            r#"{"action":"subscribe"}"#,
            r#"{"action":"subscribe","trades":["aapl"]}"#,
            r#"{"action":"dance"}"#,
            "not json",
        ] {
            let r = s.on_action(action(bad), |_, _| AuthVerdict::Ok);
            assert_eq!(r.messages, vec![error(400, "invalid syntax")], "{bad}");
        }
    }

    #[test]
    fn subscriptions_add_up_and_confirm_the_whole_set() {
        let mut s = DataSession::new(2);
        s.on_action(
            action(r#"{"action":"auth","key":"k","secret":"s"}"#),
            |_, _| AuthVerdict::Ok,
        );
        s.on_action(
            action(r#"{"action":"subscribe","trades":["AAPL"],"bars":["*"]}"#),
            |_, _| AuthVerdict::Ok,
        );
        let r = s.on_action(
            action(r#"{"action":"subscribe","quotes":["MSFT"]}"#),
            |_, _| AuthVerdict::Ok,
        );
        let DataMessage::Subscription(set) = &r.messages[0] else {
            panic!("{:?}", r.messages)
        };
        assert_eq!(
            (set.trades.clone(), set.quotes.clone(), set.bars.clone()),
            (
                vec!["AAPL".to_string()],
                vec!["MSFT".to_string()],
                vec!["*".to_string()]
            )
        );
        assert_eq!(set.corrections, set.trades);
        let r = s.on_action(
            action(r#"{"action":"subscribe","trades":["SPY"]}"#),
            |_, _| AuthVerdict::Ok,
        );
        assert_eq!(r.messages, vec![error(405, "symbol limit exceeded")]);
        assert_eq!(
            s.subscription().trades,
            vec!["AAPL"],
            "a refused change leaves the set as it was"
        );
        let r = s.on_action(
            action(r#"{"action":"unsubscribe","trades":["AAPL"],"bars":["*"]}"#),
            |_, _| AuthVerdict::Ok,
        );
        let DataMessage::Subscription(set) = &r.messages[0] else {
            panic!()
        };
        assert!(set.trades.is_empty() && set.bars.is_empty());
    }
}
