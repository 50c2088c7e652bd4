# The README's two commands: `make run` and `make test`. Everything else here serves them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test lint browser servers model

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 needed, found {sys.version.split()[0]}"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(STAMP)

setup: $(STAMP)

model: setup
	$(BIN)/python -m hemato default-model --if-missing || echo "Default model not built; the app starts without it."

run: model
	$(BIN)/python -m streamlit run Home.py --server.port $(PORT)

browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "Installing Debian's chromium for the browser tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; \
	fi

servers:
	@if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || [ ! -x /usr/bin/redis-server ]; then \
		echo "Installing Debian's postgresql and redis-server (the tests start their own servers)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql redis-server; \
	fi

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup browser servers lint
	$(BIN)/python -m pytest
