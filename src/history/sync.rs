//! `traderd data sync`: bars from the broker's data API into the store, page by page.
//!
//! - **Only what is missing.** Each symbol's requested range minus what the store already
//!   fetched (`covered`); symbols missing the same range are asked for together (one request
//!   names up to [`SYMBOLS_PER_REQUEST`] symbols, as Alpaca allows), up to
//!   [`CONCURRENT_REQUESTS`] groups at a time; the client's request budget keeps it within
//!   the rate limit.
//! - **Written as it comes**: every page is upserted in its own transaction, and a range is
//!   marked fetched only once all its pages are in. An interrupted sync loses nothing; the
//!   next one fetches the rest.
//! - The end of a range is never marked fetched past the last closed bar (the broker's clock,
//!   less one bar): the bar in progress is fetched again next time.

use super::store::{HistoryError, HistoryStore, Span};
use crate::alpaca::model::{Bar, TimeFrame};
use crate::alpaca::rest::BarsQuery;
use crate::broker::BrokerRef;
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const SYMBOLS_PER_REQUEST: usize = 100;
pub const CONCURRENT_REQUESTS: usize = 4;
const PAGE_LIMIT: u32 = 10_000;

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub symbols: Vec<String>,
    pub timeframe: TimeFrame,
    pub start: DateTime<Utc>,
    /// `None`: up to the last closed bar by the broker's clock (a simulator's market runs
    /// ahead of this machine's at speed: this machine's now would leave its newest out).
    pub end: Option<DateTime<Utc>>,
    /// `raw`, `split`, `dividend` or `all`.
    pub adjustment: String,
    /// The data feed (`iex`, `sip`); `None`: the broker's default for the plan.
    pub feed: Option<String>,
}

/// What a sync did, per symbol.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SyncReport {
    /// Bars written per symbol (fetched again or new).
    pub written: BTreeMap<String, u64>,
    /// Ranges fetched per symbol (none: it was all stored already).
    pub ranges: BTreeMap<String, u64>,
    pub requests: u64,
    /// Where the sync ended: the request's end, or the broker's last closed bar before it.
    pub end: DateTime<Utc>,
}

/// Progress as it happens: a page of `bars` bars written for `symbols`.
pub enum Progress<'a> {
    Planned { ranges: usize, symbols: usize },
    Page { symbols: &'a [String], bars: usize },
    RangeDone,
}

enum Fetched {
    Page(Vec<String>, BTreeMap<String, Vec<Bar>>),
    Done(Vec<String>, DateTime<Utc>, DateTime<Utc>),
}

/// Syncs `req` into `store` from `broker`. `progress` hears every page.
pub async fn sync(
    broker: &BrokerRef,
    store: &mut HistoryStore,
    req: &SyncRequest,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<SyncReport, HistoryError> {
    if let Some(end) = req.end
        && req.start > end
    {
        return Err(HistoryError::Refused(format!(
            "the range is empty: --start {} is after --end {}",
            req.start.date_naive(),
            end.date_naive()
        )));
    }
    let tf = req.timeframe.to_string();
    let width = Duration::minutes(req.timeframe.intraday_minutes().unwrap_or(24 * 60));
    // Never past the last closed bar, by the broker's clock (a simulator's, or a skewed
    // host's, is not ours).
    let now = crate::broker::market_now(broker).await.with_timezone(&Utc);
    let end = req.end.map_or(now - width, |e| e.min(now - width));
    let mut groups: BTreeMap<Span, Vec<String>> = BTreeMap::new();
    for symbol in &req.symbols {
        store.claim(symbol, &tf, &req.adjustment)?;
        for range in store.missing(symbol, &tf, req.start, end)? {
            groups.entry(range).or_default().push(symbol.clone());
        }
    }
    let mut report = SyncReport {
        end,
        ..SyncReport::default()
    };
    let chunks: Vec<(Span, Vec<String>)> = groups
        .into_iter()
        .flat_map(|(range, symbols)| {
            symbols
                .chunks(SYMBOLS_PER_REQUEST)
                .map(|c| (range, c.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect();
    progress(Progress::Planned {
        ranges: chunks.len(),
        symbols: req.symbols.len(),
    });
    if chunks.is_empty() {
        return Ok(report);
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Fetched, String>>(8);
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_REQUESTS));
    for ((start, end), symbols) in chunks {
        let (broker, tx, slots) = (broker.clone(), tx.clone(), slots.clone());
        let query = BarsQuery {
            start: Some(start),
            end: Some(end),
            limit: Some(PAGE_LIMIT),
            feed: req.feed.clone(),
            adjustment: Some(req.adjustment.clone()),
            ..BarsQuery::new(
                &symbols.iter().map(String::as_str).collect::<Vec<_>>(),
                req.timeframe,
            )
        };
        tokio::spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let r = fetch(&broker, query, &symbols, &tx).await;
            let _ = tx
                .send(r.map(|()| Fetched::Done(symbols, start, end)))
                .await;
        });
    }
    drop(tx);
    while let Some(item) = rx.recv().await {
        match item.map_err(HistoryError::Refused)? {
            Fetched::Page(symbols, page) => {
                report.requests += 1;
                let mut n = 0;
                for (symbol, bars) in page {
                    n += store.write(&symbol, &tf, &bars, None)?;
                    *report.written.entry(symbol).or_default() += bars.len() as u64;
                }
                progress(Progress::Page {
                    symbols: &symbols,
                    bars: n,
                });
            }
            Fetched::Done(symbols, start, end) => {
                for symbol in symbols {
                    store.write(&symbol, &tf, &[], Some((start, end)))?;
                    *report.ranges.entry(symbol).or_default() += 1;
                }
                progress(Progress::RangeDone);
            }
        }
    }
    Ok(report)
}

/// Every page of one query, each sent on as it arrives.
async fn fetch(
    broker: &BrokerRef,
    mut query: BarsQuery,
    symbols: &[String],
    tx: &tokio::sync::mpsc::Sender<Result<Fetched, String>>,
) -> Result<(), String> {
    loop {
        let page = broker
            .get_bars_page(&query)
            .await
            .map_err(|e| format!("cannot fetch bars of {}: {e}", symbols.join(",")))?;
        let next = page.next_page_token.filter(|t| !t.is_empty());
        if tx
            .send(Ok(Fetched::Page(symbols.to_vec(), page.bars)))
            .await
            .is_err()
        {
            return Err("the sync stopped".into());
        }
        match next {
            Some(token) => query.page_token = Some(token),
            None => return Ok(()),
        }
    }
}
