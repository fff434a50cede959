"""alpaca-py's StockDataStream (msgpack) and TradingStream, unchanged, against `traderd sim`."""

import json
import threading
import time
import urllib.request

from alpaca.data.live import StockDataStream
from alpaca.data.models import Bar, Quote, Trade
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest
from alpaca.trading.stream import TradingStream

from conftest import KEY, SECRET, wait_for


def run_in_thread(stream):
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    return thread


def stop(stream, thread):
    try:
        stream.stop()
    except Exception:  # the loop may already be gone; the thread is a daemon either way
        pass
    thread.join(timeout=10)


def stats(sim_url):
    with urllib.request.urlopen(f"{sim_url}/_sim/stats", timeout=5) as resp:
        return json.loads(resp.read())


def test_stock_data_stream_receives_trades_quotes_and_bars(sim_url):
    ws = sim_url.replace("http://", "ws://")
    stream = StockDataStream(KEY, SECRET, url_override=f"{ws}/v2/iex")
    got = {"trades": [], "quotes": [], "bars": []}

    async def on_trade(t):
        got["trades"].append(t)

    async def on_quote(q):
        got["quotes"].append(q)

    async def on_bar(b):
        got["bars"].append(b)

    stream.subscribe_trades(on_trade, "AAPL")
    stream.subscribe_quotes(on_quote, "MSFT")
    stream.subscribe_bars(on_bar, "SPY")
    thread = run_in_thread(stream)
    try:
        wait_for("a trade, a quote and a bar", lambda: all(got.values()), within=30)
    finally:
        stop(stream, thread)
    trade, quote, bar = got["trades"][0], got["quotes"][0], got["bars"][0]
    assert isinstance(trade, Trade) and trade.symbol == "AAPL" and trade.price > 0 and trade.size > 0
    assert trade.timestamp.tzinfo is not None, "msgpack timestamps decode to aware datetimes"
    assert isinstance(quote, Quote) and quote.symbol == "MSFT" and 0 < quote.bid_price < quote.ask_price
    assert isinstance(bar, Bar) and bar.symbol == "SPY" and bar.low <= bar.close <= bar.high
    assert bar.trade_count is not None and bar.vwap is not None


def test_trading_stream_receives_a_fill(sim_url):
    ws = sim_url.replace("http://", "ws://")
    stream = TradingStream(KEY, SECRET, url_override=f"{ws}/stream")
    updates = []

    async def on_update(u):
        updates.append(u)

    stream.subscribe_trade_updates(on_update)
    thread = run_in_thread(stream)
    trading = TradingClient(KEY, SECRET, url_override=sim_url)
    try:
        wait_for("the trading stream to connect", lambda: stats(sim_url)["streams"]["trading_connections"] >= 1)
        deadline = time.monotonic() + 30
        # The stream listens right after it connects; keep ordering until a fill comes through.
        while not any(u.event == "fill" for u in updates):
            assert time.monotonic() < deadline, f"no fill event; saw {[u.event for u in updates]}"
            trading.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                    time_in_force=TimeInForce.DAY))
            # Give the stream a moment; if it was not listening yet, the next order will do.
            pause_until = time.monotonic() + 2
            while not any(u.event == "fill" for u in updates) and time.monotonic() < pause_until:
                time.sleep(0.02)
    finally:
        stop(stream, thread)
    fill = next(u for u in updates if u.event == "fill")
    assert fill.order.symbol == "AAPL" and float(fill.order.filled_qty) == 1
    assert fill.price > 0 and fill.qty == 1 and fill.position_qty >= 1
    assert fill.execution_id is not None
