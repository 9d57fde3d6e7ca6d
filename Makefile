# The commands people run. Each one sets up .venv first if it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test soak test-reliability lint docs docs-update bench bench-scale dist clean postgres chromium screenshots

# Options pass through ARGS: make serve ARGS="--port 9000 --db /tmp/other.db"
serve: $(STAMP)
	$(BIN)/tbhook serve --ui --metrics $(ARGS)

# Four workers (the tests mostly wait on servers and subprocesses), then the few that measure the
# machine itself, alone.
test: $(STAMP) postgres chromium
	$(BIN)/pytest -q -n 4 -m "not slow and not alone"
	$(BIN)/pytest -q -m "alone and not slow"

# A year of traffic through a real receiver with every fault it must survive, in under 10
# minutes (tests/soak.py; a month of it runs in make test).
soak: $(STAMP)
	$(BIN)/python tests/soak.py --days 365 --per-day 300

test-reliability: $(STAMP) postgres chromium
	$(BIN)/pytest -q tests/reliability

# The PostgreSQL tests start a throwaway server of their own with initdb and pg_ctl. As root,
# install Debian's postgresql when they are missing; otherwise those tests skip, saying why.
postgres:
	@if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing Debian's postgresql for the PostgreSQL tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
		else \
			echo "PostgreSQL's initdb and pg_ctl are not installed: the PostgreSQL tests will skip"; \
		fi; \
	fi

# The console's tests drive Debian's chromium through Playwright (never Playwright's own
# browser download). As root, install it when it is missing; otherwise those tests skip.
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing Debian's chromium for the console's browser tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "chromium is not installed: the console's browser tests will skip"; \
		fi; \
	fi

# PNGs of each console page, desktop and 375 px wide, into docs/screenshots/ (for the README).
screenshots: $(STAMP) chromium
	$(BIN)/python docs/screenshots.py docs/screenshots

lint: $(STAMP)
	$(BIN)/pip install -q -e '.[test,dev]'
	$(BIN)/ruff check tbhook tests docs
	$(BIN)/ruff format --check tbhook tests docs
	$(BIN)/mypy tbhook

# The docs site (Sphinx, MyST Markdown), warnings as errors, into docs/_build/html.
docs: $(STAMP)
	$(BIN)/pip install -q -e '.[docs]'
	$(BIN)/sphinx-build -E -W --keep-going -q -b html docs docs/_build/html

# Run every example in the docs again and write its output in (make test checks they agree).
docs-update: $(STAMP)
	cd docs && ../$(BIN)/cog -r -I . *.md ../README.md

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Every figure at 10M events. The database is built once (about 3.5 minutes) and kept in
# bench/out/ for later runs, which take about 2 minutes.
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py

# dist/tbhook-VERSION-py3-none-any.whl, for `pipx install` or `pip install` into a venv (the
# console's templates and assets inside); and one file that runs with `python3 tbhook.pyz` on
# any Python 3.10+: the pure-Python
# dependencies inside; the compiled speed-ups (uvloop, httptools, orjson) cannot be, so the
# file uses asyncio, h11 and the json module instead (`--version` says which).
dist: $(STAMP)
	rm -rf build dist/tbhook.pyz dist/tbhook-*.whl
	$(BIN)/python -m pip wheel -q --no-deps -w dist .
	rm -rf build
	$(BIN)/python -m pip install -q --no-compile --target build/pyz .
	cd build/pyz && rm -rf bin pip pip-* uvloop* httptools* orjson* psycopg* && find . -name '*.so' -delete
	mkdir -p dist
	$(BIN)/python -m zipapp build/pyz -m 'tbhook.cli:app' -p '/usr/bin/env python3' -o dist/tbhook.pyz
	@echo "built dist/tbhook.pyz ($$(du -h dist/tbhook.pyz | cut -f1)) and $$(ls dist/tbhook-*.whl)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
		{ $(PYTHON) -m pip install --user -q virtualenv && $(PYTHON) -m virtualenv $(VENV); }
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) build dist *.egg-info docs/_build
