#!/usr/bin/env bash
# `make compare-backtesting`: our backtest against backtesting.py and vectorbt, trade for trade, on the
# simulator's minute bars of three symbols (protection off, fixed notional, fills at the next
# bar's open). Prints one line per symbol with the share of identical trades.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${TRADERD:-target/release/traderd}
VENV=target/compare-venv
if [ ! -x "$VENV/bin/python" ] || [ tests/compare/requirements.txt -nt "$VENV/.installed" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/compare/requirements.txt
    touch "$VENV/.installed"
fi
WORK=$(mktemp -d)
trap 'kill "$SIM" 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$((20000 + RANDOM % 20000))
"$BIN" sim --listen "127.0.0.1:$PORT" --history-sessions 20 > "$WORK/sim.log" 2>&1 &
SIM=$!
for _ in $(seq 100); do
    curl -s "http://127.0.0.1:$PORT/v2/clock" -H 'APCA-API-KEY-ID: x' -H 'APCA-API-SECRET-KEY: x' > /dev/null && break
    sleep 0.1
done
END=$(date -u +%F)
START=$(date -u -d "$END - 25 days" +%F)
APCA_API_DATA_URL="http://127.0.0.1:$PORT" "$BIN" data sync --symbols AAPL,MSFT,SPY \
    --timeframe 1Min --start "$START" --end "$END" --data-dir "$WORK/data" > /dev/null
for S in AAPL MSFT SPY; do
    printf '[trading]\nsymbols = ["%s"]\n[strategy]\nprotection = "none"\nsizing_usd = "5000"\n' "$S" > "$WORK/$S.toml"
    "$BIN" backtest --config "$WORK/$S.toml" --start "$START" --end "$END" --warmup-bars 0 \
        --out "$WORK/$S" --data-dir "$WORK/data" > /dev/null
    "$VENV/bin/python" tests/compare/backtesting_py.py "$WORK/data" "$S" "$START" "$END" "$WORK/$S/trades.csv"
done
