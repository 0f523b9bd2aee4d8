# Every target bootstraps .venv on a fresh machine (python3.11+, pip).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# First start: a dev settings file, a self-signed certificate and demo@example.test.
run: $(STAMP)
	@test -f run/pochta.toml || $(BIN)/pochta quickstart --dev --dir run demo@example.test > /dev/null
	@cat run/CONNECT.txt
	$(BIN)/pochta --config run/pochta.toml serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/smtp_inbound.py

clean:
	rm -rf $(VENV) run .pytest_cache .mypy_cache .ruff_cache
