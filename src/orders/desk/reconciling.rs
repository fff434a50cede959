//! Reconciliation, the desk's side of it: what to read ([`OrderDesk::begin_reconcile`]),
//! what the reads mean ([`OrderDesk::on_reconciled`]), and the splits that explained a
//! difference ([`OrderDesk::on_splits_applied`]). The reading is the actor's.

use super::{
    Alert, CONFIRM_AFTER, Effect, OrderDesk, RETRY_FIRST_RECONCILIATION, Record, parse_side,
};
use crate::alpaca::model::{NonTradeActivity, OrderSide, OrderStatus, Split};
use crate::journal::store::{CORPORATE_ACTION, FillRecord, StoredIntent};
use crate::orders::ClientOrderIds;
use crate::orders::book::OrderBook;
use crate::orders::positions::{ReadToken, Verdict};
use crate::orders::reconcile::{BrokerView, Finding, Listed, reconcile};
use crate::orders::splits::{Adjustment, explain};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What reconciliation reads.
#[derive(Debug, Clone, Default)]
pub struct Gathered {
    /// The run id, when the desk had none (the first reconciliation of the process).
    pub run: Option<u64>,
    /// Open intents, and those of the fill window.
    pub intents: Vec<StoredIntent>,
    /// Every fill of the orders filled in the window.
    pub fills: Vec<FillRecord>,
    /// The journal's positions from every fill, when asked for (the first reconciliation).
    pub positions: Option<BTreeMap<String, Decimal>>,
    pub view: BrokerView,
    /// Where the broker's fills were read from.
    pub since: DateTime<Utc>,
}

/// A reconciliation begun: what to read, and what the desk needs back with the reads.
#[derive(Debug, Clone)]
pub struct ReconcileStart {
    pub epoch: u64,
    /// The first reconciliation since a start or restart (orders wait for it).
    pub first: bool,
    /// Orders whose request is unanswered: not looked up.
    pub in_flight: HashSet<String>,
    /// Ask the journal for a new run id.
    pub need_run: bool,
    /// The fill window starts no later than this (a difference stands since then).
    pub floor: Option<DateTime<Utc>>,
    /// Read the journal's positions (once per process).
    pub load_positions: bool,
    /// Taken before anything is read: fills booked after it make a comparison inconclusive.
    pub token: ReadToken,
}

/// A symbol whose position differs from the broker's: ours, the broker's.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitCandidate {
    pub symbol: String,
    pub ours: Decimal,
    pub broker: Decimal,
}

impl OrderDesk {
    /// Begins a reconciliation unless one is under way.
    pub fn begin_reconcile(&mut self) -> Option<ReconcileStart> {
        if self.reconciling {
            return None;
        }
        self.reconciling = true;
        self.epoch += 1;
        let first = !self.lifecycle.reconciled();
        Some(ReconcileStart {
            epoch: self.epoch,
            first,
            in_flight: self.in_flight.clone(),
            need_run: self.ids.is_none(),
            floor: self.fills_floor,
            load_positions: first && !self.loaded,
            token: self.positions.begin_read(),
        })
    }

    /// The reads of a reconciliation, or why they failed (the first is retried).
    pub fn on_reconciled(
        &mut self,
        start: ReconcileStart,
        read: Result<Gathered, String>,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        self.reconciling = false;
        match read {
            Ok(g) => {
                if let Some(run) = g.run {
                    self.ids = Some(ClientOrderIds::new(run));
                    self.stats.run = run;
                }
                let out = self.apply_reconciliation(g, start.token, start.first, now);
                let mut out = out;
                out.extend(self.forget_retired(start.epoch));
                out
            }
            Err(e) => {
                tracing::warn!(error = %e, "reconciliation with the broker failed; retrying");
                if start.first {
                    vec![Effect::Reconcile {
                        after: RETRY_FIRST_RECONCILIATION,
                    }]
                } else {
                    Vec::new()
                }
            }
        }
    }

    fn apply_reconciliation(
        &mut self,
        mut g: Gathered,
        token: ReadToken,
        first: bool,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        // The journal read may predate answers this process has had since: the book knows
        // those orders by broker id, and their fills are not foreign.
        g.view.known_ids = self.book.broker_ids();
        let by_coid: HashMap<&str, &StoredIntent> = g
            .intents
            .iter()
            .map(|i| (i.intent.client_order_id.as_str(), i))
            .collect();
        // The books are loaded from the journal once per process: after a restart of the
        // actor, what it booked itself is newer than a journal read may be.
        if let Some(positions) = g.positions.take() {
            self.loaded = true;
            self.executions.clear();
            self.booked.clear();
            for f in &g.fills {
                self.executions
                    .entry(f.broker_order_id.clone())
                    .or_default()
                    .insert(f.execution_id.clone());
                let b = self.booked.entry(f.broker_order_id.clone()).or_default();
                *b = b.saturating_add(f.qty);
            }
            self.positions.load(positions);
            for i in &g.intents {
                if i.intent.request.get("leg_of").is_some() {
                    self.legs.insert(i.intent.client_order_id.clone());
                }
            }
        }
        // Journal fills per order: what is already booked, so resuming books only the rest.
        let mut filled: HashMap<&str, (Decimal, Decimal)> = HashMap::new();
        for f in &g.fills {
            let e = filled.entry(f.client_order_id.as_str()).or_default();
            e.0 += f.qty;
            e.1 += f.qty * f.price;
        }
        // `booked`: what this process booked for the broker order. The journal read may predate
        // fills booked since (this order filled, was pruned from the book as final, and is
        // found again by a reconciliation that read the journal before): they are not booked
        // twice.
        let resume = |book: &mut OrderBook, stored: &StoredIntent, booked: Option<Decimal>| {
            let (q, n) = filled
                .get(stored.intent.client_order_id.as_str())
                .copied()
                .unwrap_or_default();
            let avg = (q > Decimal::ZERO).then(|| (n / q).round_dp(9));
            match booked {
                Some(b) if b > q => book.resume(&stored.intent, b, None, now),
                _ => book.resume(&stored.intent, q, avg, now),
            }
        };
        let findings = reconcile(&g.intents, &g.fills, &g.view);
        let mut open_foreign: HashSet<String> = HashSet::new();
        let since = g.since;
        let mut differs = false;
        let mut summary: BTreeMap<&str, u64> = BTreeMap::new();
        for f in findings {
            match f {
                Finding::IntentAtBroker {
                    client_order_id,
                    order,
                } => {
                    if self.book.get(&client_order_id).is_none() {
                        // Only an order the book did not know is news (after a restart).
                        *summary.entry("found_at_broker").or_default() += 1;
                        if let Some(stored) = by_coid.get(client_order_id.as_str()) {
                            let booked = self.booked.get(&order.id.to_string()).copied();
                            resume(&mut self.book, stored, booked);
                            self.stats.intents_found_at_broker += 1;
                            tracing::info!(client_order_id = %client_order_id, status = ?order.status, filled_qty = %order.filled_qty, "reconciliation: journaled order found at the broker");
                        }
                    }
                    self.on_broker_order(&order, now, &mut out);
                }
                Finding::IntentNeverSent { client_order_id } => {
                    let overdue = self.book.get(&client_order_id).is_none_or(|t| {
                        t.status.is_none()
                            && (now - t.sent_at).to_std().unwrap_or_default() > self.ack_timeout
                    });
                    if self.in_flight.contains(&client_order_id) || !overdue {
                        continue;
                    }
                    *summary.entry("never_sent").or_default() += 1;
                    self.stats.intents_never_sent += 1;
                    tracing::warn!(client_order_id = %client_order_id, "reconciliation: journaled intent never reached the broker; closed, not resent");
                    if self.book.get(&client_order_id).is_none() {
                        if let Some(stored) = by_coid.get(client_order_id.as_str()) {
                            resume(&mut self.book, stored, None);
                        }
                    }
                    let closed = self.close_unsent(
                        &client_order_id,
                        OrderStatus::Rejected,
                        "the broker never received it (reconciliation)",
                        true,
                        now,
                    );
                    out.extend(closed);
                }
                Finding::ForeignOrder { order } => {
                    // Our journaled orders (a final intent, a leg) open at the broker: track them.
                    if let Some(stored) = by_coid.get(order.client_order_id.as_str()) {
                        if self.book.get(&order.client_order_id).is_none() {
                            let booked = self.booked.get(&order.id.to_string()).copied();
                            resume(&mut self.book, stored, booked);
                        }
                        self.on_broker_order(&order, now, &mut out);
                        continue;
                    }
                    // Ours since the journal was read: a leg learned from its parent's answer.
                    if self.book.get(&order.client_order_id).is_some()
                        || self.legs.contains(&order.client_order_id)
                    {
                        self.on_broker_order(&order, now, &mut out);
                        continue;
                    }
                    // A leg of a parent of ours whose answer has not come yet: its legs are
                    // learned from that answer, so it is not called foreign now.
                    // (Orders in flight are open in the book, with no broker id yet.)
                    let parent_unanswered = self
                        .book
                        .open()
                        .any(|t| t.symbol == order.symbol && t.broker_order_id.is_none());
                    if parent_unanswered {
                        continue;
                    }
                    open_foreign.insert(order.id.to_string());
                    if self.foreign_seen.contains(&order.id.to_string()) {
                        continue; // reported when first seen
                    }
                    *summary.entry("foreign_orders").or_default() += 1;
                    self.stats.foreign_orders += 1;
                    tracing::warn!(order_id = %order.id, client_order_id = %order.client_order_id, symbol = %order.symbol, "reconciliation: an open order this daemon did not send; left alone");
                }
                Finding::MissingFill {
                    client_order_id,
                    activity,
                } => {
                    if client_order_id
                        .as_deref()
                        .is_some_and(|c| self.book.get(c).is_some())
                    {
                        continue; // the book books it from the order's cumulative quantity
                    }
                    // A fill of an order not known by its broker id may be ours: one whose
                    // answer has not come yet. Booked as foreign now, the book would book it
                    // again when the answer or the stream says it filled; so it waits for the
                    // next reconciliation, when that order's broker id is known.
                    let maybe_ours = client_order_id.is_none()
                        && self
                            .book
                            .open()
                            .any(|t| t.symbol == activity.symbol && t.broker_order_id.is_none());
                    if maybe_ours {
                        tracing::info!(symbol = %activity.symbol, order_id = %activity.order_id, "reconciliation: a fill of an unknown order while one of ours is unanswered; checked again next time");
                        continue;
                    }
                    let Some(side) = parse_side(&activity.side) else {
                        continue;
                    };
                    // Against what this process has booked, journal writes still queued included.
                    let order_id = activity.order_id.to_string();
                    let already = self.booked.get(&order_id).copied().unwrap_or_default();
                    let qty = activity.qty.min(activity.cum_qty - already);
                    if qty <= Decimal::ZERO {
                        continue;
                    }
                    *summary.entry("missing_fills").or_default() += 1;
                    self.stats.missing_fills += 1;
                    tracing::warn!(symbol = %activity.symbol, qty = %activity.qty, price = %activity.price, order_id = %activity.order_id, "reconciliation: a fill the journal did not have; booked");
                    self.book_fill(
                        FillRecord {
                            execution_id: format!("activity:{}", activity.id),
                            client_order_id: client_order_id
                                .unwrap_or_else(|| format!("foreign:{}", activity.order_id)),
                            broker_order_id: activity.order_id.to_string(),
                            symbol: activity.symbol.clone(),
                            side,
                            qty,
                            price: activity.price,
                            at: activity.transaction_time,
                        },
                        &mut out,
                    );
                    // Not an order of the book: nothing retires it but this.
                    self.retired.push((self.epoch, None, Some(order_id)));
                }
                Finding::Unmodelled { list, entry } => {
                    let key = format!(
                        "{}:{}",
                        list.as_str(),
                        entry.id.as_deref().unwrap_or(&entry.why)
                    );
                    let shown = self.foreign_seen.contains(&key);
                    open_foreign.insert(key);
                    if shown {
                        continue; // reported when first seen
                    }
                    *summary.entry("unmodelled").or_default() += 1;
                    self.stats.unmodelled += 1;
                    if list == Listed::Activity {
                        // A fill the daemon cannot read: its position will differ, and the
                        // comparison of positions says so if it does.
                        tracing::error!(list = list.as_str(), entry = %entry.describe(), "reconciliation: a fill the daemon cannot read; left alone");
                    } else {
                        tracing::warn!(list = list.as_str(), entry = %entry.describe(), "reconciliation: an entry the daemon cannot model (placed by hand or by another app?); left alone");
                    }
                    out.push(Effect::Journal(Record::Event(
                        "unmodelled",
                        serde_json::json!({ "list": list, "entry": entry }),
                    )));
                }
            }
        }
        let mut broker: BTreeMap<String, Decimal> = BTreeMap::new();
        for p in &g.view.positions {
            let q = broker.entry(p.symbol.clone()).or_default();
            *q = q.saturating_add(p.qty);
        }
        let book = &self.book;
        // An order of ours on the symbol whose outcome is not known yet (open in the book, in
        // flight included: it is tracked before its request leaves) explains a difference.
        let unsettled = |symbol: &str| book.open().any(|t| t.symbol == symbol);
        let mut confirm = false;
        // Differences a split may account for: looked up before they can be confirmed.
        let mut candidates: Vec<SplitCandidate> = Vec::new();
        for (symbol, verdict) in self.positions.judge(token, &broker, unsettled, first) {
            differs |= verdict.differs();
            match verdict {
                Verdict::Agrees => {}
                Verdict::Inconclusive | Verdict::Unsettled => {
                    tracing::debug!(symbol = %symbol, why = ?verdict, "position compared again at the next reconciliation");
                }
                Verdict::Suspected { ours, broker } => {
                    confirm = true;
                    candidates.push(SplitCandidate {
                        symbol: symbol.clone(),
                        ours,
                        broker,
                    });
                    tracing::info!(symbol = %symbol, journaled = %ours, broker = %broker, "position differs from the broker's; confirming with a fresh read");
                }
                Verdict::Known { ours, broker } => {
                    if first {
                        candidates.push(SplitCandidate {
                            symbol: symbol.clone(),
                            ours,
                            broker,
                        });
                        // Positions held before the journal began: reported once, not to health.
                        *summary.entry("position_mismatches").or_default() += 1;
                        self.stats.position_mismatches += 1;
                        tracing::error!(symbol = %symbol, journaled = %ours, broker = %broker, "reconciliation: the broker's position differs from the journal's fills (held before this journal began?)");
                        out.push(Effect::Journal(Record::Event(
                            "position_mismatch",
                            serde_json::json!({ "symbol": symbol, "journaled": ours, "broker": broker, "known": true }),
                        )));
                    }
                }
                Verdict::Confirmed { ours, broker } => {
                    *summary.entry("position_mismatches").or_default() += 1;
                    self.stats.position_mismatches += 1;
                    out.push(Effect::Alert(Alert::Mismatch {
                        detail: format!(
                            "{symbol}: the broker holds {broker}, the journal's fills {ours}"
                        ),
                    }));
                    tracing::error!(symbol = %symbol, journaled = %ours, broker = %broker, "reconciliation: the broker's position differs from the journal's fills (confirmed by a second read)");
                    out.push(Effect::Journal(Record::Event(
                        "position_mismatch",
                        serde_json::json!({ "symbol": symbol, "journaled": ours, "broker": broker }),
                    )));
                }
            }
        }
        if !candidates.is_empty() && !self.explaining {
            // The confirming read waits for the lookup: a split must not be confirmed as a
            // mismatch while its explanation is on the way.
            self.explaining = true;
            out.push(Effect::ExplainSplits {
                candidates,
                confirm,
            });
        } else if confirm {
            out.push(Effect::Reconcile {
                after: CONFIRM_AFTER,
            });
        }
        // Foreign orders are reported once each, while they stay open.
        self.foreign_seen = open_foreign;
        self.fills_floor = differs.then(|| self.fills_floor.unwrap_or(since));
        self.stats.reconciliations += 1;
        self.lifecycle = self.lifecycle.reconciled_now();
        let summary_json = serde_json::to_value(&summary).unwrap_or_default();
        if first {
            tracing::info!(run = self.stats.run, open_orders = self.book.open_count(), positions = ?self.positions.non_zero(), findings = %summary_json, "reconciled with the broker");
            out.push(Effect::Journal(Record::Event(
                "reconciled",
                serde_json::json!({ "run": self.stats.run, "findings": summary_json }),
            )));
        } else if !summary.is_empty() {
            tracing::info!(findings = %summary_json, "periodic reconciliation");
        }
        out
    }

    /// Forgets what is kept per order for orders retired before reconciliation `epoch`
    /// began: its journal read came after their writes, so nothing of them is needed here.
    fn forget_retired(&mut self, epoch: u64) -> Vec<Effect> {
        let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|(e, _, _)| *e < epoch);
        self.retired = keep;
        let mut out = Vec::new();
        for (_, coid, broker) in old {
            if let Some(c) = coid {
                if self.book.get(&c).is_some() {
                    continue; // tracked again (found open by a reconciliation)
                }
                self.kept.remove(&c);
                self.legs.remove(&c);
                self.protected.remove(&c);
                out.push(Effect::Forget(c));
            }
            if let Some(b) = broker {
                self.booked.remove(&b);
                self.executions.remove(&b);
            }
        }
        out
    }

    /// The splits that explained a difference, journaled (each once) by the actor: booked,
    /// and the confirming read follows when one was due.
    pub fn on_splits_applied(&mut self, applied: Vec<Adjustment>, confirm: bool) -> Vec<Effect> {
        self.explaining = false;
        let mut out = Vec::new();
        for adj in applied {
            let position = self.positions.adjust(&adj.symbol, adj.to - adj.from);
            self.stats.split_adjustments += 1;
            tracing::warn!(symbol = %adj.symbol, from = %adj.from, to = %adj.to, ratio = ?adj.ratio, detail = %adj.detail, position = %position, "position adjusted for a split");
            out.push(Effect::Journal(Record::Event(
                "split_applied",
                serde_json::json!({ "symbol": adj.symbol, "from": adj.from, "to": adj.to, "ratio": adj.ratio, "key": adj.key, "detail": adj.detail }),
            )));
            out.push(Effect::SplitApplied {
                symbol: adj.symbol,
                ratio: adj.ratio,
            });
        }
        if confirm {
            out.push(Effect::Reconcile {
                after: CONFIRM_AFTER,
            });
        }
        out
    }
}

/// The splits that account for the candidates' differences exactly, each with the journal
/// record of its adjustment (a `fills` row under [`CORPORATE_ACTION`], price 0, keyed by the
/// split: journaled once, so never applied twice). `fills`: the journal's fills since the
/// earliest ex-date (those after a split are in the new count).
pub fn split_adjustments(
    candidates: &[SplitCandidate],
    splits: &[Split],
    activities: &[NonTradeActivity],
    fills: &[FillRecord],
    today: NaiveDate,
) -> Vec<(Adjustment, FillRecord)> {
    let mut out = Vec::new();
    for c in candidates {
        let signed: Vec<Decimal> = fills
            .iter()
            .filter(|f| f.symbol == c.symbol && f.client_order_id != CORPORATE_ACTION)
            .map(|f| f.side.sign() * f.qty)
            .collect();
        let Some(adj) = explain(&c.symbol, c.ours, c.broker, splits, activities, &signed) else {
            continue;
        };
        let delta = adj.to - adj.from;
        let at = splits
            .iter()
            .filter(|s| s.symbol == c.symbol)
            .map(|s| s.ex_date)
            .max()
            .unwrap_or(today)
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc();
        let record = FillRecord {
            execution_id: adj.key.clone(),
            client_order_id: CORPORATE_ACTION.to_string(),
            broker_order_id: adj.key.clone(),
            symbol: c.symbol.clone(),
            side: if delta > Decimal::ZERO {
                OrderSide::Buy
            } else {
                OrderSide::Sell
            },
            qty: delta.abs(),
            price: Decimal::ZERO,
            at,
        };
        out.push((adj, record));
    }
    out
}
