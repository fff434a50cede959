# traderd — common tasks. `make test` is what CI runs (.ci/run).

CARGO      ?= cargo
PYTHON     ?= python3
SDK_VENV   := target/sdk-venv
TRADERD    := target/debug/traderd

.PHONY: examples all build release test fmt fmt-check clippy unit sdk-test sim check-config clean help fuzz bench bench-load bench-backtest compare-backtesting soak install

all: build

help:
	@echo "make sim          run the simulator on 127.0.0.1:5454 at 60x (no keys needed)"
	@echo "make test         fmt check, clippy -D warnings, every Rust test, alpaca-py conformance"
	@echo "make unit         the Rust tests only"
	@echo "make sdk-test     the alpaca-py conformance suite only"
	@echo "make check-config check config/traderd.toml"
	@echo "make release      optimised build in target/release/traderd"
	@echo "make fuzz         fuzz the stream decoders (nightly; FUZZ_SECONDS per target, default 60)"
	@echo "make bench        criterion micro-benchmarks of the hot path"
	@echo "make bench-load   the release daemon against the simulator's flood: one JSON line per run"
	@echo "make bench-backtest  a year of 100 symbols' minute bars backtested: one JSON line"
	@echo "make compare-backtesting  our backtest against backtesting.py and vectorbt, trade for trade"
	@echo "make install      binary, systemd units, docs, /etc/traderd (DESTDIR, PREFIX=/usr/local)"
	@echo "make soak         the daemon under random faults (SOAK_MINUTES, default 10; docs/supervision.md)"
	@echo "                  SOAK_PROFILE=busy: ordinary trading under the rate limit, nothing may go wrong"

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

# The examples (a strategy of your own in its own binary) build as users build them.
examples:
	$(CARGO) build --examples

test: fmt-check clippy examples unit sdk-test

sim:
	$(CARGO) run --release -- sim --listen 127.0.0.1:5454 --speed 60

check-config:
	$(CARGO) run --quiet -- check-config --config config/traderd.toml

# Fuzzing needs the nightly toolchain and cargo-fuzz (installed here if missing).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := data_frame_json data_frame_msgpack trade_update first_pass
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p tests/fuzz/corpus/$$t; \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
		$(CARGO) +nightly fuzz run --fuzz-dir tests/fuzz $$t tests/fuzz/corpus/$$t tests/fuzz/seeds/$$t \
			-- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 > tests/fuzz/$$t.log 2>&1; status=$$?; \
		grep -E "stat::number_of_executed_units|Done [0-9]+ runs|ERROR|panicked" tests/fuzz/$$t.log; \
		[ $$status -eq 0 ] || { echo "fuzz: $$t failed (see tests/fuzz/$$t.log and tests/fuzz/artifacts/$$t)"; exit $$status; }; \
	done

bench:
	$(CARGO) bench --bench hot_path

# The whole daemon against the simulator's flood (docs/performance.md): one JSON line per run on
# stdout, progress on stderr. BENCH_LOAD_ARGS adds options (traderd bench-load --help).
BENCH_LOAD_ARGS ?=
bench-load:
	@$(CARGO) build --release
	@target/release/traderd bench-load $(BENCH_LOAD_ARGS)

# Our backtest against backtesting.py and vectorbt, trade for trade (tests/compare/; needs PyPI once).
compare-backtesting:
	@$(CARGO) build --release
	@tests/compare/run.sh

# A year of minute bars of 100 symbols (generated once into target/bench-backtest by the
# simulator's model), one backtest on one core and a sweep on all: one JSON line.
bench-backtest:
	@$(CARGO) build --release
	@target/release/traderd bench-backtest $(BENCH_BACKTEST_ARGS)

# make install [DESTDIR=…] [PREFIX=/usr/local]: the binary, both units (pointing at
# $(PREFIX)/bin/traderd), the docs, and /etc/traderd/traderd.toml unless one is there already.
PREFIX      ?= /usr/local
DESTDIR     ?=
INSTALL_BIN ?= target/release/traderd
UNIT_DIR    := $(PREFIX)/lib/systemd/system
DOC_DIR     := $(PREFIX)/share/doc/traderd
install:
	@test -x $(INSTALL_BIN) || $(CARGO) build --release
	install -Dm755 $(INSTALL_BIN) $(DESTDIR)$(PREFIX)/bin/traderd
	install -d $(DESTDIR)$(UNIT_DIR) $(DESTDIR)$(DOC_DIR) $(DESTDIR)/etc/traderd/credentials
	chmod 700 $(DESTDIR)/etc/traderd/credentials
	for u in traderd.service traderd@.service; do \
		sed -e 's#/usr/local/bin/traderd#$(PREFIX)/bin/traderd#g' \
		    -e 's#/usr/local/share/doc/traderd#$(DOC_DIR)#g' systemd/$$u > $(DESTDIR)$(UNIT_DIR)/$$u; \
		chmod 644 $(DESTDIR)$(UNIT_DIR)/$$u; \
	done
	install -m644 docs/operations.md docs/configuration.md docs/supervision.md docs/troubleshooting.md $(DESTDIR)$(DOC_DIR)/
	install -Dm644 config/traderd.toml $(DESTDIR)$(DOC_DIR)/traderd.toml.example
	test -e $(DESTDIR)/etc/traderd/traderd.toml || install -m640 config/traderd.toml $(DESTDIR)/etc/traderd/traderd.toml

SOAK_MINUTES ?= 10
SOAK_PROFILE ?= faults
soak:
	$(CARGO) run --release -- soak --profile $(SOAK_PROFILE) --minutes $(SOAK_MINUTES)

clean:
	$(CARGO) clean
