//! One symbol's market: its random walk, the trades and quotes it prints, its minute and
//! daily bars, and the history it starts with.

use super::*;

#[derive(Debug, Clone)]
pub(super) struct MinuteAcc {
    pub(super) index: i64,
    pub(super) o: Decimal,
    pub(super) h: Decimal,
    pub(super) l: Decimal,
    pub(super) c: Decimal,
    pub(super) v: Decimal,
    pub(super) n: u64,
    pub(super) pv: Decimal,
}

impl MinuteAcc {
    pub(super) fn add(&mut self, p: Decimal, s: Decimal) {
        self.h = self.h.max(p);
        self.l = self.l.min(p);
        self.c = p;
        self.v += s;
        self.n += 1;
        self.pv += p * s;
    }
    pub(super) fn bar(&self, timeline: &Timeline) -> Bar {
        Bar {
            t: timeline.to_utc((self.index * 60) as f64),
            o: self.o,
            h: self.h,
            l: self.l,
            c: self.c,
            v: self.v,
            n: Some(self.n),
            vw: (!self.v.is_zero()).then(|| (self.pv / self.v).round_dp(4)),
        }
    }
}

pub(super) struct SymbolState {
    pub(super) listing: Listing,
    pub(super) rng: ChaCha8Rng,
    pub(super) mid: f64,
    pub(super) next_event: f64,
    pub(super) trade_seq: u64,
    pub(super) last_trade: Option<Trade>,
    pub(super) last_quote: Option<Quote>,
    pub(super) minute: Option<MinuteAcc>,
    pub(super) minutes: VecDeque<Bar>,
    /// Completed sessions, oldest first.
    pub(super) daily: Vec<Bar>,
    /// Splits applied, oldest first: (when, shares after per share before). History stays
    /// raw; [`Market::adjusted`] divides what came before each.
    pub(super) splits: Vec<(DateTime<Utc>, Decimal)>,
    /// Under a trading halt: no quote, no trade until it resumes.
    pub(super) halted: bool,
    /// The latest trades and quotes, for `GET /v2/stocks/trades` and `/quotes`: a ring of
    /// [`Market::tick_history`] each.
    pub(super) recent_trades: VecDeque<Trade>,
    pub(super) recent_quotes: VecDeque<Quote>,
    pub(super) ticks_kept: usize,
}

impl SymbolState {
    pub(super) fn new(
        seed: u64,
        listing: Listing,
        timeline: &Timeline,
        history_sessions: i64,
    ) -> Self {
        let sym = listing.symbol.as_bytes();
        let live_seed = stable_hash(&[&seed.to_le_bytes(), sym, b"live"]);
        let mut hist_rng =
            ChaCha8Rng::seed_from_u64(stable_hash(&[&seed.to_le_bytes(), sym, b"history"]));
        let base: f64 = listing.base_price.try_into().unwrap_or(100.0);
        let (minutes, daily) = history(&mut hist_rng, base, timeline, history_sessions);
        let mut rng = ChaCha8Rng::seed_from_u64(live_seed);
        let first_gap = rng.random::<f64>() * MEAN_EVENT_GAP_S;
        SymbolState {
            listing,
            rng,
            mid: base,
            next_event: first_gap,
            trade_seq: 0,
            last_trade: None,
            last_quote: None,
            minute: None,
            minutes,
            daily,
            splits: Vec::new(),
            halted: false,
            recent_trades: VecDeque::new(),
            recent_quotes: VecDeque::new(),
            ticks_kept: 0,
        }
    }

    pub(super) fn run_until(
        &mut self,
        end: f64,
        timeline: &Timeline,
        rank: usize,
        out: &mut Vec<(f64, usize, MarketEvent)>,
    ) {
        let sigma_per_sqrt_s = ANNUAL_VOL / (252.0 * SESSION_SECONDS as f64).sqrt();
        while self.next_event < end {
            let at = self.next_event;
            let gap = -MEAN_EVENT_GAP_S * self.rng.random::<f64>().max(1e-12).ln();
            self.next_event += gap.max(0.001);
            // The unlived rest of a short session (an early close), or a halt: no market.
            let Some(t) = timeline.to_utc_open(at).filter(|_| !self.halted) else {
                continue;
            };
            self.roll_minute(at, timeline, rank, out);
            let step = sigma_per_sqrt_s * gap.sqrt() * normal(&mut self.rng);
            self.mid = (self.mid * step.exp()).max(1.0);
            let quote = self.make_quote(t);
            let is_trade = self.rng.random::<f64>() < 0.45;
            let quote_changed = self
                .last_quote
                .as_ref()
                .is_none_or(|q| q.bp != quote.bp || q.ap != quote.ap);
            if quote_changed || !is_trade {
                self.last_quote = Some(quote.clone());
                if self.recent_quotes.len() == self.ticks_kept {
                    self.recent_quotes.pop_front();
                }
                if self.ticks_kept > 0 {
                    self.recent_quotes.push_back(quote.clone());
                }
                out.push((
                    at,
                    rank,
                    MarketEvent::Quote {
                        symbol: self.listing.symbol.clone(),
                        quote,
                    },
                ));
            }
            if is_trade {
                let trade = self.make_trade(t);
                let acc = self.minute.get_or_insert_with(|| MinuteAcc {
                    index: (at / 60.0).floor() as i64,
                    o: trade.p,
                    h: trade.p,
                    l: trade.p,
                    c: trade.p,
                    v: Decimal::ZERO,
                    n: 0,
                    pv: Decimal::ZERO,
                });
                acc.add(trade.p, trade.s);
                self.last_trade = Some(trade.clone());
                if self.recent_trades.len() == self.ticks_kept {
                    self.recent_trades.pop_front();
                }
                if self.ticks_kept > 0 {
                    self.recent_trades.push_back(trade.clone());
                }
                out.push((
                    at,
                    rank,
                    MarketEvent::Trade {
                        symbol: self.listing.symbol.clone(),
                        trade,
                    },
                ));
            }
        }
        self.roll_minute(end, timeline, rank, out);
    }

    /// Closes the minute bar in progress if `at` is past its minute.
    pub(super) fn roll_minute(
        &mut self,
        at: f64,
        timeline: &Timeline,
        rank: usize,
        out: &mut Vec<(f64, usize, MarketEvent)>,
    ) {
        let index = (at / 60.0).floor() as i64;
        if self.minute.as_ref().is_some_and(|m| m.index < index) {
            if let Some(acc) = self.minute.take() {
                let bar = acc.bar(timeline);
                self.minutes.push_back(bar.clone());
                let end = (acc.index + 1) as f64 * 60.0;
                let symbol = &self.listing.symbol;
                // The band: 5 % either side of the close.
                let band = (bar.c * Decimal::new(5, 2)).round_dp(2);
                out.push((
                    end,
                    rank,
                    MarketEvent::Luld {
                        symbol: symbol.clone(),
                        up: bar.c + band,
                        down: (bar.c - band).max(Decimal::new(1, 2)),
                        at: bar.t + Duration::minutes(1),
                    },
                ));
                // One bar in twenty gets a late trade: restated on `updatedBars` (decided by
                // a hash, not the walk's generator, so prices stay what the seed gives).
                let late = stable_hash(&[symbol.as_bytes(), &acc.index.to_le_bytes()]);
                let updated = (late % 20 == 0).then(|| Bar {
                    v: bar.v + Decimal::from(late % 100 + 1),
                    n: bar.n.map(|n| n + 1),
                    ..bar.clone()
                });
                out.push((
                    end,
                    rank,
                    MarketEvent::BarClosed {
                        symbol: symbol.clone(),
                        bar,
                    },
                ));
                if let Some(bar) = updated {
                    out.push((
                        end,
                        rank,
                        MarketEvent::BarUpdated {
                            symbol: symbol.clone(),
                            bar,
                        },
                    ));
                }
            }
        }
    }

    pub(super) fn make_quote(&mut self, t: DateTime<Utc>) -> Quote {
        let spread_ticks = ((self.mid * 0.0002 / 0.01).round() as i64).max(1);
        let bid_cents = ((self.mid * 100.0) - spread_ticks as f64 / 2.0).floor() as i64;
        let bid_cents = bid_cents.max(1);
        let lots = |rng: &mut ChaCha8Rng| Decimal::from(rng.random_range(1..=10_i64) * 100);
        Quote {
            t,
            bx: "V".into(),
            bp: Decimal::new(bid_cents, 2),
            bs: lots(&mut self.rng),
            ax: "V".into(),
            ap: Decimal::new(bid_cents + spread_ticks, 2),
            as_: lots(&mut self.rng),
            c: vec!["R".into()],
            z: tape(&self.listing.exchange).into(),
        }
    }

    pub(super) fn make_trade(&mut self, t: DateTime<Utc>) -> Trade {
        const SIZES: [i64; 11] = [1, 5, 10, 25, 50, 100, 100, 100, 200, 300, 500];
        const VENUES: [&str; 6] = ["V", "Q", "P", "K", "Z", "N"];
        let (bid, ask) = match &self.last_quote {
            Some(q) => (q.bp, q.ap),
            None => (cents(self.mid), cents(self.mid)),
        };
        let p = match self.rng.random_range(0..3) {
            0 => bid,
            1 => ask,
            _ => ((bid + ask) / Decimal::TWO).round_dp(2),
        };
        self.trade_seq += 1;
        Trade {
            t,
            x: VENUES[self.rng.random_range(0..VENUES.len())].into(),
            p,
            s: Decimal::from(SIZES[self.rng.random_range(0..SIZES.len())]),
            c: vec!["@".into()],
            i: self.trade_seq,
            z: tape(&self.listing.exchange).into(),
        }
    }

    pub(super) fn close_session(
        &mut self,
        date: NaiveDate,
        index: i64,
        timeline: &Timeline,
        out: &mut Vec<MarketEvent>,
    ) {
        if let Some(acc) = self.minute.take() {
            let bar = acc.bar(timeline);
            self.minutes.push_back(bar.clone());
            out.push(MarketEvent::BarClosed {
                symbol: self.listing.symbol.clone(),
                bar,
            });
        }
        let session = timeline.session(index);
        let day: Vec<Bar> = self
            .minutes
            .iter()
            .filter(|b| b.t >= session.open && b.t < session.close)
            .cloned()
            .collect();
        if let Some(bar) = aggregate(&day, calendar::et_midnight(date)) {
            out.push(MarketEvent::DailyBarClosed {
                symbol: self.listing.symbol.clone(),
                bar: bar.clone(),
            });
            self.daily.push(bar);
        }
        let keep_from = timeline.session(index - MINUTE_WINDOW_SESSIONS + 1).open;
        while self.minutes.front().is_some_and(|b| b.t < keep_from) {
            self.minutes.pop_front();
        }
    }
}

pub(super) fn tape(exchange: &str) -> &'static str {
    match exchange {
        "NASDAQ" => "C",
        "NYSE" => "A",
        _ => "B",
    }
}

/// Minute bars for the `sessions` sessions before the anchor and daily bars for the year
/// before those, as a walk that ends at `base` at the anchor's open.
pub(super) fn history(
    rng: &mut ChaCha8Rng,
    base: f64,
    timeline: &Timeline,
    sessions: i64,
) -> (VecDeque<Bar>, Vec<Bar>) {
    const DAILY_SESSIONS: i64 = 250;
    let minute_sigma = ANNUAL_VOL / (252.0f64 * 390.0).sqrt();
    let day_sigma = ANNUAL_VOL / 252.0f64.sqrt();
    // Walk in relative units, then scale so the last close equals `base`.
    struct Raw {
        t: DateTime<Utc>,
        o: f64,
        h: f64,
        l: f64,
        c: f64,
        v: i64,
    }
    let mut level = 1.0f64;
    let mut raw_days: Vec<Raw> = Vec::new();
    for back in (1..=DAILY_SESSIONS).rev() {
        let s = timeline.session(-sessions - back);
        let o = level;
        let c = o * (day_sigma * normal(rng)).exp();
        let h = o.max(c) * (1.0 + rng.random::<f64>() * day_sigma * 0.5);
        let l = o.min(c) * (1.0 - rng.random::<f64>() * day_sigma * 0.5);
        raw_days.push(Raw {
            t: calendar::et_midnight(s.date),
            o,
            h,
            l,
            c,
            v: rng.random_range(5_000_000..50_000_000),
        });
        level = c;
    }
    let mut raw_minutes: Vec<Raw> = Vec::new();
    for back in (1..=sessions).rev() {
        let s = timeline.session(-back);
        for m in 0..(s.close - s.open).num_minutes() {
            let o = level;
            let mut path = [o; 4];
            for k in 1..4 {
                path[k] = path[k - 1] * (minute_sigma / 2.0 * normal(rng)).exp();
            }
            let c = path[3];
            raw_minutes.push(Raw {
                t: s.open + Duration::minutes(m),
                o,
                h: path.iter().cloned().fold(f64::MIN, f64::max),
                l: path.iter().cloned().fold(f64::MAX, f64::min),
                c,
                v: rng.random_range(2_000..40_000),
            });
            level = c;
        }
    }
    let scale = base / level;
    let to_bar = |r: &Raw| {
        let (o, h, l, c) = (
            cents(r.o * scale),
            cents(r.h * scale),
            cents(r.l * scale),
            cents(r.c * scale),
        );
        let (h, l) = (h.max(o).max(c), l.min(o).min(c));
        Bar {
            t: r.t,
            o,
            h,
            l,
            c,
            v: Decimal::from(r.v),
            n: Some((r.v / 80).max(1) as u64),
            vw: Some(((h + l + c) / Decimal::from(3)).round_dp(4)),
        }
    };
    let minutes: VecDeque<Bar> = raw_minutes.iter().map(to_bar).collect();
    let mut daily: Vec<Bar> = raw_days.iter().map(to_bar).collect();
    for back in (1..=sessions).rev() {
        let s = timeline.session(-back);
        let day: Vec<Bar> = minutes
            .iter()
            .filter(|b| b.t >= s.open && b.t < s.close)
            .cloned()
            .collect();
        if let Some(bar) = aggregate(&day, calendar::et_midnight(s.date)) {
            daily.push(bar);
        }
    }
    (minutes, daily)
}
