# The two entry points of the README: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test test-unit lint install interop-deps system-deps bench clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(INSTALLED)

# One virtualenv per GenAI instrumentation library for tests/test_interop.py (from PyPI; reused
# while its pinned requirements are unchanged).
interop-deps: install
	$(BIN)/python scripts/interop.py install

# Headless Chromium for the dashboard's screenshot tests (Debian's package; needs root).
system-deps:
	@bash scripts/system-deps.sh

demo: install
	$(BIN)/cutover demo

# Lint and format are checked before any test runs, so CI fails fast on them.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Both tiers: the unit tier (fakes, seconds) first, then the integration tier (real broker and chDB).
test: lint system-deps interop-deps
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

test-unit: lint
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

bench: install
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	-$(BIN)/cutover kafka stop
	rm -rf $(VENV) .cutover
