//! What the journal answers: intents (open, or since a time), fills, positions from every
//! fill, the last fill's time, and the audit chain's check.

use super::*;

impl Store {
    /// Every intent, oldest first; with `open_only`, those not known to be final.
    pub fn intents(&self, open_only: bool) -> Result<Vec<StoredIntent>, JournalError> {
        let mut out = self.intents_where("1", &[])?;
        if open_only {
            out.retain(|i| i.status.is_none_or(|s| !s.is_terminal()));
        }
        Ok(out)
    }

    /// What reconciliation needs of the intents, however long the journal: those not known
    /// to be final, and those created or changed at or after `since` (the fill window).
    pub fn intents_since(&self, since: &DateTime<Utc>) -> Result<Vec<StoredIntent>, JournalError> {
        let since = ts(since);
        self.intents_where(
            "status IS NULL OR status NOT IN ('filled', 'canceled', 'expired', 'replaced', 'rejected', 'done_for_day') OR created_at >= ?1 OR updated_at >= ?1",
            &[&since],
        )
    }

    fn intents_where(
        &self,
        condition: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<StoredIntent>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT client_order_id, created_at, symbol, side, qty, request, correlation_id, broker_order_id, status, filled_qty FROM order_intents WHERE {condition} ORDER BY created_at, client_order_id"))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, String>(9)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (coid, created, symbol, side, qty, request, corr, broker, status, filled) =
                row.map_err(|e| self.err(e))?;
            let corrupt = |what: &str| JournalError::Corrupt(format!("intent {coid}: {what}"));
            let status: Option<OrderStatus> = status.map(|s| {
                serde_json::from_value(serde_json::Value::String(s)).unwrap_or(OrderStatus::Unknown)
            });
            out.push(StoredIntent {
                intent: OrderIntent {
                    client_order_id: coid.clone(),
                    symbol,
                    side: if side == "buy" {
                        OrderSide::Buy
                    } else {
                        OrderSide::Sell
                    },
                    qty: Decimal::from_str(&qty).map_err(|_| corrupt("qty"))?,
                    request: serde_json::from_str(&request).map_err(|_| corrupt("request"))?,
                    correlation_id: corr.into(),
                    created_at: DateTime::parse_from_rfc3339(&created)
                        .map_err(|_| corrupt("created_at"))?
                        .with_timezone(&Utc),
                },
                broker_order_id: broker,
                status,
                filled_qty: Decimal::from_str(&filled).map_err(|_| corrupt("filled_qty"))?,
            });
        }
        Ok(out)
    }

    /// Every fill, oldest first.
    pub fn fills(&self) -> Result<Vec<FillRecord>, JournalError> {
        self.fills_where("1", &[])
    }

    /// Every fill of the broker orders that have one at or after `since`, oldest first: what
    /// reconciliation matches the broker's recent fills against, however long the journal.
    pub fn fills_of_orders_since(
        &self,
        since: &DateTime<Utc>,
    ) -> Result<Vec<FillRecord>, JournalError> {
        let since = ts(since);
        self.fills_where(
            "broker_order_id IN (SELECT broker_order_id FROM fills WHERE at >= ?1)",
            &[&since],
        )
    }

    /// The account samples from `from` on, oldest first.
    pub fn equity_samples(&self, from: &DateTime<Utc>) -> Result<Vec<EquitySample>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT at, equity, cash, gross_exposure, net_exposure FROM equity WHERE at >= ?1 ORDER BY at")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([ts(from)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (at, equity, cash, gross, net) = row.map_err(|e| self.err(e))?;
            let corrupt =
                |what: &str| JournalError::Corrupt(format!("equity sample at {at}: {what}"));
            let money = |v: &str, what: &str| Decimal::from_str(v).map_err(|_| corrupt(what));
            out.push(EquitySample {
                at: DateTime::parse_from_rfc3339(&at)
                    .map_err(|_| corrupt("time"))?
                    .with_timezone(&Utc),
                equity: money(&equity, "equity")?,
                cash: money(&cash, "cash")?,
                gross_exposure: money(&gross, "gross exposure")?,
                net_exposure: money(&net, "net exposure")?,
            });
        }
        Ok(out)
    }

    /// Whether nothing was ever recorded here (no run, no audited event).
    pub fn is_new(&self) -> Result<bool, JournalError> {
        let used: bool = self
            .conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM audit) OR EXISTS(SELECT 1 FROM meta WHERE key = 'run')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(!used)
    }

    /// When the last fill was made (an adjustment for a corporate action is not a fill).
    pub fn last_fill_at(&self) -> Result<Option<DateTime<Utc>>, JournalError> {
        let at: Option<String> = self
            .conn
            .query_row(
                "SELECT MAX(at) FROM fills WHERE client_order_id != ?1",
                [CORPORATE_ACTION],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        at.map(|at| {
            DateTime::parse_from_rfc3339(&at)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| JournalError::Corrupt(format!("fill time {at:?}")))
        })
        .transpose()
    }

    /// The position per symbol from every fill (signed), summed row by row: memory does not
    /// grow with the number of fills.
    pub fn positions(&self) -> Result<BTreeMap<String, Decimal>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT symbol, side, qty FROM fills")
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        let mut out: BTreeMap<String, Decimal> = BTreeMap::new();
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let symbol: String = r.get(0).map_err(|e| self.err(e))?;
            let side: String = r.get(1).map_err(|e| self.err(e))?;
            let qty: String = r.get(2).map_err(|e| self.err(e))?;
            let qty = Decimal::from_str(&qty)
                .map_err(|_| JournalError::Corrupt(format!("fill of {symbol}: qty {qty:?}")))?;
            let signed = if side == "buy" { qty } else { -qty };
            let p = out.entry(symbol).or_default();
            *p = p.saturating_add(signed);
        }
        Ok(out)
    }

    fn fills_where(
        &self,
        condition: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<FillRecord>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT execution_id, client_order_id, broker_order_id, symbol, side, qty, price, at FROM fills WHERE {condition} ORDER BY at, execution_id"))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (execution_id, client_order_id, broker_order_id, symbol, side, qty, price, at) =
                row.map_err(|e| self.err(e))?;
            let corrupt =
                |what: &str| JournalError::Corrupt(format!("fill {execution_id}: {what}"));
            out.push(FillRecord {
                qty: Decimal::from_str(&qty).map_err(|_| corrupt("qty"))?,
                price: Decimal::from_str(&price).map_err(|_| corrupt("price"))?,
                at: DateTime::parse_from_rfc3339(&at)
                    .map_err(|_| corrupt("at"))?
                    .with_timezone(&Utc),
                side: if side == "buy" {
                    OrderSide::Buy
                } else {
                    OrderSide::Sell
                },
                execution_id,
                client_order_id,
                broker_order_id,
                symbol,
            });
        }
        Ok(out)
    }

    /// Checks the audit chain; `Ok(n)` records, or the first broken one.
    pub fn verify_audit(&self) -> Result<Result<u64, Broken>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, at, kind, body, prev_hash, hash FROM audit ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(AuditRecord {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    kind: r.get(2)?,
                    body: r.get(3)?,
                    prev_hash: r.get(4)?,
                    hash: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        let mut records = Vec::new();
        for r in rows {
            records.push(r.map_err(|e| self.err(e))?);
        }
        Ok(audit::verify(records))
    }
}
