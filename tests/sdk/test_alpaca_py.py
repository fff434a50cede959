"""The official SDK alpaca-py, unchanged, against `traderd sim`.

Everything goes through alpaca-py's pydantic models (not raw_data), so a field the simulator
gets wrong fails validation here exactly as it would for a user of the SDK.
"""

from datetime import date, datetime, timedelta, timezone

import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import (StockBarsRequest, StockLatestQuoteRequest,
                                  StockLatestTradeRequest, StockSnapshotRequest)
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import (AssetExchange, OrderClass, OrderSide, OrderStatus,
                                  OrderType, QueryOrderStatus, TimeInForce)
from alpaca.trading.requests import (ClosePositionRequest, GetCalendarRequest,
                                     GetOrdersRequest, LimitOrderRequest, MarketOrderRequest,
                                     ReplaceOrderRequest, StopLossRequest, StopOrderRequest,
                                     TakeProfitRequest)

from conftest import KEY, SECRET, sim_state, wait_for


@pytest.fixture
def trading(sim_url):
    return TradingClient(KEY, SECRET, url_override=sim_url)


@pytest.fixture
def data(sim_url):
    return StockHistoricalDataClient(KEY, SECRET, url_override=sim_url)


def last_price(data, symbol):
    return float(data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols=symbol))[symbol].price)


def test_account_clock_calendar_asset(trading):
    account = trading.get_account()
    assert account.status.value == "ACTIVE"
    assert float(account.cash) == 100000.0
    assert float(account.equity) == 100000.0

    clock = trading.get_clock()
    assert clock.is_open
    assert clock.next_close > clock.timestamp

    today = clock.timestamp.date()
    days = trading.get_calendar(GetCalendarRequest(start=today - timedelta(days=10), end=today))
    # Eleven calendar days, both ends included: seven to nine weekdays, less up to two
    # exchange holidays (Thanksgiving week has one; Christmas to New Year two).
    assert 5 <= len(days) <= 9, [d.date for d in days]
    assert all(d.date.weekday() < 5 for d in days), [d.date for d in days]
    # Sessions close at 16:00, or at 13:00 on the half days (the day after Thanksgiving,
    # Christmas Eve, the day before Independence Day).
    half_days = {
        date(2024, 7, 3), date(2024, 11, 29), date(2024, 12, 24),
        date(2025, 7, 3), date(2025, 11, 28), date(2025, 12, 24),
        date(2026, 11, 27), date(2026, 12, 24), date(2027, 11, 26),
    }
    assert all(d.open.hour == 9 and d.open.minute == 30 for d in days)
    assert all(d.close.hour == (13 if d.date in half_days else 16) for d in days), [
        (d.date, d.close) for d in days
    ]

    aapl = trading.get_asset("AAPL")
    assert aapl.symbol == "AAPL" and aapl.exchange == AssetExchange.NASDAQ and aapl.tradable
    with pytest.raises(APIError) as err:
        trading.get_asset("NOPE")
    assert err.value.status_code == 404


def test_submit_market_limit_stop_and_bracket(trading, data):
    market = trading.submit_order(MarketOrderRequest(symbol="AAPL", qty=5, side=OrderSide.BUY,
                                                     time_in_force=TimeInForce.DAY))
    assert market.symbol == "AAPL" and market.type == OrderType.MARKET
    filled = wait_for("the market order to fill",
                      lambda: (o := trading.get_order_by_id(market.id)).status == OrderStatus.FILLED and o)
    assert float(filled.filled_qty) == 5 and float(filled.filled_avg_price) > 0

    price = last_price(data, "MSFT")
    limit = trading.submit_order(LimitOrderRequest(symbol="MSFT", qty=1.5, side=OrderSide.BUY,
                                                   time_in_force=TimeInForce.DAY,
                                                   limit_price=round(price * 0.8, 2)))
    assert limit.status in (OrderStatus.NEW, OrderStatus.ACCEPTED)
    assert float(limit.limit_price) == round(price * 0.8, 2)

    stop = trading.submit_order(StopOrderRequest(symbol="AAPL", qty=2, side=OrderSide.SELL,
                                                 time_in_force=TimeInForce.GTC,
                                                 stop_price=round(last_price(data, "AAPL") * 0.7, 2)))
    assert stop.type == OrderType.STOP

    spy = last_price(data, "SPY")
    bracket = trading.submit_order(MarketOrderRequest(
        symbol="SPY", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.GTC,
        order_class=OrderClass.BRACKET,
        take_profit=TakeProfitRequest(limit_price=round(spy * 1.2, 2)),
        stop_loss=StopLossRequest(stop_price=round(spy * 0.8, 2))))
    assert bracket.order_class == OrderClass.BRACKET
    assert len(bracket.legs) == 2
    woke = wait_for("the bracket legs to wake", lambda: all(
        leg.status == OrderStatus.NEW for leg in trading.get_order_by_id(bracket.id).legs or []))
    assert woke


def test_order_queries_replace_and_cancel(trading, data):
    price = last_price(data, "GOOGL")
    order = trading.submit_order(LimitOrderRequest(symbol="GOOGL", qty=1, side=OrderSide.BUY,
                                                   time_in_force=TimeInForce.GTC,
                                                   limit_price=round(price * 0.5, 2),
                                                   client_order_id="sdk-limit-1"))
    assert trading.get_order_by_id(order.id).id == order.id
    assert trading.get_order_by_client_id("sdk-limit-1").id == order.id
    open_orders = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, nested=True))
    assert [o.id for o in open_orders] == [order.id]

    replaced = trading.replace_order_by_id(order.id, ReplaceOrderRequest(qty=2, limit_price=round(price * 0.4, 2)))
    assert replaced.id != order.id and str(replaced.replaces) == str(order.id)
    assert trading.get_order_by_id(order.id).status == OrderStatus.REPLACED

    trading.cancel_order_by_id(replaced.id)
    assert trading.get_order_by_id(replaced.id).status == OrderStatus.CANCELED
    with pytest.raises(APIError) as err:
        trading.cancel_order_by_id(replaced.id)
    assert err.value.status_code == 422 and err.value.code == 42210000

    for k in range(3):
        trading.submit_order(LimitOrderRequest(symbol="GOOGL", qty=1, side=OrderSide.BUY,
                                               time_in_force=TimeInForce.DAY,
                                               limit_price=round(price * 0.5, 2) - k))
    cancelled = trading.cancel_orders()
    assert len(cancelled) == 3 and all(c.status == 200 for c in cancelled)
    closed = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED))
    assert len(closed) == 5


def test_positions_open_close_and_close_all(trading, data):
    for symbol in ("AAPL", "MSFT", "AMD"):
        trading.submit_order(MarketOrderRequest(symbol=symbol, qty=10, side=OrderSide.BUY,
                                                time_in_force=TimeInForce.DAY))
    positions = wait_for("three positions", lambda: len(p := trading.get_all_positions()) == 3 and p)
    assert {p.symbol for p in positions} == {"AAPL", "MSFT", "AMD"}
    aapl = trading.get_open_position("AAPL")
    assert float(aapl.qty) == 10 and aapl.side.value == "long"

    closing = trading.close_position("AAPL", ClosePositionRequest(qty="4"))
    assert closing.side == OrderSide.SELL and float(closing.qty) == 4
    wait_for("the partial close", lambda: float(trading.get_open_position("AAPL").qty) == 6)

    trading.submit_order(LimitOrderRequest(symbol="AMD", qty=10, side=OrderSide.SELL,
                                           time_in_force=TimeInForce.GTC, limit_price=9999))
    results = trading.close_all_positions(cancel_orders=True)
    assert len(results) == 3 and all(r.status == 200 for r in results)
    wait_for("flat", lambda: trading.get_all_positions() == [])
    assert trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN)) == []
    with pytest.raises(APIError) as err:
        trading.get_open_position("AAPL")
    assert err.value.status_code == 404


def test_refusals_carry_alpacas_codes(trading, sim_url):
    trading.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                            time_in_force=TimeInForce.DAY, client_order_id="dup-1"))
    with pytest.raises(APIError) as dup:
        trading.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                time_in_force=TimeInForce.DAY, client_order_id="dup-1"))
    assert dup.value.status_code == 422 and "unique" in dup.value.message
    with pytest.raises(APIError) as poor:
        trading.submit_order(MarketOrderRequest(symbol="SPY", qty=100000, side=OrderSide.BUY,
                                                time_in_force=TimeInForce.DAY))
    assert poor.value.status_code == 403 and poor.value.code == 40310000
    assert len(sim_state(sim_url)["orders"]) == 1


def test_stock_bars_for_several_symbols_across_pages(data):
    start = datetime.now(timezone.utc) - timedelta(days=20)
    bars = data.get_stock_bars(StockBarsRequest(symbol_or_symbols=["AAPL", "MSFT", "SPY"],
                                                timeframe=TimeFrame.Minute, start=start))
    total = sum(len(v) for v in bars.data.values())
    # 10 sessions of 390 minute bars for three symbols: more than one 10,000-bar page.
    assert total > 10000, total
    assert set(bars.data) == {"AAPL", "MSFT", "SPY"}
    for symbol, series in bars.data.items():
        stamps = [b.timestamp for b in series]
        assert stamps == sorted(stamps) and len(stamps) == len(set(stamps)), symbol
        assert all(b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close) for b in series)
        assert all(b.trade_count is not None and b.vwap is not None for b in series)

    daily = data.get_stock_bars(StockBarsRequest(symbol_or_symbols="QQQ", timeframe=TimeFrame.Day,
                                                 start=datetime.now(timezone.utc) - timedelta(days=90)))
    assert len(daily.data["QQQ"]) >= 55


def test_latest_trade_quote_and_snapshot(data):
    trades = data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols=["AAPL", "MSFT"]))
    assert set(trades) == {"AAPL", "MSFT"} and trades["AAPL"].price > 0 and trades["AAPL"].size > 0
    quotes = data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="AAPL"))
    q = quotes["AAPL"]
    assert 0 < q.bid_price < q.ask_price and q.bid_size > 0
    snaps = data.get_stock_snapshot(StockSnapshotRequest(symbol_or_symbols=["AAPL", "SPY"]))
    s = snaps["SPY"]
    assert s.latest_trade.price > 0 and s.latest_quote.ask_price > 0
    assert s.daily_bar.timestamp > s.previous_daily_bar.timestamp
