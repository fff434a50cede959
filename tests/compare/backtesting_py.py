"""Our backtest against backtesting.py and vectorbt, trade for trade (issue 16;
`make compare-backtesting`).

The momentum rules with protection off, a fixed notional and fills at the next bar's open, over
the same stored minute bars of one symbol: `traderd backtest` writes trades.csv; here
backtesting.py (event by event) and vectorbt (signals as arrays, `Portfolio.from_signals`)
run the same rules on the same bars with indicators computed as ours are
(EMAs seeded with the first value, as pandas' ewm(adjust=False); RSI on Wilder's alpha 1/n;
each valid once it has seen its period). One difference is modelled, not hidden: our market
orders are day orders, so a signal on a session's last bar expires unfilled at the close;
neither peer knows sessions, so such signals are skipped here too.

Usage: python backtesting_py.py DATA_DIR SYMBOL START END OUR_TRADES_CSV
"""

import sqlite3
import sys

import numpy as np
import pandas as pd
import vectorbt as vbt
from backtesting import Backtest, Strategy

RSI_PERIOD, FAST, SLOW, SIGNAL = 14, 12, 26, 9
RSI_MIN, RSI_MAX, RSI_EXIT = 50.0, 70.0, 75.0
NOTIONAL = 5000.0


def bars(data_dir, symbol, start, end):
    con = sqlite3.connect(f"{data_dir}/history.sqlite")
    rows = con.execute(
        "SELECT t, open, high, low, close, volume FROM bars WHERE symbol = ? AND timeframe = '1Min'"
        " AND t >= ? AND t <= ? ORDER BY t",
        (symbol, int(pd.Timestamp(start, tz="America/New_York").timestamp()),
         int(pd.Timestamp(end, tz="America/New_York").timestamp()) + 86399),
    ).fetchall()
    df = pd.DataFrame(rows, columns=["t", "Open", "High", "Low", "Close", "Volume"])
    for c in ["Open", "High", "Low", "Close", "Volume"]:
        df[c] = df[c].astype(float)
    df.index = pd.to_datetime(df.pop("t"), unit="s", utc=True)
    return df


def ema(x, alpha, period):
    """Seeded with the first value; valid once `period` values were seen (as ours)."""
    out = pd.Series(x).ewm(alpha=alpha, adjust=False).mean().to_numpy().copy()
    out[: period - 1] = np.nan
    return out


def indicators(close):
    fast = ema(close, 2 / (FAST + 1), FAST)
    slow = ema(close, 2 / (SLOW + 1), SLOW)
    macd = fast - slow
    valid = ~np.isnan(macd)
    signal = np.full_like(macd, np.nan)
    first = int(np.argmax(valid))
    signal[first:] = ema(macd[first:], 2 / (SIGNAL + 1), SIGNAL)
    hist = macd - signal
    change = np.diff(close, prepend=close[0])
    up = ema(np.maximum(change, 0), 1 / RSI_PERIOD, RSI_PERIOD)
    down = ema(np.maximum(-change, 0), 1 / RSI_PERIOD, RSI_PERIOD)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = np.where(down == 0, 100.0, 100 - 100 / (1 + up / down))
    rsi[np.isnan(up) | np.isnan(down)] = np.nan
    return hist, rsi


class Momentum(Strategy):
    def init(self):
        close = np.asarray(self.data.Close, dtype=float)
        self.hist, self.rsi = indicators(close)
        self.last_of_day = last_of_day(self.data.index)
        self.prev_hist = None

    def next(self):
        i = len(self.data) - 1
        h, r = self.hist[i], self.rsi[i]
        if np.isnan(h) or np.isnan(r):
            return
        prev, self.prev_hist = self.prev_hist, h
        if self.last_of_day[i]:
            return  # our day order would expire at the close
        if self.position:
            if (prev is not None and prev >= 0 and h < 0) or r > RSI_EXIT:
                self.position.close()
        elif h > 0 and RSI_MIN <= r <= RSI_MAX:
            qty = int(NOTIONAL // self.data.Close[-1])
            if qty > 0:
                self.buy(size=qty)


def last_of_day(index):
    days = index.tz_convert("America/New_York").date
    return np.append(days[1:] != days[:-1], True)


def vectorbt_trades(df):
    """The same rules as arrays: a signal on bar i is an order filled at bar i+1's open."""
    close = df.Close.to_numpy()
    hist, rsi = indicators(close)
    valid = ~np.isnan(hist) & ~np.isnan(rsi)
    prev = np.concatenate([[np.nan], hist[:-1]])
    open_day = valid & ~last_of_day(df.index)
    with np.errstate(invalid="ignore"):
        enter = open_day & (hist > 0) & (rsi >= RSI_MIN) & (rsi <= RSI_MAX)
        leave = open_day & (((prev >= 0) & (hist < 0)) | (rsi > RSI_EXIT))
    qty = np.floor(NOTIONAL / close)
    enter &= qty > 0
    later = lambda a, fill: pd.Series(a, index=df.index).shift(1, fill_value=fill)
    pf = vbt.Portfolio.from_signals(
        df.Close, entries=later(enter, False), exits=later(leave, False), price=df.Open,
        size=later(qty, 0.0), size_type="amount", direction="longonly", accumulate=False,
        init_cash=10_000_000, fees=0, freq="1min")
    t = pf.trades.records_readable
    return t[t.Status == "Closed"]


def compare(symbol, bars_n, mine, name, theirs):
    both = mine & theirs
    total = max(len(mine | theirs), 1)
    print(f"{symbol}: {bars_n} bars; ours {len(mine)} trades, {name} {len(theirs)}; "
          f"identical (entry, exit, qty, prices) {len(both)} = {100 * len(both) / total:.2f} %")
    for t in sorted(mine - theirs)[:5]:
        print("  only ours:", t)
    for t in sorted(theirs - mine)[:5]:
        print(f"  only {name}:", t)


def main():
    data_dir, symbol, start, end, ours_csv = sys.argv[1:6]
    df = bars(data_dir, symbol, start, end)
    stats = Backtest(df, Momentum, cash=10_000_000, commission=0, trade_on_close=False,
                     finalize_trades=False).run()
    theirs = stats._trades
    ours = pd.read_csv(ours_csv)
    ours = ours[ours.symbol == symbol]
    key = lambda t: (pd.Timestamp(t).tz_convert("UTC").isoformat())
    mine = {(key(r.entry_time), key(r.exit_time), int(r.qty), round(float(r.entry_price), 2),
             round(float(r.exit_price), 2)) for r in ours.itertuples()}
    bt = {(key(r.EntryTime), key(r.ExitTime), int(r.Size), round(float(r.EntryPrice), 2),
           round(float(r.ExitPrice), 2)) for r in theirs.itertuples()}
    compare(symbol, len(df), mine, "backtesting.py", bt)
    vt = vectorbt_trades(df)
    vb = {(key(e), key(x), int(q), round(float(p), 2), round(float(c), 2))
          for e, x, q, p, c in zip(vt["Entry Timestamp"], vt["Exit Timestamp"], vt["Size"],
                                   vt["Avg Entry Price"], vt["Avg Exit Price"])}
    compare(symbol, len(df), mine, "vectorbt", vb)


if __name__ == "__main__":
    main()
