# The commands people run. Each one sets up .venv first if it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test test-reliability lint bench clean

serve: $(STAMP)
	$(BIN)/tbhook serve

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

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
		{ $(PYTHON) -m pip install --user -q virtualenv && $(PYTHON) -m virtualenv $(VENV); }
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
