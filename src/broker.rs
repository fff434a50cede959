//! The broker surface the daemon uses, as a trait: what the actors and the daemon hold instead
//! of a concrete client. Alpaca's REST client implements it ([`crate::alpaca::AlpacaClient`]);
//! a second broker is one more implementation, and the backtester can be one over the
//! simulator's matching engine in-process. The surface speaks the wire model of `alpaca::model`
//! (the daemon's view of orders, positions and bars) and [`BrokerError`].
//!
//! The two streams are not here yet: the stream sessions speak Alpaca's WebSocket protocols.

use crate::alpaca::BrokerError;
use crate::alpaca::model::*;
use crate::alpaca::rest::{BarsQuery, CloseAmount, Lane, ListActivities, ListOrders};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use uuid::Uuid;

/// An answer to come from the broker.
pub type BrokerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BrokerError>> + Send + 'a>>;

/// A broker, shared.
pub type BrokerRef = Arc<dyn Broker>;

/// The market's time by the broker's clock (`/v2/clock`, in the exchange's offset), never this
/// machine's (a simulator's market at speed runs ahead of it); this machine's, with a
/// warning, only when the clock cannot be read.
pub async fn market_now(broker: &BrokerRef) -> DateTime<FixedOffset> {
    match broker.get_clock().await {
        Ok(clock) => clock.timestamp,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the broker's clock; taking this machine's time");
            Utc::now().fixed_offset()
        }
    }
}

/// What the daemon asks of a broker. Every call is a request; none is made twice without the
/// implementation saying it is safe (see the Alpaca client's idempotent order submission).
pub trait Broker: Send + Sync {
    /// The same broker with its requests in a background lane of the request budget (account
    /// refreshes, reconciliation): they wait while order-side requests do.
    fn lane(&self, lane: Lane) -> BrokerRef;

    fn get_account(&self) -> BrokerFuture<'_, Account>;
    fn get_clock(&self) -> BrokerFuture<'_, Clock>;
    fn patch_account_configurations<'a>(
        &'a self,
        patch: &'a AccountConfigurationsPatch,
    ) -> BrokerFuture<'a, AccountConfigurations>;

    fn submit_order(&self, request: OrderRequest) -> BrokerFuture<'_, Order>;
    fn get_order(&self, id: Uuid) -> BrokerFuture<'_, Order>;
    fn get_order_by_client_id<'a>(
        &'a self,
        client_order_id: &'a str,
    ) -> BrokerFuture<'a, Option<Order>>;
    fn list_orders<'a>(&'a self, query: &'a ListOrders) -> BrokerFuture<'a, Listing<Order>>;
    fn cancel_order(&self, id: Uuid) -> BrokerFuture<'_, ()>;
    fn cancel_all_orders(&self) -> BrokerFuture<'_, Vec<CancelOrderStatus>>;

    fn list_positions(&self) -> BrokerFuture<'_, Listing<Position>>;
    /// The open position in `symbol`, or `None` if there is none.
    fn get_position<'a>(&'a self, symbol: &'a str) -> BrokerFuture<'a, Option<Position>>;
    fn close_position<'a>(
        &'a self,
        symbol: &'a str,
        amount: CloseAmount,
    ) -> BrokerFuture<'a, Order>;

    fn list_activities<'a>(
        &'a self,
        query: &'a ListActivities,
    ) -> BrokerFuture<'a, Listing<Activity>>;
    fn fills_since(&self, after: Option<DateTime<Utc>>)
    -> BrokerFuture<'_, Listing<TradeActivity>>;

    fn get_bars_page<'a>(&'a self, query: &'a BarsQuery) -> BrokerFuture<'a, BarsPage>;
    fn get_bars<'a>(&'a self, query: &'a BarsQuery) -> BrokerFuture<'a, BarsPage>;
    fn splits<'a>(
        &'a self,
        symbols: &'a [&'a str],
        start: NaiveDate,
        end: NaiveDate,
    ) -> BrokerFuture<'a, Vec<Split>>;
}

impl From<crate::alpaca::AlpacaClient> for BrokerRef {
    fn from(c: crate::alpaca::AlpacaClient) -> Self {
        Arc::new(c)
    }
}

impl Broker for crate::alpaca::AlpacaClient {
    fn lane(&self, lane: Lane) -> BrokerRef {
        Arc::new(crate::alpaca::AlpacaClient::lane(self, lane))
    }
    fn get_account(&self) -> BrokerFuture<'_, Account> {
        Box::pin(crate::alpaca::AlpacaClient::get_account(self))
    }
    fn get_clock(&self) -> BrokerFuture<'_, Clock> {
        Box::pin(crate::alpaca::AlpacaClient::get_clock(self))
    }
    fn patch_account_configurations<'a>(
        &'a self,
        patch: &'a AccountConfigurationsPatch,
    ) -> BrokerFuture<'a, AccountConfigurations> {
        Box::pin(crate::alpaca::AlpacaClient::patch_account_configurations(
            self, patch,
        ))
    }
    fn submit_order(&self, request: OrderRequest) -> BrokerFuture<'_, Order> {
        Box::pin(crate::alpaca::AlpacaClient::submit_order(self, request))
    }
    fn get_order(&self, id: Uuid) -> BrokerFuture<'_, Order> {
        Box::pin(crate::alpaca::AlpacaClient::get_order(self, id))
    }
    fn get_order_by_client_id<'a>(
        &'a self,
        client_order_id: &'a str,
    ) -> BrokerFuture<'a, Option<Order>> {
        Box::pin(crate::alpaca::AlpacaClient::get_order_by_client_id(
            self,
            client_order_id,
        ))
    }
    fn list_orders<'a>(&'a self, query: &'a ListOrders) -> BrokerFuture<'a, Listing<Order>> {
        Box::pin(crate::alpaca::AlpacaClient::list_orders(self, query))
    }
    fn cancel_order(&self, id: Uuid) -> BrokerFuture<'_, ()> {
        Box::pin(crate::alpaca::AlpacaClient::cancel_order(self, id))
    }
    fn cancel_all_orders(&self) -> BrokerFuture<'_, Vec<CancelOrderStatus>> {
        Box::pin(crate::alpaca::AlpacaClient::cancel_all_orders(self))
    }
    fn list_positions(&self) -> BrokerFuture<'_, Listing<Position>> {
        Box::pin(crate::alpaca::AlpacaClient::list_positions(self))
    }
    fn get_position<'a>(&'a self, symbol: &'a str) -> BrokerFuture<'a, Option<Position>> {
        Box::pin(crate::alpaca::AlpacaClient::get_position(self, symbol))
    }
    fn close_position<'a>(
        &'a self,
        symbol: &'a str,
        amount: CloseAmount,
    ) -> BrokerFuture<'a, Order> {
        Box::pin(crate::alpaca::AlpacaClient::close_position(
            self, symbol, amount,
        ))
    }
    fn list_activities<'a>(
        &'a self,
        query: &'a ListActivities,
    ) -> BrokerFuture<'a, Listing<Activity>> {
        Box::pin(crate::alpaca::AlpacaClient::list_activities(self, query))
    }
    fn fills_since(
        &self,
        after: Option<DateTime<Utc>>,
    ) -> BrokerFuture<'_, Listing<TradeActivity>> {
        Box::pin(crate::alpaca::AlpacaClient::fills_since(self, after))
    }
    fn get_bars_page<'a>(&'a self, query: &'a BarsQuery) -> BrokerFuture<'a, BarsPage> {
        Box::pin(crate::alpaca::AlpacaClient::get_bars_page(self, query))
    }
    fn get_bars<'a>(&'a self, query: &'a BarsQuery) -> BrokerFuture<'a, BarsPage> {
        Box::pin(crate::alpaca::AlpacaClient::get_bars(self, query))
    }
    fn splits<'a>(
        &'a self,
        symbols: &'a [&'a str],
        start: NaiveDate,
        end: NaiveDate,
    ) -> BrokerFuture<'a, Vec<Split>> {
        Box::pin(crate::alpaca::AlpacaClient::splits(
            self, symbols, start, end,
        ))
    }
}

/// How many orders are open at the broker (the first 500), entries the daemon cannot model
/// included: cancel-all cancels them, and flat means none of them either.
pub async fn open_order_count(broker: &dyn Broker) -> Result<usize, BrokerError> {
    let listed = broker
        .list_orders(&ListOrders {
            status: Some("open"),
            limit: Some(500),
            ..Default::default()
        })
        .await?;
    Ok(listed.open_count())
}
