# The two commands a new user needs: `make demo` and `make test`.
# Both create or refresh .venv (re-installed whenever pyproject.toml changes) and then run.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-output

# Prefect runs offline and keeps its state inside the project.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90

.PHONY: install demo test lint format pytest bench clean example

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "offset-cube needs Python >= 3.11; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/offset-cube demo --out $(DEMO_OUT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint pytest

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The commented job template, generated from the job model (tests check the committed file matches).
example: install
	$(BIN)/offset-cube config --example > examples/job.yaml

bench: install
	$(BIN)/python bench/track_bench.py

clean:
	rm -rf $(VENV) .prefect .pytest_cache .mypy_cache .ruff_cache $(DEMO_OUT)
