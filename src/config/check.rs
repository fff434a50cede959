//! The semantic checks: ranges, URLs, symbols, keys present, the live opt-in. Every problem
//! is reported, with its key path, not only the first.

use super::*;

impl Config {
    /// The semantic rules; every violation is returned.
    pub fn check(&self, ctx: &CheckContext) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |path: &str, message: String| {
            out.push(Problem {
                path: path.into(),
                message,
            })
        };
        match self.connection.mode {
            ConnectionMode::Sim => {}
            ConnectionMode::Paper | ConnectionMode::Live if !ctx.have_keys => bad(
                "connection.mode",
                format!(
                    "\"{}\" needs API keys: set APCA_API_KEY_ID and APCA_API_SECRET_KEY, or give systemd credentials named apca_api_key_id and apca_api_secret_key (LoadCredential=)",
                    self.mode_name()
                ),
            ),
            _ => {}
        }
        if self.connection.mode == ConnectionMode::Live && !ctx.live_opt_in {
            bad(
                "connection.mode",
                "\"live\" trades real money: confirm by adding --live to the command line".into(),
            );
        }
        let a = &self.alpaca;
        for (path, url, schemes) in [
            (
                "alpaca.paper_trading_url",
                &a.paper_trading_url,
                &["https", "http"][..],
            ),
            (
                "alpaca.live_trading_url",
                &a.live_trading_url,
                &["https", "http"][..],
            ),
            ("alpaca.data_url", &a.data_url, &["https", "http"][..]),
            (
                "alpaca.data_stream_url",
                &a.data_stream_url,
                &["wss", "ws"][..],
            ),
        ] {
            if let Err(m) = check_url(url, schemes) {
                bad(path, m);
            }
        }
        if !(1..=10_000).contains(&a.requests_per_minute) {
            bad(
                "alpaca.requests_per_minute",
                format!(
                    "{} is out of range: use 1 to 10000 (Alpaca allows 200)",
                    a.requests_per_minute
                ),
            );
        }
        for (path, v, min, max) in [
            (
                "alpaca.request_timeout_ms",
                a.request_timeout_ms,
                100,
                300_000,
            ),
            (
                "alpaca.connect_timeout_ms",
                a.connect_timeout_ms,
                100,
                300_000,
            ),
            ("alpaca.retry_min_delay_ms", a.retry_min_delay_ms, 1, 60_000),
            (
                "alpaca.retry_max_delay_ms",
                a.retry_max_delay_ms,
                1,
                600_000,
            ),
        ] {
            if !(min..=max).contains(&v) {
                bad(path, format!("{v} is out of range: use {min} to {max}"));
            }
        }
        if a.retry_min_delay_ms > a.retry_max_delay_ms {
            bad(
                "alpaca.retry_min_delay_ms",
                "must not exceed alpaca.retry_max_delay_ms".into(),
            );
        }
        if a.max_retries > 20 {
            bad(
                "alpaca.max_retries",
                format!("{} is out of range: use 0 to 20", a.max_retries),
            );
        }
        let s = &self.sim;
        if s.listen.parse::<std::net::SocketAddr>().is_err() {
            bad(
                "sim.listen",
                format!(
                    "{:?} is not an address: use IP:PORT, e.g. 127.0.0.1:0",
                    s.listen
                ),
            );
        }
        if !(s.speed.is_finite() && s.speed > 0.0 && s.speed <= 100_000.0) {
            bad(
                "sim.speed",
                format!(
                    "{} is out of range: use a number above 0 and at most 100000",
                    s.speed
                ),
            );
        }
        if s.initial_cash_usd <= Decimal::ZERO || s.initial_cash_usd > MAX_MONEY {
            bad(
                "sim.initial_cash_usd",
                format!(
                    "{} is out of range: above 0 and at most {MAX_MONEY}",
                    s.initial_cash_usd
                ),
            );
        }
        check_symbols("sim.symbols", &s.symbols, &mut bad);
        check_symbols("trading.symbols", &self.trading.symbols, &mut bad);
        if self.connection.mode == ConnectionMode::Sim {
            let unknown: Vec<&str> = self
                .trading
                .symbols
                .iter()
                .filter(|t| !s.symbols.contains(t))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                bad(
                    "trading.symbols",
                    format!(
                        "{} not listed by the simulator: add to sim.symbols or remove",
                        unknown.join(", ")
                    ),
                );
            }
        }
        for (i, w) in self.notify.webhooks.iter().enumerate() {
            match reqwest::Url::parse(&w.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => bad(
                    &format!("notify.webhooks[{i}].url"),
                    format!("not an http(s) URL ({})", crate::notify::redacted(&w.url)),
                ),
            }
        }
        if self.notify.queue == 0 || self.notify.timeout_ms == 0 {
            bad(
                "notify.queue",
                "queue and timeout_ms must be at least 1".into(),
            );
        }
        if !self.metrics.listen.is_empty()
            && self.metrics.listen.parse::<std::net::SocketAddr>().is_err()
        {
            bad(
                "metrics.listen",
                format!(
                    "{:?} is not an address and port (e.g. \"127.0.0.1:9464\")",
                    self.metrics.listen
                ),
            );
        }
        let strategy_problems = self.strategy_problems();
        let r = &self.risk;
        for (path, v, max) in [
            ("risk.max_qty_per_symbol", r.max_qty_per_symbol, MAX_MONEY),
            (
                "risk.max_notional_per_symbol_usd",
                r.max_notional_per_symbol_usd,
                MAX_MONEY,
            ),
            (
                "risk.max_gross_exposure_usd",
                r.max_gross_exposure_usd,
                MAX_MONEY,
            ),
            (
                "risk.price_band_pct",
                r.price_band_pct,
                Decimal::ONE_HUNDRED,
            ),
            (
                "risk.daily_loss_limit_usd",
                r.daily_loss_limit_usd,
                MAX_MONEY,
            ),
        ] {
            if v <= Decimal::ZERO {
                bad(path, format!("{v} must be above 0"));
            } else if v > max {
                bad(path, format!("{v} is out of range: at most {max}"));
            }
        }
        for (path, v) in [
            ("risk.max_positions", r.max_positions),
            ("risk.max_open_orders", r.max_open_orders),
            ("risk.max_orders_per_minute", r.max_orders_per_minute),
        ] {
            if v == 0 {
                bad(path, "must be at least 1".into());
            }
        }
        let o = &self.orders;
        for (path, v, min, max) in [
            ("orders.ack_timeout_ms", o.ack_timeout_ms, 100, 600_000),
            ("orders.poll_interval_ms", o.poll_interval_ms, 50, 600_000),
            (
                "orders.reconcile_interval_s",
                o.reconcile_interval_s,
                1,
                86_400,
            ),
            (
                "account.refresh_interval_ms",
                self.account.refresh_interval_ms,
                100,
                600_000,
            ),
            (
                "stream.ping_interval_ms",
                self.stream.ping_interval_ms,
                50,
                600_000,
            ),
            (
                "stream.pong_timeout_ms",
                self.stream.pong_timeout_ms,
                100,
                600_000,
            ),
            (
                "stream.stale_after_ms",
                self.stream.stale_after_ms,
                100,
                3_600_000,
            ),
            (
                "stream.reconnect_min_ms",
                self.stream.reconnect_min_ms,
                1,
                600_000,
            ),
            (
                "stream.reconnect_max_ms",
                self.stream.reconnect_max_ms,
                1,
                3_600_000,
            ),
        ] {
            if !(min..=max).contains(&v) {
                bad(path, format!("{v} is out of range: use {min} to {max}"));
            }
        }
        for (path, v, min, max) in [
            ("health.window_s", self.health.window_s, 1, 86_400),
            (
                "health.stream_down_limit_s",
                self.health.stream_down_limit_s,
                0,
                86_400,
            ),
            (
                "health.restart_window_s",
                self.health.restart_window_s,
                1,
                86_400,
            ),
            (
                "health.ping_interval_ms",
                self.health.ping_interval_ms,
                100,
                3_600_000,
            ),
            (
                "preservation.retry_min_ms",
                self.preservation.retry_min_ms,
                10,
                3_600_000,
            ),
            (
                "preservation.retry_max_ms",
                self.preservation.retry_max_ms,
                10,
                3_600_000,
            ),
            (
                "preservation.verify_timeout_ms",
                self.preservation.verify_timeout_ms,
                100,
                3_600_000,
            ),
            (
                "preservation.cooldown_s",
                self.preservation.cooldown_s,
                0,
                7 * 86_400,
            ),
            ("shutdown.timeout_s", self.shutdown.timeout_s, 1, 3_600),
            (
                "telemetry.metrics_interval_ms",
                self.telemetry.metrics_interval_ms,
                100,
                3_600_000,
            ),
        ] {
            if !(min..=max).contains(&v) {
                bad(path, format!("{v} is out of range: use {min} to {max}"));
            }
        }
        if !self.telemetry.otlp_endpoint.is_empty()
            && let Err(e) = check_url(&self.telemetry.otlp_endpoint, &["http", "https"])
        {
            bad("telemetry.otlp_endpoint", e);
        }
        if self.telemetry.service_name.trim().is_empty() {
            bad("telemetry.service_name", "must not be empty".into());
        }
        if self.preservation.retry_min_ms > self.preservation.retry_max_ms {
            bad(
                "preservation.retry_min_ms",
                "must not exceed preservation.retry_max_ms".into(),
            );
        }
        if self.stream.reconnect_min_ms > self.stream.reconnect_max_ms {
            bad(
                "stream.reconnect_min_ms",
                "must not exceed stream.reconnect_max_ms".into(),
            );
        }
        if self.stream.pong_timeout_ms <= self.stream.ping_interval_ms {
            bad(
                "stream.pong_timeout_ms",
                "must be longer than stream.ping_interval_ms".into(),
            );
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            bad(
                "log.level",
                format!(
                    "{:?} is not a log filter: use error, warn, info, debug, trace or e.g. traderd=debug,info",
                    self.log.level
                ),
            );
        }
        out.extend(strategy_problems);
        out
    }

    /// The strategy's problems, or with `[[strategies]]` every entry's, and the rules between
    /// them: names unique and short (they go into client order ids), symbols among
    /// trading.symbols, no symbol traded by two (positions are attributed by symbol).
    fn strategy_problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.strategies.is_empty() {
            check_strategy(&self.strategy, &self.trading.symbols, "strategy", &mut out);
            return out;
        }
        let mut owner: std::collections::BTreeMap<&str, &str> = Default::default();
        let mut names = std::collections::BTreeSet::new();
        for (i, st) in self.strategies.iter().enumerate() {
            let at = format!("strategies[{i}]");
            let mut bad = |what: &str, message: String| {
                out.push(Problem {
                    path: format!("{at}.{what}"),
                    message,
                })
            };
            if st.name.is_empty()
                || st.name.len() > 16
                || !st
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                bad(
                    "name",
                    format!(
                        "{:?}: 1 to 16 of a-z, 0-9 and _ (it goes into the client order id)",
                        st.name
                    ),
                );
            }
            if !names.insert(st.name.as_str()) {
                bad("name", format!("{:?} names two strategies", st.name));
            }
            if st.kind.is_empty() {
                bad(
                    "kind",
                    "missing: momentum, mean_reversion, pairs, rebalance or a registered strategy"
                        .into(),
                );
            }
            if st.symbols.is_empty() {
                bad(
                    "symbols",
                    "missing: the symbols this strategy trades".into(),
                );
            }
            for s in &st.symbols {
                if !self.trading.symbols.contains(s) {
                    bad("symbols", format!("{s} is not in trading.symbols"));
                }
                if let Some(other) = owner.insert(s.as_str(), st.name.as_str()) {
                    bad(
                        "symbols",
                        format!(
                            "{s} is traded by {other:?} already: a symbol belongs to one strategy, whose positions are its own"
                        ),
                    );
                }
            }
            if st.allocation_usd < Decimal::ZERO
                || st.allocation_pct < Decimal::ZERO
                || st.allocation_pct > Decimal::ONE_HUNDRED
            {
                out.push(Problem {
                    path: format!("{at}.allocation_pct"),
                    message: "allocation_usd must not be negative, allocation_pct from 0 to 100"
                        .into(),
                });
            }
            check_strategy(st, &st.symbols, &at, &mut out);
        }
        out
    }
}

pub(super) fn check_url(url: &str, schemes: &[&str]) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if schemes.contains(&u.scheme()) && u.host().is_some() => Ok(()),
        Ok(u) => Err(format!(
            "{url:?} must be a {} URL with a host, got scheme {:?}",
            schemes.join(" or "),
            u.scheme()
        )),
        Err(e) => Err(format!("{url:?} is not a URL ({e})")),
    }
}

/// Alpaca's symbol syntax for US equities: an upper-case letter, then upper-case letters and
/// digits, with at most two share-class suffixes after a dot (`BRK.B`, `ABR.PR.D`); at most 16
/// characters. `.`, `..`, `A.`, `.A`, `a`, `A B` are not symbols.
pub fn is_symbol(s: &str) -> bool {
    let mut parts = s.split('.');
    let head_ok = parts.next().is_some_and(|head| {
        head.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && head
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    });
    let rest: Vec<&str> = parts.collect();
    head_ok
        && s.len() <= 16
        && rest.len() <= 2
        && rest.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        })
}

/// The largest amount (dollars or shares) a config may name: a trillion. Far above any real
/// account, and small enough that every product the daemon and the simulator form with it
/// (an amount times a price from the wire, at most 10^14) stays inside `Decimal`'s range.
pub const MAX_MONEY: Decimal = Decimal::from_parts(0xd4a5_1000, 0xe8, 0, false, 0);

pub fn check_symbols(path: &str, symbols: &[String], bad: &mut impl FnMut(&str, String)) {
    if symbols.is_empty() {
        bad(path, "must list at least one symbol".into());
    }
    for s in symbols {
        if !is_symbol(s) {
            bad(
                path,
                format!("{s:?} is not a symbol: use upper-case tickers such as AAPL or BRK.B"),
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    for s in symbols {
        if !seen.insert(s) {
            bad(path, format!("{s} is listed twice"));
        }
    }
}

/// One strategy's own rules, its problems' paths under `prefix` (`strategy`, or
/// `strategies[i]`); `symbols`: what it trades.
fn check_strategy(st: &StrategySection, symbols: &[String], prefix: &str, out: &mut Vec<Problem>) {
    let mut bad = |path: &str, message: String| {
        out.push(Problem {
            path: path.replacen("strategy", prefix, 1),
            message,
        })
    };
    if let Err(e) = st.build() {
        bad("strategy.name", e);
    }
    if st.kind() == "rebalance" {
        for p in st.rebalance.problems(symbols) {
            bad("strategy.rebalance", p);
        }
    }
    if st.kind() == "pairs" {
        for p in st.pairs.problems(symbols) {
            bad("strategy.pairs", p);
        }
        if st.protection != ProtectionChoice::None {
            bad(
                "strategy.protection",
                "pairs leaves both legs together on the spread: set protection = \"none\" (a stop on one leg alone would break the pair)".to_string(),
            );
        }
    }
    if st.sizing == SizingChoice::RiskPerTrade && st.protection == ProtectionChoice::None {
        bad(
            "strategy.sizing",
            "risk_per_trade sizes from the stop distance: choose protection bracket or trailing_stop".into(),
        );
    }
    for (path, v, max) in [
        (
            "strategy.sizing_usd",
            st.sizing_usd,
            Decimal::from(10_000_000),
        ),
        ("strategy.sizing_pct", st.sizing_pct, Decimal::ONE_HUNDRED),
        (
            "strategy.take_profit_pct",
            st.take_profit_pct,
            Decimal::from(50),
        ),
        (
            "strategy.stop_loss_pct",
            st.stop_loss_pct,
            Decimal::from(50),
        ),
        ("strategy.trail_pct", st.trail_pct, Decimal::from(50)),
    ] {
        if v <= Decimal::ZERO || v > max {
            bad(
                path,
                format!("{v} is out of range: use above 0 and at most {max}"),
            );
        }
    }
    let m = &st.momentum;
    if m.rsi_period < 2 || m.macd_fast < 1 || m.macd_signal < 1 || m.macd_fast >= m.macd_slow {
        bad(
            "strategy.momentum",
            "periods must be positive (rsi_period at least 2) and macd_fast below macd_slow".into(),
        );
    }
    if !(0.0..=100.0).contains(&m.rsi_entry_min)
        || !(0.0..=100.0).contains(&m.rsi_entry_max)
        || m.rsi_entry_min > m.rsi_entry_max
    {
        bad(
            "strategy.momentum",
            "rsi_entry_min and rsi_entry_max must be within 0..100, min at most max".into(),
        );
    }
    let mr = &st.mean_reversion;
    let mr_ok = mr.period >= 2
        && mr.band_std.is_finite()
        && mr.band_std > 0.0
        && mr.entry_z.is_finite()
        && mr.exit_z.is_finite();
    if !mr_ok {
        bad(
            "strategy.mean_reversion",
            "period must be at least 2 and band_std above 0".into(),
        );
    }
}
