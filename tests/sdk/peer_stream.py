"""alpaca-py's StockDataStream as a peer in `traderd bench-load --peer alpaca-py`.

Subscribes trades, quotes and bars of every symbol with handlers that only count, says
"ready" on stdout once subscribed, and after the bench turns the simulator's flood on, counts
for SECONDS (after a second's warm-up) and prints one JSON line: messages a second, and the
CPU seconds this process spent per million messages. Usage:

    python peer_stream.py WS_URL KEY SECRET SYMBOLS SECONDS

(StockDataStream speaks msgpack only.)
"""

import json
import sys
import threading
import time

from alpaca.data.live import StockDataStream


def main():
    url, key, secret, n, seconds = sys.argv[1:6]
    symbols = [f"S{i:04}" for i in range(int(n))]
    stream = StockDataStream(key, secret, url_override=url, raw_data=False)
    count = [0]

    async def on_any(_):
        count[0] += 1

    stream.subscribe_trades(on_any, *symbols)
    stream.subscribe_quotes(on_any, *symbols)
    stream.subscribe_bars(on_any, *symbols)
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    # Subscribed when the first message of any kind arrives or after the handshake settles.
    time.sleep(3)
    print("ready", flush=True)
    deadline = time.monotonic() + 120
    while count[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)
    c0, p0, t0 = count[0], time.process_time(), time.monotonic()
    time.sleep(float(seconds))
    c1, p1, t1 = count[0], time.process_time(), time.monotonic()
    messages = c1 - c0
    print(json.dumps({
        "msgs_per_s": round(messages / (t1 - t0)),
        "cpu_s_per_million": round((p1 - p0) / messages * 1e6, 2) if messages else None,
    }), flush=True)
    try:
        stream.stop()
    except Exception:  # the loop may be gone already; this process ends either way
        pass


if __name__ == "__main__":
    main()
