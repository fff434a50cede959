//! The OrderManager's reads and writes at the broker and the journal, as plain async
//! functions: what reconciliation reads ([`gather`]), clearing a symbol before an exit
//! ([`clear_symbol`]), the split lookup ([`apply_splits`]) and the flatten procedure
//! ([`flatten`]). What they read is judged by the desk (`orders::desk`).

use crate::alpaca::BrokerError;
use crate::alpaca::model::{Activity, OrderSide};
use crate::alpaca::rest::{CloseAmount, ListActivities, ListOrders};
use crate::broker::BrokerRef;
use crate::journal::{
    self, Journal, JournalError, LastFillAt, LoadFillsSince, LoadIntentsSince, LoadPositions,
    NextCounter, RecordFill,
};
use crate::messages::orders::{FlattenReport, Propose, ProposeError};
use crate::orders::desk::{
    Gathered, ReconcileStart, SplitCandidate, flatten_plan, split_adjustments,
};
use crate::orders::reconcile::{BrokerView, Listed};
use crate::orders::splits::Adjustment;
use actix::prelude::*;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// How far back splits are looked up to explain a position difference: a daemon stopped over
/// a long weekend still finds the split that happened meanwhile.
const SPLIT_LOOKBACK_DAYS: i64 = 30;

/// Asks the journal in order behind what is queued; the answer, or why there is none.
pub(super) async fn journal_call<M, T>(journal: &Addr<Journal>, msg: M) -> Result<T, String>
where
    M: Message<Result = Result<T, JournalError>> + Send + 'static,
    T: Send + 'static,
    Journal: Handler<journal::Ordered<M>>,
{
    match journal::ordered(journal, msg).await {
        Some(r) => r.map_err(|e| e.to_string()),
        None => Err("the journal is not running".to_string()),
    }
}

/// Everything a reconciliation reads, journal first (in order behind the writes queued).
pub(super) async fn gather(
    rest: &BrokerRef,
    journal: &Addr<Journal>,
    start: &ReconcileStart,
) -> Result<Gathered, String> {
    let run = if start.need_run {
        Some(
            journal
                .send(NextCounter("run".into()))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    // Fills since a little before the journal's last one (or the broker's last day: its clock,
    // not ours, which a simulator or a skewed host may not share); those already journaled are
    // matched by cumulative quantity and not booked again.
    // While a mismatch stands, the window keeps the start it had when the mismatch was first
    // seen (`floor`): a fill missed before later ones were journaled is still found.
    let since: DateTime<Utc> = match journal_call(journal, LastFillAt).await? {
        Some(at) => at - chrono::Duration::minutes(5),
        None => {
            let clock = rest.get_clock().await.map_err(|e| e.to_string())?;
            clock.timestamp.with_timezone(&Utc) - chrono::Duration::days(1)
        }
    };
    let since = start.floor.map_or(since, |f| f.min(since));
    // Only what the window needs: open intents and those of the window, the fills of orders
    // filled in it. The journal can grow for years; a reconciliation does not.
    let intents = journal_call(journal, LoadIntentsSince(since)).await?;
    // (A margin before the window: the journal's time of a fill and the broker's activity
    // time of it may differ a little.)
    let fills = journal_call(
        journal,
        LoadFillsSince(since - chrono::Duration::minutes(10)),
    )
    .await?;
    let positions = if start.load_positions {
        Some(journal_call(journal, LoadPositions).await?)
    } else {
        None
    };
    let mut view = BrokerView::default();
    let open = rest
        .list_orders(&ListOrders {
            status: Some("open"),
            limit: Some(500),
            nested: Some(false),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    view.open_orders = open.items;
    view.foreign
        .extend(open.foreign.into_iter().map(|f| (Listed::Order, f)));
    // Open intents the open list already shows need no request of their own; only the others
    // (final since, or never received) are looked up one by one, and so are bracket parents:
    // the lookup nests their legs, which a parent that died before learning them needs.
    let mut by_client_id = HashMap::new();
    for i in intents
        .iter()
        .filter(|i| i.status.is_none_or(|s| s.is_open()))
        .filter(|i| !start.in_flight.contains(&i.intent.client_order_id))
    {
        let coid = &i.intent.client_order_id;
        let parent = i.intent.request.get("order_class").is_some();
        let listed = view
            .open_orders
            .iter()
            .find(|o| !parent && &o.client_order_id == coid);
        let found = match listed {
            Some(o) => Some(o.clone()),
            None => rest
                .get_order_by_client_id(coid)
                .await
                .map_err(|e| e.to_string())?,
        };
        by_client_id.insert(coid.clone(), found);
    }
    view.by_client_id = by_client_id;
    let held = rest.list_positions().await.map_err(|e| e.to_string())?;
    view.positions = held.items;
    view.foreign
        .extend(held.foreign.into_iter().map(|f| (Listed::Position, f)));
    let activities = rest
        .fills_since(Some(since))
        .await
        .map_err(|e| e.to_string())?;
    view.fills = activities.items;
    view.foreign.extend(
        activities
            .foreign
            .into_iter()
            .map(|f| (Listed::Activity, f)),
    );
    Ok(Gathered {
        run,
        intents,
        fills,
        positions,
        view,
        since,
    })
}

/// Looks up the splits of the candidates' symbols (the corporate-actions API and the account's
/// `SPLIT` activities: either may fail, the other may still explain it) and journals the
/// adjustment of each split that accounts for a difference exactly. Answers those journaled
/// now (one journaled before is not applied again).
pub(super) async fn apply_splits(
    rest: &BrokerRef,
    journal: &Addr<Journal>,
    candidates: &[SplitCandidate],
) -> Vec<Adjustment> {
    // The market's date, not this machine's (the simulator's market runs ahead of it at
    // speed: a split dated by it was past this machine's today, and its record was dated
    // days early).
    let today = crate::broker::market_now(rest).await.date_naive();
    let from = today - chrono::Duration::days(SPLIT_LOOKBACK_DAYS);
    let symbols: Vec<&str> = candidates.iter().map(|c| c.symbol.as_str()).collect();
    let splits = rest.splits(&symbols, from, today).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read corporate actions; differences are judged without them");
        Vec::new()
    });
    let activities = rest
        .list_activities(&ListActivities {
            activity_types: Some("SPLIT".into()),
            after: Some(from.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()),
            page_size: Some(100),
            ..Default::default()
        })
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter_map(|a| match a {
                    Activity::NonTrade(n) => Some(n),
                    Activity::Trade(_) => None,
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    // Fills since the earliest ex-date began (those after a split are in the new count).
    let earliest = splits.iter().map(|s| s.ex_date).min().unwrap_or(today);
    let fills = journal_call(
        journal,
        LoadFillsSince(
            earliest.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
                - chrono::Duration::hours(12),
        ),
    )
    .await
    .unwrap_or_default();
    let mut applied = Vec::new();
    for (adj, record) in split_adjustments(candidates, &splits, &activities, &fills, today) {
        // Journaled first, booked only if new: the same split is never applied twice (a
        // restart finds it journaled, and the journal's positions include it).
        let symbol = record.symbol.clone();
        match journal_call(journal, RecordFill(record)).await {
            Ok(true) => applied.push(adj),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, symbol = %symbol, "cannot journal a split adjustment")
            }
        }
    }
    applied
}

/// Cancels our open orders on a symbol, waits until the broker shows them final, and answers
/// how much of the position is left to close on `side`.
pub(super) async fn clear_symbol(
    rest: &BrokerRef,
    ids: &[Uuid],
    symbol: &str,
    side: OrderSide,
    wait: Duration,
) -> Result<Decimal, String> {
    for id in ids {
        // A 422 means it is already final (filled or canceled): the wait below sees it.
        if let Err(e) = rest.cancel_order(*id).await {
            if !matches!(
                e,
                BrokerError::Api {
                    status: 422 | 404,
                    ..
                }
            ) {
                return Err(format!("cannot cancel order {id}: {e}"));
            }
        }
    }
    let deadline = tokio::time::Instant::now() + wait;
    for id in ids {
        loop {
            let o = rest.get_order(*id).await.map_err(|e| e.to_string())?;
            if o.status.is_terminal() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "order {id} is still {:?} after the cancel",
                    o.status
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let held = rest
        .get_position(symbol)
        .await
        .map_err(|e| e.to_string())?
        .map(|p| p.qty)
        .unwrap_or_default();
    // Only what closes: selling a long, buying back a short.
    Ok(match side {
        OrderSide::Sell => held.max(Decimal::ZERO),
        OrderSide::Buy => (-held).max(Decimal::ZERO),
    })
}

/// Cancels every open order (and waits until the broker shows none), then closes every
/// position: equities with closing orders of ours through the risk checks, anything else by
/// the broker's own liquidation of the symbol.
pub(super) async fn flatten(
    rest: BrokerRef,
    propose: Option<Recipient<Propose>>,
    in_flight: Vec<crate::orders::book::InFlight>,
    wait: Duration,
) -> Result<FlattenReport, String> {
    let Some(propose) = propose else {
        return Err("the risk checks are not connected".to_string());
    };
    let canceled = rest
        .cancel_all_orders()
        .await
        .map_err(|e| e.to_string())?
        .len();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let open = crate::broker::open_order_count(rest.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        if open == 0 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{open} orders still open after cancel-all"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let positions = rest.list_positions().await.map_err(|e| e.to_string())?;
    let correlation = format!("flatten-{}", Utc::now().timestamp_millis());
    let plan = flatten_plan(positions, &in_flight, &correlation);
    let mut report = FlattenReport {
        canceled,
        ..Default::default()
    };
    for (symbol, orders) in plan.covered {
        tracing::warn!(symbol = %symbol, orders = ?orders, "flatten: the position is closed by orders of ours still in flight; nothing more is sent for it");
        report.closing.insert(symbol, Ok(orders.join(",")));
    }
    for what in plan.unreadable {
        tracing::error!(entry = %what, "flatten: a position without a readable symbol; close it by hand");
        report.closing.insert(
            format!("unreadable:{what}"),
            Err("a position the daemon cannot read: close it by hand".into()),
        );
    }
    for symbol in plan.liquidate {
        let r = rest
            .close_position(&symbol, CloseAmount::All)
            .await
            .map(|o| o.client_order_id)
            .map_err(|e| e.to_string());
        report.closing.insert(symbol, r);
    }
    for intent in plan.close {
        let symbol = intent.symbol.clone();
        let r = match propose.send(Propose::new(intent)).await {
            Ok(Ok(coid)) => Ok(coid),
            Ok(Err(ProposeError::Refused(r))) => Err(r.to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        report.closing.insert(symbol, r);
    }
    Ok(report)
}
