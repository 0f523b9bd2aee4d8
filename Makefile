# Every target bootstraps .venv on a fresh machine (python3.11+, pip).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean clients

# Real mail clients the IMAP, POP3 and submission tests drive (Debian packages).
CLIENTS := mbsync offlineimap mutt fetchmail imapfilter msmtp

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

# Installs them with apt-get when missing and we are root (CI is). If that
# cannot be done, it says so and the tests that need them are skipped with
# the same advice: a mirror that is down must not stop the other tests.
clients:
	@missing=""; for c in $(CLIENTS); do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && \
		   (DEBIAN_FRONTEND=noninteractive apt-get install -y -q isync offlineimap3 mutt fetchmail imapfilter msmtp >/dev/null 2>&1 || \
		    (apt-get update -q >/dev/null 2>&1 && \
		     DEBIAN_FRONTEND=noninteractive apt-get install -y -q isync offlineimap3 mutt fetchmail imapfilter msmtp >/dev/null 2>&1)); then \
			echo "installed isync offlineimap3 mutt fetchmail imapfilter msmtp"; \
		else echo "WARNING: missing:$$missing; install isync offlineimap3 mutt fetchmail imapfilter msmtp (apt-get) for the client tests"; fi; \
	fi

test: lint clients
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/smtp_inbound.py

clean:
	rm -rf $(VENV) run .pytest_cache .mypy_cache .ruff_cache
