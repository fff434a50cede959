//! Our positions, and the comparison with the broker's that reconciliation makes, without I/O.
//!
//! The broker's positions are read at one instant; the comparison is made later, when the
//! read has come back. Between the two, fills keep arriving (from `trade_updates`, a poll, a
//! POST answer): a position compared with a read that predates a fill booked since is not a
//! difference, it is a race. So:
//!
//! - Every booked fill gets a sequence number. A read begins with a [`ReadToken`] holding the
//!   sequence at its start; a symbol with a fill booked after it is **inconclusive** for that
//!   read: compared again at the next one.
//! - A symbol with one of our orders open (or in flight) is **unsettled**: the broker may
//!   have filled it before the read while its fill has not reached us yet.
//! - Otherwise, a difference is only **suspected**: it counts as a mismatch once a fresh read
//!   (the next conclusive one) shows the same two quantities with no fill on the symbol in
//!   between. Only a confirmed, persisting difference is reported.
//!
//! Why that is enough (docs/supervision.md): with no fill booked on the symbol since the
//! read began, every fill we hold was executed before the read; with no order of ours open,
//! every order that filled before the read is final in our book and its fills are booked. So
//! both sides count the same fills, and a difference left is real.

use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};

/// Where a broker read began, in the sequence of booked fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadToken(u64);

/// The comparison of one symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Agrees,
    /// A fill on the symbol was booked after the read began: compare again next time.
    Inconclusive,
    /// One of our orders on the symbol is open or in flight: compare again next time.
    Unsettled,
    /// A difference seen once: confirmed or cleared by the next read.
    Suspected {
        ours: Decimal,
        broker: Decimal,
    },
    /// The same difference in two reads with no fill in between: a real mismatch.
    Confirmed {
        ours: Decimal,
        broker: Decimal,
    },
    /// A difference the first reconciliation of the process found (a position held before
    /// the journal began), unchanged since: known, not reported again.
    Known {
        ours: Decimal,
        broker: Decimal,
    },
}

impl Verdict {
    /// Whether the fill window should stay open: a difference stands that is not a known one
    /// (positions held before the journal began do not hold it open).
    pub fn differs(&self) -> bool {
        !matches!(self, Verdict::Agrees | Verdict::Known { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Suspect {
    ours: Decimal,
    broker: Decimal,
    /// The symbol's last fill sequence when the difference was seen.
    seq: u64,
}

#[derive(Debug, Default)]
pub struct PositionCheck {
    positions: BTreeMap<String, Decimal>,
    seq: u64,
    last_fill: HashMap<String, u64>,
    suspects: HashMap<String, Suspect>,
    /// Broker quantities the first reconciliation found unexplained.
    known: HashMap<String, Decimal>,
}

impl PositionCheck {
    /// Starts from the journal's fills (signed quantities per symbol), read before the
    /// broker's positions were.
    pub fn load(&mut self, positions: BTreeMap<String, Decimal>) {
        self.positions = positions;
    }

    /// Books a fill (signed quantity). Saturates rather than overflow: a quantity that large
    /// was refused long before it could be booked.
    pub fn book(&mut self, symbol: &str, signed_qty: Decimal) -> Decimal {
        self.seq += 1;
        self.last_fill.insert(symbol.to_string(), self.seq);
        let p = self.positions.entry(symbol.to_string()).or_default();
        *p = p.saturating_add(signed_qty);
        *p
    }

    /// Books a change no fill made (a split): like a fill, and what was known or suspected
    /// of the symbol is forgotten.
    pub fn adjust(&mut self, symbol: &str, signed_qty: Decimal) -> Decimal {
        self.known.remove(symbol);
        self.suspects.remove(symbol);
        self.book(symbol, signed_qty)
    }

    pub fn get(&self, symbol: &str) -> Decimal {
        self.positions.get(symbol).copied().unwrap_or_default()
    }

    /// Non-zero positions.
    pub fn non_zero(&self) -> BTreeMap<String, Decimal> {
        self.positions
            .iter()
            .filter(|(_, q)| !q.is_zero())
            .map(|(s, q)| (s.clone(), *q))
            .collect()
    }

    /// Call just before reading the broker's positions.
    pub fn begin_read(&self) -> ReadToken {
        ReadToken(self.seq)
    }

    /// Compares our positions with a broker read that began at `token`. `unsettled` says
    /// whether one of our orders on a symbol is open or in flight now. `first`: the first
    /// reconciliation of the process, whose unexplained differences are taken as known.
    /// Answers every symbol either side holds (or held), sorted.
    pub fn judge(
        &mut self,
        token: ReadToken,
        broker: &BTreeMap<String, Decimal>,
        unsettled: impl Fn(&str) -> bool,
        first: bool,
    ) -> Vec<(String, Verdict)> {
        let mut symbols: Vec<String> = self
            .positions
            .keys()
            .chain(broker.keys())
            .chain(self.suspects.keys())
            .cloned()
            .collect();
        symbols.sort();
        symbols.dedup();
        let mut out = Vec::with_capacity(symbols.len());
        for symbol in symbols {
            let ours = self.get(&symbol);
            let theirs = broker.get(&symbol).copied().unwrap_or_default();
            let last = self.last_fill.get(&symbol).copied().unwrap_or(0);
            let verdict = if ours == theirs {
                self.suspects.remove(&symbol);
                Verdict::Agrees
            } else if last > token.0 {
                Verdict::Inconclusive
            } else if unsettled(&symbol) {
                Verdict::Unsettled
            } else if self.known.get(&symbol) == Some(&theirs) {
                Verdict::Known {
                    ours,
                    broker: theirs,
                }
            } else if first {
                self.known.insert(symbol.clone(), theirs);
                Verdict::Known {
                    ours,
                    broker: theirs,
                }
            } else {
                let now = Suspect {
                    ours,
                    broker: theirs,
                    seq: last,
                };
                match self.suspects.insert(symbol.clone(), now) {
                    Some(before) if before == now => Verdict::Confirmed {
                        ours,
                        broker: theirs,
                    },
                    _ => Verdict::Suspected {
                        ours,
                        broker: theirs,
                    },
                }
            };
            out.push((symbol, verdict));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn broker(v: &[(&str, Decimal)]) -> BTreeMap<String, Decimal> {
        v.iter().map(|(s, q)| (s.to_string(), *q)).collect()
    }

    #[test]
    fn a_fill_booked_after_the_read_began_is_not_a_difference() {
        // The run: the exit filled after the broker's position was read (3), and was
        // booked (0) before the read came back.
        let mut c = PositionCheck::default();
        c.book("AAPL", dec!(3));
        let token = c.begin_read();
        c.book("AAPL", dec!(-3));
        let v = c.judge(token, &broker(&[("AAPL", dec!(3))]), |_| false, false);
        assert_eq!(v, vec![("AAPL".to_string(), Verdict::Inconclusive)]);
        let token = c.begin_read();
        let v = c.judge(token, &broker(&[]), |_| false, false);
        assert_eq!(v, vec![("AAPL".to_string(), Verdict::Agrees)]);
    }

    #[test]
    fn a_difference_counts_only_when_a_fresh_read_shows_it_again() {
        let mut c = PositionCheck::default();
        c.book("AAPL", dec!(10));
        let held = broker(&[("AAPL", dec!(25))]);
        let t = c.begin_read();
        let v = c.judge(t, &held, |_| false, false);
        assert_eq!(
            v[0].1,
            Verdict::Suspected {
                ours: dec!(10),
                broker: dec!(25)
            }
        );
        let t = c.begin_read();
        let v = c.judge(t, &held, |_| false, false);
        assert_eq!(
            v[0].1,
            Verdict::Confirmed {
                ours: dec!(10),
                broker: dec!(25)
            }
        );
        // A fill in between makes it a new suspicion, not a confirmation.
        c.book("AAPL", dec!(1));
        let t = c.begin_read();
        let v = c.judge(t, &broker(&[("AAPL", dec!(26))]), |_| false, false);
        assert!(matches!(v[0].1, Verdict::Suspected { .. }), "{v:?}");
    }

    #[test]
    fn an_open_order_makes_the_symbol_unsettled_and_the_first_read_learns_old_positions() {
        let mut c = PositionCheck::default();
        let t = c.begin_read();
        let v = c.judge(t, &broker(&[("MSFT", dec!(7))]), |s| s == "MSFT", true);
        assert_eq!(v[0].1, Verdict::Unsettled);
        let v = c.judge(t, &broker(&[("MSFT", dec!(7))]), |_| false, true);
        assert!(matches!(v[0].1, Verdict::Known { .. }));
        let v = c.judge(t, &broker(&[("MSFT", dec!(7))]), |_| false, false);
        assert!(matches!(v[0].1, Verdict::Known { .. }), "still known");
        let v = c.judge(t, &broker(&[("MSFT", dec!(8))]), |_| false, false);
        assert!(
            matches!(v[0].1, Verdict::Suspected { .. }),
            "changed: {v:?}"
        );
    }

    #[test]
    fn a_cleared_suspicion_is_forgotten() {
        let mut c = PositionCheck::default();
        let t = c.begin_read();
        c.judge(t, &broker(&[("SPY", dec!(1))]), |_| false, false);
        let v = c.judge(t, &broker(&[]), |_| false, false);
        assert_eq!(v, vec![("SPY".to_string(), Verdict::Agrees)]);
        let v = c.judge(t, &broker(&[("SPY", dec!(1))]), |_| false, false);
        assert!(matches!(v[0].1, Verdict::Suspected { .. }), "{v:?}");
    }
}
