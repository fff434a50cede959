//! The order side's decisions, without I/O: client order ids ([`ClientOrderIds`]), the lifecycle
//! of our orders from every source ([`book`]), our positions and their comparison with the
//! broker's ([`positions`]), and reconciliation of the journal with the broker ([`reconcile`]).
//! The OrderManager actor drives them.

pub mod book;
pub mod desk;
pub mod lifecycle;
pub mod pnl;
pub mod positions;
pub mod reconcile;
pub mod splits;

use crate::alpaca::rest::MAX_CLIENT_ORDER_ID_LEN;

/// Deterministic client order ids, unique across restarts: `td-<run>-<seq>-<SYMBOL>`, where
/// `run` is a durable counter the journal increments at every start and `seq` counts orders
/// within the run. The same run and sequence always give the same id, so a retry of the same
/// intent reuses its id, and no two intents ever share one. At most 48 characters.
#[derive(Debug, Clone)]
pub struct ClientOrderIds {
    run: u64,
    next: u64,
}

impl ClientOrderIds {
    pub fn new(run: u64) -> Self {
        ClientOrderIds { run, next: 1 }
    }

    /// The id for the next intent on `symbol`.
    pub fn next(&mut self, symbol: &str) -> String {
        self.next_for(None, symbol)
    }

    /// The id for the next intent on `symbol` made by `strategy` (one of several running):
    /// `td-<run>-<seq>-<strategy>-<SYMBOL>`.
    pub fn next_for(&mut self, strategy: Option<&str>, symbol: &str) -> String {
        let seq = self.next;
        self.next += 1;
        Self::format(self.run, seq, strategy, symbol)
    }

    /// The strategy named in one of our ids, if one is.
    pub fn strategy_of(id: &str) -> Option<&str> {
        let rest = id.strip_prefix("td-")?;
        let mut parts = rest.splitn(4, '-');
        let (_run, _seq, third, fourth) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next());
        fourth.map(|_| third)
    }

    fn format(run: u64, seq: u64, strategy: Option<&str>, symbol: &str) -> String {
        // Written into one string, without the formatting machinery (it is made on the order
        // path, for every order, and cold there).
        let mut id = String::with_capacity(MAX_CLIENT_ORDER_ID_LEN);
        id.push_str("td-");
        push_hex(&mut id, run);
        id.push('-');
        push_hex(&mut id, seq);
        id.push('-');
        if let Some(s) = strategy {
            id.extend(
                s.chars()
                    .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .take(16),
            );
            id.push('-');
        }
        let room = MAX_CLIENT_ORDER_ID_LEN.saturating_sub(id.len());
        id.extend(
            symbol
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
                .take(room),
        );
        id
    }

    /// The run an id of ours belongs to, if it is one of ours.
    pub fn run_of(id: &str) -> Option<u64> {
        let rest = id.strip_prefix("td-")?;
        let (run, _) = rest.split_once('-')?;
        u64::from_str_radix(run, 16).ok()
    }
}

/// `v` in lower-case hexadecimal, as `{v:x}` writes it.
fn push_hex(s: &mut String, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut at = buf.len();
    let mut v = v;
    loop {
        at -= 1;
        buf[at] = DIGITS[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    s.extend(buf[at..].iter().map(|&b| char::from(b)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    proptest! {
        #[test]
        fn hex_is_written_as_the_formatter_writes_it(v in any::<u64>(), shift in 0u32..64) {
            for v in [v, v >> shift, 0, u64::MAX] {
                let mut s = String::from("x");
                push_hex(&mut s, v);
                prop_assert_eq!(s, format!("x{v:x}"));
            }
        }
    }

    #[test]
    fn ids_are_deterministic_unique_and_short() {
        let mut a = ClientOrderIds::new(7);
        let mut b = ClientOrderIds::new(7);
        assert_eq!(a.next("AAPL"), "td-7-1-AAPL");
        assert_eq!(
            b.next("AAPL"),
            "td-7-1-AAPL",
            "same run and sequence, same id"
        );
        let mut seen = HashSet::new();
        for run in [1u64, 2, u64::MAX] {
            let mut ids = ClientOrderIds::new(run);
            for _ in 0..1000 {
                let id = ids.next("BRK.B");
                assert!(id.len() <= MAX_CLIENT_ORDER_ID_LEN, "{id}");
                assert!(seen.insert(id), "an id repeated across runs");
            }
        }
        let long = ClientOrderIds::new(u64::MAX).next("AVERYLONGSYMBOLNAMEINDEEDTHATGOESON");
        assert_eq!(long.len(), MAX_CLIENT_ORDER_ID_LEN);
        assert_eq!(ClientOrderIds::run_of("td-ff-3-SPY"), Some(255));
        assert_eq!(ClientOrderIds::run_of("eb9e2aaa-f71a"), None);
        // With several strategies, the strategy is in the id; symbols never hold a '-'.
        let mut c = ClientOrderIds::new(3);
        let id = c.next_for(Some("trend"), "BRK.B");
        assert_eq!(id, "td-3-1-trend-BRK.B");
        assert_eq!(ClientOrderIds::strategy_of(&id), Some("trend"));
        assert_eq!(ClientOrderIds::strategy_of("td-3-2-AAPL"), None);
        assert_eq!(ClientOrderIds::run_of(&id), Some(3));
        let long = ClientOrderIds::new(u64::MAX)
            .next_for(Some("a_very_long_strategy_name"), "AVERYLONGSYMBOL");
        assert!(long.len() <= MAX_CLIENT_ORDER_ID_LEN, "{long}");
    }
}
