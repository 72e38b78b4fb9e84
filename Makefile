# ars-engine: `make demo` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := ffmpeg espeak-ng sox sip-tester baresip chromium postgresql fonts-nanum
# command that proves each package is present (same order as APT_PACKAGES)
APT_COMMANDS := ffmpeg espeak-ng sox sipp baresip chromium
# Packages whose programs are not on PATH: a file that proves each is present (postgresql: the
# PostgreSQL 15 server the store tests start, tests/pg_peer.py; fonts-nanum: Hangul glyphs, without
# which Chromium draws the console's Korean as empty boxes in the browser tests' screenshots).
APT_FILES := /usr/lib/postgresql/15/bin/pg_ctl /usr/share/fonts/truetype/nanum/NanumGothic.ttf
# Runtime libraries of the Asterisk 22 build the integration tests unpack from ../shared/asterisk
# (its README); plain Debian libraries, checked with dpkg.
APT_LIBS := libssl3 libjansson4 libxml2 libxslt1.1 libsqlite3-0 libuuid1 libedit2 libsrtp2-1

.PHONY: setup system-packages demo test lint bench bench-quick reliability fuzz clean
BENCH_ARGS ?=

setup: system-packages $(STAMP)

# Installs the system packages only when one of their commands is missing (idempotent).
system-packages:
	@missing=""; for c in $(APT_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	for f in $(APT_FILES); do test -e $$f || missing="$$missing $$f"; done; \
	for p in $(APT_LIBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing system packages (missing:$$missing)"; \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) $(APT_LIBS) >/dev/null; \
	else echo "setup: system packages present ($(APT_PACKAGES) $(APT_LIBS))"; fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

# The simulated matrix (28 paths, seconds), then the whole service over HTTP: the engine (SQLite,
# embedded SIP), QA softphones, a demo tenant, the seven scenarios + busy + no answer triggered
# with curl-equivalent requests, signed webhooks checked by a demo receiver.
demo: setup
	$(BIN)/ars-engine demo
	$(BIN)/ars-engine demo --http

test: setup
	$(BIN)/python -m pytest -q

# The fault-injection suite at full size (docs/reliability.md): kill -9 of nodes 100 times,
# PostgreSQL outages, webhook receiver down 3 min, lossy SIP/RTP, full recordings disk, AMI cuts
# (with ../shared/asterisk). About 30 min; `make test` runs the same faults with small counts.
reliability: setup
	$(BIN)/python -m reliability.run

# Coverage-guided fuzzing of the parsers (docs/fuzzing.md): 10^6 inputs per target, two targets
# at a time; crash inputs and libFuzzer logs in test-artifacts/fuzz/<target>/. `make test` runs
# 20,000 inputs per target.
fuzz: setup
	$(BIN)/python -m fuzz.run --runs 1000000 --jobs 2

lint: setup
	$(BIN)/ruff check ars_engine tests bench reliability fuzz
	$(BIN)/mypy ars_engine reliability fuzz

# Every benchmark, each against its peer measured in the same run (bench/README.md keeps the
# table with dates); a summary at the end. bench-quick: short smoke runs of the same.
bench: setup
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

bench-quick: setup
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python bench/run_all.py --quick

clean:
	rm -rf $(VENV) prompts/.cache .pytest_cache .hypothesis
