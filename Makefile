# The two commands of the README:
#   make run    runs the monitor (against the built-in simulator when there is no accounts.toml)
#   make test   runs ruff, mypy --strict, the import contracts (import-linter, no import circles) and the tests
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# make run PORT=8090: the status page on that port (instead of [web] listen's, or the demo's 8080)
run: $(STAMP)
	$(BIN)/python scripts/run.py $(if $(PORT),--port $(PORT))

lint: $(STAMP)
	$(BIN)/ruff check monitor web tests scripts bench
	$(BIN)/ruff format --check monitor web tests scripts bench
	$(BIN)/mypy monitor web
	$(BIN)/lint-imports --no-cache
	$(BIN)/python scripts/import_cycles.py

# The tests in parallel workers (pytest-xdist): most of the suite waits on loopback servers, subprocesses and
# timers rather than on the CPU, so more workers than cores pay. `make test TEST_WORKERS=0`: one process.
TEST_WORKERS ?= 4

test: lint
	$(BIN)/pytest -n $(TEST_WORKERS)

# The benchmarks (not part of `make test`): each prints its figures against its target.
bench: $(STAMP)
	$(BIN)/python -m bench.cycle
	$(BIN)/python -m bench.ratelimit
	$(BIN)/python -m bench.capacity
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.memory
	$(BIN)/python -m bench.storage
	$(BIN)/python -m bench.web
	$(BIN)/python -m bench.steady
