# The commands people run. Each one sets up .venv first if it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test test-reliability lint bench dist clean

# Options pass through ARGS: make serve ARGS="--port 9000 --db /tmp/other.db"
serve: $(STAMP)
	$(BIN)/tbhook serve $(ARGS)

test: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

test-reliability: $(STAMP)
	$(BIN)/pytest -q tests/reliability

lint: $(STAMP)
	$(BIN)/pip install -q -e '.[test,dev]'
	$(BIN)/ruff check tbhook tests
	$(BIN)/ruff format --check tbhook tests
	$(BIN)/mypy tbhook

bench: $(STAMP)
	$(BIN)/python bench/run.py

# One file that runs with `python3 tbhook.pyz` on any Python 3.10+: the pure-Python
# dependencies inside; the compiled speed-ups (uvloop, httptools, orjson) cannot be, so the
# file uses asyncio, h11 and the json module instead (`--version` says which).
dist: $(STAMP)
	rm -rf build dist/tbhook.pyz
	$(BIN)/python -m pip install -q --no-compile --target build/pyz .
	cd build/pyz && rm -rf bin pip pip-* uvloop* httptools* orjson* && find . -name '*.so' -delete
	mkdir -p dist
	$(BIN)/python -m zipapp build/pyz -m 'tbhook.cli:app' -p '/usr/bin/env python3' -o dist/tbhook.pyz
	@echo "built dist/tbhook.pyz ($$(du -h dist/tbhook.pyz | cut -f1))"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
		{ $(PYTHON) -m pip install --user -q virtualenv && $(PYTHON) -m virtualenv $(VENV); }
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) build dist *.egg-info
