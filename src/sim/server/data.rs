//! Market-data API routes: bars with `next_page_token` paging (the limit counts across all
//! symbols; results are sorted by symbol, then time), latest trades/quotes/bars, snapshots,
//! and the single-symbol forms.

use super::trading::parse_time;
use super::{Params, error_response, ok_json, param};
use crate::alpaca::model::*;
use crate::sim::engine::SimError;
use crate::sim::{Sim, SimState, calendar};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

type S = State<Arc<Sim>>;

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v2/stocks/bars", get(bars))
        .route("/v2/stocks/{symbol}/bars", get(bars_one))
        .route("/v2/stocks/trades/latest", get(latest_trades))
        .route("/v2/stocks/quotes/latest", get(latest_quotes))
        .route("/v2/stocks/bars/latest", get(latest_bars))
        .route("/v2/stocks/{symbol}/trades/latest", get(latest_trade_one))
        .route("/v2/stocks/{symbol}/quotes/latest", get(latest_quote_one))
        .route("/v2/stocks/{symbol}/bars/latest", get(latest_bar_one))
        .route("/v2/stocks/snapshots", get(snapshots))
        .route("/v1/corporate-actions", get(corporate_actions))
        .route("/v2/stocks/trades", get(trades))
        .route("/v2/stocks/quotes", get(quotes))
        .route("/v2/stocks/meta/exchanges", get(exchanges))
        .route("/v2/stocks/meta/conditions/{tick_type}", get(conditions))
        .route("/v2/stocks/{symbol}/snapshot", get(snapshot_one))
}

fn symbols(p: &Params) -> Result<Vec<String>, SimError> {
    let list: Vec<String> = param(p, "symbols")
        .ok_or_else(|| SimError::new(400, 40010001, "symbols is required"))?
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        return Err(SimError::new(400, 40010001, "symbols is required"));
    }
    Ok(list)
}

fn check_feed(p: &Params) -> Result<(), SimError> {
    match param(p, "feed") {
        None | Some("iex" | "sip" | "delayed_sip" | "otc" | "boats" | "overnight") => Ok(()),
        Some(other) => Err(SimError::new(
            400,
            40010001,
            format!("invalid feed {other:?}"),
        )),
    }
}

/// The resume point of a bars page: symbol, timeframe and the next bar's start time.
fn encode_token(symbol: &str, tf: TimeFrame, t: DateTime<Utc>) -> String {
    let raw = format!(
        "{symbol}|{tf}|{}",
        t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    );
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn decode_token(token: &str) -> Result<(String, DateTime<Utc>), SimError> {
    let bad = || SimError::new(400, 40010001, "invalid page_token");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '|');
    let (Some(sym), Some(_tf), Some(t)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let t = DateTime::parse_from_rfc3339(t)
        .map_err(|_| bad())?
        .with_timezone(&Utc);
    Ok((sym.to_string(), t))
}

/// The parameters every historical listing shares: `start` (default: today's midnight in New
/// York), `end` (default and at most: now), `limit` (1 to 10,000, default 1,000) counted across
/// symbols, `sort` and `page_token`.
struct Window {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    limit: usize,
    descending: bool,
    token: Option<(String, DateTime<Utc>)>,
}

fn window(p: &Params, now: DateTime<Utc>) -> Result<Window, SimError> {
    let start = match param(p, "start") {
        Some(t) => parse_time("start", t)?,
        None => calendar::et_midnight(calendar::to_et(now).date_naive()),
    };
    let end = match param(p, "end") {
        Some(t) => parse_time("end", t)?.min(now),
        None => now,
    };
    let limit: usize = match param(p, "limit") {
        Some(l) => l
            .parse()
            .map_err(|_| SimError::new(400, 40010001, "limit must be a number"))?,
        None => 1000,
    };
    if !(1..=10_000).contains(&limit) {
        return Err(SimError::new(
            400,
            40010001,
            "limit must be between 1 and 10000",
        ));
    }
    let descending = match param(p, "sort") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(SimError::new(400, 40010001, "sort must be asc or desc")),
    };
    let token = param(p, "page_token").map(decode_token).transpose()?;
    Ok(Window {
        start,
        end,
        limit,
        descending,
        token,
    })
}

struct BarsRequest {
    symbols: Vec<String>,
    timeframe: TimeFrame,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    limit: usize,
    descending: bool,
    token: Option<(String, DateTime<Utc>)>,
    /// `adjustment=split` or `all`: bars before a split are adjusted for it.
    split_adjusted: bool,
}

fn bars_request(
    p: &Params,
    symbols: Vec<String>,
    now: DateTime<Utc>,
) -> Result<BarsRequest, SimError> {
    check_feed(p)?;
    let timeframe: TimeFrame = param(p, "timeframe")
        .ok_or_else(|| SimError::new(400, 40010001, "timeframe is required"))?
        .parse()
        .map_err(|e: String| SimError::new(400, 40010001, e))?;
    let Window {
        start,
        end,
        limit,
        descending,
        token,
    } = window(p, now)?;
    let split_adjusted = match param(p, "adjustment") {
        None | Some("raw") | Some("dividend") => false,
        Some("split") | Some("all") => true,
        Some(other) => {
            return Err(SimError::new(
                400,
                40010001,
                format!("invalid adjustment {other:?}: expected raw, split, dividend or all"),
            ));
        }
    };
    Ok(BarsRequest {
        split_adjusted,
        symbols,
        timeframe,
        start,
        end,
        limit,
        descending,
        token,
    })
}

/// One page: bars per symbol and the token of the next page.
fn bars_page(s: &SimState, r: &BarsRequest) -> (BTreeMap<String, Vec<Bar>>, Option<String>) {
    let mut symbols = r.symbols.clone();
    symbols.sort();
    symbols.dedup();
    // The bars in (symbol, time) order from the token on, and one more than the page holds
    // (it names the next page): symbols before the token's and after the page are not built.
    let mut flat: Vec<(usize, Bar)> = Vec::new();
    let mut found_token = r.token.is_none();
    for (at, sym) in symbols.iter().enumerate() {
        if flat.len() > r.limit {
            break;
        }
        match &r.token {
            Some((token, _)) if sym < token => continue,
            // The token names a symbol not asked for: nothing follows it.
            Some((token, _)) if sym > token && !found_token => break,
            _ => {}
        }
        let mut bars = s.market.bars(sym, r.timeframe, r.start, r.end);
        if r.split_adjusted {
            bars = s.market.adjusted(sym, bars);
        }
        if r.descending {
            bars.reverse();
        }
        if let Some((token, t)) = &r.token {
            if sym == token {
                // The page starts at the token's bar; a token naming no bar ends the listing.
                match bars.iter().position(|b| b.t == *t) {
                    Some(at) => {
                        bars.drain(..at);
                        found_token = true;
                    }
                    None => break,
                }
            }
        }
        flat.extend(bars.into_iter().map(|b| (at, b)));
    }
    let next = flat
        .get(r.limit)
        .map(|(at, b)| encode_token(&symbols[*at], r.timeframe, b.t));
    flat.truncate(r.limit);
    let mut page: BTreeMap<String, Vec<Bar>> = BTreeMap::new();
    for (at, bar) in flat {
        match page.get_mut(&symbols[at]) {
            Some(bars) => bars.push(bar),
            None => {
                page.insert(symbols[at].clone(), vec![bar]);
            }
        }
    }
    (page, next)
}

async fn bars(State(sim): S, Query(p): Query<Params>) -> Response {
    let result = sim.with_state(|s| {
        let req = bars_request(&p, symbols(&p)?, s.clock.now())?;
        let (bars, next_page_token) = bars_page(s, &req);
        Ok(BarsPage {
            bars,
            next_page_token,
        })
    });
    respond(result)
}

#[derive(Serialize)]
struct OneSymbolBars {
    bars: Vec<Bar>,
    symbol: String,
    next_page_token: Option<String>,
}

async fn bars_one(State(sim): S, Path(symbol): Path<String>, Query(p): Query<Params>) -> Response {
    let result = sim.with_state(|s| {
        let req = bars_request(&p, vec![symbol.clone()], s.clock.now())?;
        let (mut bars, next_page_token) = bars_page(s, &req);
        Ok(OneSymbolBars {
            bars: bars.remove(&symbol).unwrap_or_default(),
            symbol: symbol.clone(),
            next_page_token,
        })
    });
    respond(result)
}

fn respond<T: Serialize>(r: Result<T, SimError>) -> Response {
    match r {
        Ok(v) => ok_json(&v),
        Err(e) => error_response(&e),
    }
}

/// `{"<key>": {SYM: item}}` for the symbols that have an item.
fn latest<T: Serialize>(
    sim: &Sim,
    p: &Params,
    key: &str,
    pick: impl Fn(&SimState, &str) -> Option<T>,
) -> Response {
    let result = symbols(p).and_then(|syms| {
        check_feed(p)?;
        Ok(sim.with_state(|s| {
            syms.iter()
                .filter_map(|sym| pick(s, sym).map(|v| (sym.clone(), v)))
                .collect::<BTreeMap<_, _>>()
        }))
    });
    respond(result.map(|m| BTreeMap::from([(key.to_string(), m)])))
}

async fn latest_trades(State(sim): S, Query(p): Query<Params>) -> Response {
    latest(&sim, &p, "trades", |s, sym| {
        s.market.latest_trade(sym).cloned()
    })
}

async fn latest_quotes(State(sim): S, Query(p): Query<Params>) -> Response {
    latest(&sim, &p, "quotes", |s, sym| {
        s.market.latest_quote(sym).cloned()
    })
}

async fn latest_bars(State(sim): S, Query(p): Query<Params>) -> Response {
    latest(&sim, &p, "bars", |s, sym| {
        s.market.latest_minute_bar(sym).cloned()
    })
}

/// `{"symbol": SYM, "<key>": item}`, or 404 when the symbol has none.
fn latest_one<T: Serialize>(
    sim: &Sim,
    symbol: String,
    key: &str,
    pick: impl Fn(&SimState, &str) -> Option<T>,
) -> Response {
    match sim.with_state(|s| pick(s, &symbol)) {
        Some(v) => {
            let mut body = serde_json::Map::new();
            body.insert("symbol".into(), symbol.into());
            body.insert(key.into(), serde_json::to_value(v).unwrap_or_default());
            ok_json(&body)
        }
        None => error_response(&SimError::new(
            404,
            40410000,
            format!("no {key} found for {symbol}"),
        )),
    }
}

async fn latest_trade_one(State(sim): S, Path(symbol): Path<String>) -> Response {
    latest_one(&sim, symbol, "trade", |s, sym| {
        s.market.latest_trade(sym).cloned()
    })
}

async fn latest_quote_one(State(sim): S, Path(symbol): Path<String>) -> Response {
    latest_one(&sim, symbol, "quote", |s, sym| {
        s.market.latest_quote(sym).cloned()
    })
}

async fn latest_bar_one(State(sim): S, Path(symbol): Path<String>) -> Response {
    latest_one(&sim, symbol, "bar", |s, sym| {
        s.market.latest_minute_bar(sym).cloned()
    })
}

fn snapshot(s: &SimState, sym: &str) -> Option<Snapshot> {
    s.market.listing(sym)?;
    Some(Snapshot {
        latest_trade: s.market.latest_trade(sym).cloned(),
        latest_quote: s.market.latest_quote(sym).cloned(),
        minute_bar: s.market.latest_minute_bar(sym).cloned(),
        daily_bar: s.market.daily_bar(sym),
        prev_daily_bar: s.market.prev_daily_bar(sym).cloned(),
    })
}

async fn snapshots(State(sim): S, Query(p): Query<Params>) -> Response {
    let result = symbols(&p).and_then(|syms| {
        check_feed(&p)?;
        Ok(sim.with_state(|s| {
            syms.iter()
                .filter(|sym| s.market.listing(sym).is_some())
                .map(|sym| (sym.clone(), snapshot(s, sym)))
                .collect::<Snapshots>()
        }))
    });
    respond(result)
}

async fn snapshot_one(State(sim): S, Path(symbol): Path<String>) -> Response {
    match sim.with_state(|s| snapshot(s, &symbol)) {
        Some(snap) => {
            let mut body = serde_json::to_value(snap).unwrap_or_default();
            if let Some(obj) = body.as_object_mut() {
                obj.insert("symbol".into(), symbol.into());
            }
            ok_json(&body)
        }
        None => error_response(&SimError::new(
            404,
            40410000,
            format!("unknown symbol {symbol}"),
        )),
    }
}

/// `GET /v1/corporate-actions`: the splits applied (`POST /_sim/corporate_actions`), filtered by
/// `symbols`, `types` (forward_split, reverse_split), `start` and `end` (ex-date), one page.
async fn corporate_actions(State(sim): S, Query(p): Query<Params>) -> Response {
    let date = |name: &str| -> Result<Option<chrono::NaiveDate>, SimError> {
        param(&p, name)
            .map(|d| {
                chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|_| SimError::new(400, 40010001, format!("{name} must be YYYY-MM-DD")))
            })
            .transpose()
    };
    let (start, end) = match (date("start"), date("end")) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return error_response(&e),
    };
    let symbols: Option<Vec<String>> =
        param(&p, "symbols").map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let types = param(&p, "types")
        .unwrap_or("forward_split,reverse_split")
        .to_string();
    let wants = |t: &str| types.split(',').any(|x| x.trim() == t);
    let splits = sim.with_state(|s| s.splits.clone());
    let mut actions = crate::alpaca::model::CorporateActions::default();
    for split in splits
        .into_iter()
        .filter(|x| symbols.as_ref().is_none_or(|s| s.contains(&x.symbol)))
        .filter(|x| start.is_none_or(|d| x.ex_date >= d) && end.is_none_or(|d| x.ex_date <= d))
    {
        if split.new_rate >= split.old_rate && wants("forward_split") {
            actions.forward_splits.push(split);
        } else if split.new_rate < split.old_rate && wants("reverse_split") {
            actions.reverse_splits.push(split);
        }
    }
    ok_json(&crate::alpaca::model::CorporateActionsPage {
        corporate_actions: actions,
        next_page_token: None,
    })
}

/// Ticks per symbol, and the token of the next page.
type TicksPage<T> = (BTreeMap<String, Vec<T>>, Option<String>);

/// One page of ticks (`GET /v2/stocks/trades` or `/quotes`): the symbols' ticks the simulator
/// still holds with times in `[start, end]`, `limit` across symbols, in symbol then time order;
/// the page token names where the next page starts.
fn ticks_page<T: Clone>(
    p: &Params,
    now: DateTime<Utc>,
    ticks_of: impl Fn(&str) -> Vec<T>,
    time_of: impl Fn(&T) -> DateTime<Utc>,
) -> Result<TicksPage<T>, SimError> {
    check_feed(p)?;
    let symbols = symbols(p)?;
    let Window {
        start,
        end,
        limit,
        descending,
        token,
    } = window(p, now)?;
    let mut flat: Vec<(String, T)> = Vec::new();
    let mut sorted = symbols.clone();
    sorted.sort();
    sorted.dedup();
    for sym in &sorted {
        if let Some((token_sym, _)) = &token {
            if sym < token_sym {
                continue;
            }
        }
        let mut mine: Vec<T> = ticks_of(sym)
            .into_iter()
            .filter(|t| (start..=end).contains(&time_of(t)))
            .collect();
        if descending {
            mine.reverse();
        }
        if let Some((token_sym, at)) = &token {
            if sym == token_sym {
                let from = mine
                    .iter()
                    .position(|t| time_of(t) == *at)
                    .unwrap_or(mine.len());
                mine.drain(..from);
            }
        }
        flat.extend(mine.into_iter().map(|t| (sym.clone(), t)));
        if flat.len() > limit {
            break;
        }
    }
    let next = flat
        .get(limit)
        .map(|(sym, t)| encode_token(sym, TimeFrame::MINUTE, time_of(t)));
    let mut page: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for (sym, t) in flat.into_iter().take(limit) {
        page.entry(sym).or_default().push(t);
    }
    Ok((page, next))
}

async fn trades(State(sim): S, Query(p): Query<Params>) -> Response {
    respond(sim.with_state(|s| {
        let (trades, next_page_token) = ticks_page(
            &p,
            s.clock.now(),
            |sym| s.market.recent_trades(sym).cloned().collect(),
            |t: &crate::alpaca::model::Trade| t.t,
        )?;
        Ok(crate::alpaca::model::TradesPage {
            trades,
            next_page_token,
        })
    }))
}

async fn quotes(State(sim): S, Query(p): Query<Params>) -> Response {
    respond(sim.with_state(|s| {
        let (quotes, next_page_token) = ticks_page(
            &p,
            s.clock.now(),
            |sym| s.market.recent_quotes(sym).cloned().collect(),
            |q: &crate::alpaca::model::Quote| q.t,
        )?;
        Ok(crate::alpaca::model::QuotesPage {
            quotes,
            next_page_token,
        })
    }))
}

/// `GET /v2/stocks/meta/exchanges`: exchange code → name.
async fn exchanges() -> Response {
    ok_json(&crate::sim::meta::exchanges())
}

/// `GET /v2/stocks/meta/conditions/{trade|quote}?tape=A|B|C`: condition code → meaning.
async fn conditions(Path(tick_type): Path<String>, Query(p): Query<Params>) -> Response {
    let tape = param(&p, "tape").unwrap_or("A");
    if !["A", "B", "C"].contains(&tape) {
        return error_response(&SimError::new(400, 40010001, "tape must be A, B or C"));
    }
    match crate::sim::meta::conditions(&tick_type) {
        Some(map) => ok_json(&map),
        None => error_response(&SimError::new(
            400,
            40010001,
            format!("invalid tick type {tick_type:?}: expected trade or quote"),
        )),
    }
}
