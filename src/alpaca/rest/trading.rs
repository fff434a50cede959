//! The trading API: account, clock and calendar, assets, activities, orders, positions.

use super::*;

impl AlpacaClient {
    pub async fn get_account(&self) -> Result<Account, BrokerError> {
        self.get::<_, ()>(Api::Trading, "/v2/account", None).await
    }

    pub async fn get_clock(&self) -> Result<Clock, BrokerError> {
        self.get::<_, ()>(Api::Trading, "/v2/clock", None).await
    }

    pub async fn get_calendar(
        &self,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<Vec<CalendarDay>, BrokerError> {
        let q = [("start", start.to_string()), ("end", end.to_string())];
        self.get_list(Api::Trading, "/v2/calendar", Some(&q)).await
    }

    pub async fn list_assets(&self) -> Result<Listing<Asset>, BrokerError> {
        self.get_listing(Api::Trading, "/v2/assets", Some(&[("status", "active")]))
            .await
    }

    pub async fn get_asset(&self, symbol: &str) -> Result<Asset, BrokerError> {
        self.get::<_, ()>(
            Api::Trading,
            &format!("/v2/assets/{}", path_segment(symbol)?),
            None,
        )
        .await
    }

    pub async fn get_account_configurations(&self) -> Result<AccountConfigurations, BrokerError> {
        self.get::<_, ()>(Api::Trading, "/v2/account/configurations", None)
            .await
    }

    pub async fn patch_account_configurations(
        &self,
        patch: &AccountConfigurationsPatch,
    ) -> Result<AccountConfigurations, BrokerError> {
        let path = "/v2/account/configurations";
        // Setting the same configuration twice has the same effect: safe to repeat.
        let resp = self
            .execute::<_, ()>(Method::PATCH, Api::Trading, path, None, Some(patch), true)
            .await?;
        decode(&format!("PATCH {path}"), &resp)
    }

    /// One page of account activities.
    pub async fn list_activities(
        &self,
        query: &ListActivities,
    ) -> Result<Listing<Activity>, BrokerError> {
        self.get_listing(Api::Trading, "/v2/account/activities", Some(query))
            .await
    }

    /// Every FILL activity after `after`, oldest first, following `page_token` paging.
    pub async fn fills_since(
        &self,
        after: Option<DateTime<Utc>>,
    ) -> Result<Listing<TradeActivity>, BrokerError> {
        let mut query = ListActivities {
            activity_types: Some("FILL".into()),
            after,
            direction: Some("asc"),
            page_size: Some(100),
            ..Default::default()
        };
        let mut fills = Listing::default();
        loop {
            let page = self.list_activities(&query).await?;
            let full = page.len() >= 100;
            let last_id = page.last_id.clone();
            let page = page.filter_map(|a| match a {
                Activity::Trade(t) => Some(t),
                Activity::NonTrade(_) => None,
            });
            fills.items.extend(page.items);
            fills.foreign.extend(page.foreign);
            match last_id {
                Some(id) if full => query.page_token = Some(id),
                _ => break,
            }
        }
        Ok(fills)
    }

    // ----- orders --------------------------------------------------------------------------

    /// Submits an order without ever creating it twice.
    ///
    /// The request gets a client order id if it has none. After an ambiguous failure (timeout,
    /// broken connection, 5xx, unreadable answer) the client asks
    /// `GET /v2/orders:by_client_order_id` and returns the order if the broker has it; only if
    /// the broker says it is absent is the POST sent again. A 429 means the broker did not take
    /// the order, so it is retried after the broker's reset. A refusal (4xx) is returned as is.
    pub async fn submit_order(&self, mut request: OrderRequest) -> Result<Order, BrokerError> {
        let client_order_id = request
            .client_order_id
            .get_or_insert_with(|| Uuid::new_v4().to_string())
            .clone();
        if client_order_id.is_empty() || client_order_id.len() > MAX_CLIENT_ORDER_ID_LEN {
            return Err(BrokerError::InvalidRequest(format!(
                "client_order_id must be 1 to {MAX_CLIENT_ORDER_ID_LEN} characters, got {}",
                client_order_id.len()
            )));
        }
        let path = "/v2/orders";
        let endpoint = format!("POST {path}");
        let max_attempts = u32::try_from(self.settings.max_retries)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let mut delays = self.backoff().without_max_times().build();
        let mut was_ambiguous = false;
        let mut last_error: Option<BrokerError> = None;
        for attempt in 1..=max_attempts {
            let outcome = self
                .send_once::<_, ()>(Method::POST, Api::Trading, path, None, Some(&request))
                .await
                .and_then(|resp| decode::<Order>(&endpoint, &resp));
            let err = match outcome {
                Ok(order) => return Ok(order),
                Err(err) => err,
            };
            let delay = delays.next().unwrap_or(self.settings.retry_max_delay);
            match &err {
                BrokerError::RateLimited { retry_after, .. } => {
                    tracing::warn!(client_order_id = %client_order_id, attempt, "order POST rate limited; the broker did not take it");
                    tokio::time::sleep(retry_after.map_or(delay, |w| w.max(delay))).await;
                    last_error = Some(err);
                    continue;
                }
                // A refusal after an ambiguous attempt may be the broker refusing a duplicate of
                // an order it did take: look before reporting.
                BrokerError::Api { status, .. }
                    if *status < 500 && !(was_ambiguous && *status == 422) =>
                {
                    return Err(err);
                }
                BrokerError::Connectivity {
                    kind: crate::alpaca::error::ConnectivityKind::Connect,
                    ..
                } => {
                    // Nothing was sent; safe to try again.
                    tracing::warn!(client_order_id = %client_order_id, attempt, error = %err, "cannot connect to submit order; retrying");
                    last_error = Some(err);
                    tokio::time::sleep(delay).await;
                    continue;
                }
                _ => {}
            }
            was_ambiguous = true;
            self.stats
                .order_lookups_after_ambiguity
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(client_order_id = %client_order_id, attempt, error = %err, "order POST outcome unknown; asking the broker");
            match self.get_order_by_client_id(&client_order_id).await {
                Ok(Some(order)) => {
                    tracing::info!(client_order_id = %client_order_id, order_id = %order.id, "the broker has the order; not resending");
                    return Ok(order);
                }
                Ok(None) => {
                    if matches!(err, BrokerError::Api { status: 422, .. }) {
                        return Err(err);
                    }
                    tracing::warn!(client_order_id = %client_order_id, attempt, "the broker does not have the order; resending");
                    last_error = Some(err);
                    tokio::time::sleep(delay).await;
                }
                Err(lookup) => {
                    return Err(BrokerError::Ambiguous {
                        client_order_id,
                        attempts: attempt,
                        detail: format!("{err}; lookup failed: {lookup}"),
                    });
                }
            }
        }
        // Every attempt ended "not taken": connect refused, 429, or looked up and absent. The
        // order is known not to exist at the broker, so the last error says why.
        Err(last_error.unwrap_or(BrokerError::Ambiguous {
            client_order_id,
            attempts: max_attempts,
            detail: "no attempt was made".into(),
        }))
    }

    /// The order with this client order id, or `None` if the broker has none.
    pub async fn get_order_by_client_id(
        &self,
        client_order_id: &str,
    ) -> Result<Option<Order>, BrokerError> {
        let q = [("client_order_id", client_order_id)];
        match self
            .get(Api::Trading, "/v2/orders:by_client_order_id", Some(&q))
            .await
        {
            Ok(order) => Ok(Some(order)),
            Err(BrokerError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn list_orders(&self, query: &ListOrders) -> Result<Listing<Order>, BrokerError> {
        self.get_listing(Api::Trading, "/v2/orders", Some(query))
            .await
    }

    pub async fn get_order(&self, id: Uuid) -> Result<Order, BrokerError> {
        self.get::<_, ()>(Api::Trading, &format!("/v2/orders/{id}"), None)
            .await
    }

    /// Replaces an order; returns the new order (the old one becomes `replaced`). Not retried:
    /// a second PATCH would target an order that is already replaced.
    pub async fn replace_order(
        &self,
        id: Uuid,
        request: &ReplaceOrderRequest,
    ) -> Result<Order, BrokerError> {
        let path = format!("/v2/orders/{id}");
        let resp = self
            .execute::<_, ()>(
                Method::PATCH,
                Api::Trading,
                &path,
                None,
                Some(request),
                false,
            )
            .await?;
        decode(&format!("PATCH {path}"), &resp)
    }

    /// Cancels one order (204). Safe to repeat.
    pub async fn cancel_order(&self, id: Uuid) -> Result<(), BrokerError> {
        let path = format!("/v2/orders/{id}");
        self.execute::<(), ()>(Method::DELETE, Api::Trading, &path, None, None, true)
            .await?;
        Ok(())
    }

    /// Cancels every open order; the 207 body says what happened to each.
    pub async fn cancel_all_orders(&self) -> Result<Vec<CancelOrderStatus>, BrokerError> {
        let resp = self
            .execute::<(), ()>(Method::DELETE, Api::Trading, "/v2/orders", None, None, true)
            .await?;
        decode_or_empty("DELETE /v2/orders", &resp)
    }

    // ----- positions -----------------------------------------------------------------------

    pub async fn list_positions(&self) -> Result<Listing<Position>, BrokerError> {
        self.get_listing::<_, ()>(Api::Trading, "/v2/positions", None)
            .await
    }

    /// The open position in `symbol`, or `None` if there is none.
    pub async fn get_position(&self, symbol: &str) -> Result<Option<Position>, BrokerError> {
        match self
            .get::<_, ()>(
                Api::Trading,
                &format!("/v2/positions/{}", path_segment(symbol)?),
                None,
            )
            .await
        {
            Ok(p) => Ok(Some(p)),
            Err(BrokerError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Liquidates a position. Closing all of it is safe to repeat (a repeat closes what is
    /// left); a partial close is not retried, since a repeat would sell twice.
    pub async fn close_position(
        &self,
        symbol: &str,
        amount: CloseAmount,
    ) -> Result<Order, BrokerError> {
        let path = format!("/v2/positions/{}", path_segment(symbol)?);
        let (query, idempotent): (Vec<(&str, String)>, bool) = match amount {
            CloseAmount::All => (vec![], true),
            CloseAmount::Qty(q) => (vec![("qty", q.to_string())], false),
            CloseAmount::Percentage(p) => (vec![("percentage", p.to_string())], false),
        };
        let resp = self
            .execute::<(), _>(
                Method::DELETE,
                Api::Trading,
                &path,
                Some(&query),
                None,
                idempotent,
            )
            .await?;
        decode(&format!("DELETE {path}"), &resp)
    }

    /// Liquidates every position, optionally cancelling open orders first; 207 per symbol.
    pub async fn close_all_positions(
        &self,
        cancel_orders: bool,
    ) -> Result<Vec<ClosePositionStatus>, BrokerError> {
        let q = [("cancel_orders", cancel_orders)];
        let resp = self
            .execute::<(), _>(
                Method::DELETE,
                Api::Trading,
                "/v2/positions",
                Some(&q),
                None,
                true,
            )
            .await?;
        decode_or_empty("DELETE /v2/positions", &resp)
    }

    // ----- market data ---------------------------------------------------------------------
}
