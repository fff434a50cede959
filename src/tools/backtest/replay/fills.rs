//! The replay's fills: fees, round trips, and the trailing stops of filled entries.

use super::Replay;
use crate::alpaca::model::OrderStatus;
use crate::risk::{Intent, Purpose};
use crate::tools::backtest::Fill;
use rust_decimal::Decimal;

impl Replay<'_> {
    /// Fills since the last call: fees, round trips, trailing stops for filled entries.
    pub(super) fn book_fills(&mut self) {
        let updates = self.engine.drain_updates();
        if !updates.is_empty() {
            self.changed();
        }
        for u in updates {
            if !matches!(u.event.as_str(), "fill" | "partial_fill") {
                continue;
            }
            let (Some(qty), Some(price)) = (u.qty, u.price) else {
                continue;
            };
            let o = &u.order;
            let fee = (qty * price * self.opts.fee_bps / Decimal::from(10_000)).round_dp(4);
            self.out.fees += fee;
            self.out.traded += qty * price;
            let purpose = self.purposes.get(&o.client_order_id).cloned();
            let reason = match (&purpose, o.order_type) {
                (Some(Purpose::Exit), _) => "exit signal",
                (Some(Purpose::Protect { .. }), _) => "trailing stop",
                (_, crate::alpaca::model::OrderType::Limit) => "take profit",
                (
                    _,
                    crate::alpaca::model::OrderType::Stop
                    | crate::alpaca::model::OrderType::StopLimit,
                ) => "stop loss",
                _ => "entry",
            };
            self.out.fills.push(Fill {
                at: u.at(),
                client_order_id: o.client_order_id.clone(),
                symbol: o.symbol.clone(),
                side: o.side,
                qty,
                price,
                fee,
            });
            match self.engine.qty(&o.symbol) {
                q if q.is_zero() => self.held.remove(&o.symbol),
                q => self.held.insert(o.symbol.clone(), q),
            };
            if let Some(trip) = self
                .trips
                .book(&o.symbol, o.side, qty, price, fee, u.at(), reason)
            {
                self.out.trades.push(trip);
            }
            if o.status == OrderStatus::Filled {
                if let Some(Purpose::Entry {
                    trail_pct: Some(trail_pct),
                    ..
                }) = purpose
                {
                    let mut stop = Intent::market(
                        &o.symbol,
                        o.side.opposite(),
                        o.filled_qty,
                        Purpose::Protect { trail_pct },
                    );
                    stop.correlation_id = o.client_order_id.as_str().into();
                    let now = self.engine.now();
                    self.propose(stop, price, now, None);
                }
            }
        }
    }
}
