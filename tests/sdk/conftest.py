"""Starts `traderd sim` for the alpaca-py conformance suite.

The binary comes from $TRADERD_BIN (the Makefile sets it). The simulator listens on a free
loopback port, printed on the first line of its stdout, and requires one key pair.
"""

import json
import os
import subprocess
import time
import urllib.request

import pytest

KEY = "SDKTESTKEY"
SECRET = "sdk-test-secret"


@pytest.fixture(scope="session")
def sim_url():
    binary = os.environ.get("TRADERD_BIN", "target/debug/traderd")
    proc = subprocess.Popen(
        [binary, "sim", "--listen", "127.0.0.1:0", "--speed", "60", "--seed", "3",
         "--history-sessions", "10", "--rate-limit", "0", "--key", KEY, "--secret", SECRET],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening on http://" in line, f"unexpected first line from traderd sim: {line!r}"
        url = line.split("listening on ")[1].split()[0]
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(autouse=True)
def fresh_account(sim_url):
    """Every test starts with a fresh account (the market keeps running)."""
    req = urllib.request.Request(f"{sim_url}/_sim/reset", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def sim_state(sim_url):
    with urllib.request.urlopen(f"{sim_url}/_sim/state", timeout=5) as resp:
        return json.loads(resp.read())


def wait_for(what, check, within=10.0):
    """Polls `check` until it returns something truthy, failing after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
