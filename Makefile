# traderd — common tasks. `make test` is what CI runs (.ci/run).

CARGO      ?= cargo
PYTHON     ?= python3
SDK_VENV   := target/sdk-venv
TRADERD    := target/debug/traderd

.PHONY: all build release test fmt fmt-check clippy unit sdk-test sim check-config clean help

all: build

help:
	@echo "make sim          run the simulator on 127.0.0.1:5454 at 60x (no keys needed)"
	@echo "make test         fmt check, clippy -D warnings, every Rust test, alpaca-py conformance"
	@echo "make unit         the Rust tests only"
	@echo "make sdk-test     the alpaca-py conformance suite only"
	@echo "make check-config check config/traderd.toml"
	@echo "make release      optimised build in target/release/traderd"

build:
	$(CARGO) build --all-targets

release:
	$(CARGO) build --release

fmt:
	$(CARGO) fmt

fmt-check:
	$(CARGO) fmt --check

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

# nextest runs each test in its own process; fall back to cargo test where it is missing.
unit:
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --no-fail-fast; \
	else \
		$(CARGO) test --no-fail-fast; \
	fi

# The official Python SDK, pinned in tests/sdk/requirements.txt, in a virtualenv of our own.
$(SDK_VENV)/.installed: tests/sdk/requirements.txt
	$(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
	touch $@

sdk-test: $(SDK_VENV)/.installed
	$(CARGO) build --bin traderd
	TRADERD_BIN=$(TRADERD) $(SDK_VENV)/bin/python -m pytest -q tests/sdk

test: fmt-check clippy unit sdk-test

sim:
	$(CARGO) run --release -- sim --listen 127.0.0.1:5454 --speed 60

check-config:
	$(CARGO) run --quiet -- check-config --config config/traderd.toml

clean:
	$(CARGO) clean
