# Two commands on a fresh machine: `make demo` and `make test`. Both create/refresh .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.oneid-installed

.PHONY: demo test test-fast bench lint format install clean package

install: $(STAMP)

$(STAMP): pyproject.toml demo/pyproject.toml scripts/ensure-java.sh scripts/ensure-redis.sh
	@bash scripts/ensure-java.sh
	@bash scripts/ensure-redis.sh
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "OneID needs Python >= 3.10")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' -e ./demo
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/oneid demo

# serial: on 2 cores two pytest-xdist workers were slower (2013 s vs 1451 s); `pytest -n 2` still
# works (tests/conftest.py keeps modules whole and the demo-warehouse modules on one worker)
test: $(STAMP) lint
	$(BIN)/python -m pytest --durations=15

test-fast: $(STAMP)
	$(BIN)/python -m pytest --fast

bench: $(STAMP)
	$(BIN)/python bench/run.py

package: $(STAMP)
	$(BIN)/python deploy/package.py

lint: $(STAMP)
	$(BIN)/ruff check lib demo tests jobs bench deploy
	$(BIN)/ruff format --check lib demo tests jobs bench deploy

format: $(STAMP)
	$(BIN)/ruff check --fix lib demo tests jobs bench deploy
	$(BIN)/ruff format lib demo tests jobs bench deploy

clean:
	rm -rf warehouse warehouse-harbor-pine demo_data .pytest_cache
