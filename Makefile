# `make demo` and `make test` work on a fresh machine with only Python 3.11: they create .venv,
# install torch 2.13.0 (the CPU wheel) first so nothing pulls a CUDA build, then the pinned rest.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.anxin-installed
export GRADIO_ANALYTICS_ENABLED := False
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-slow test-browser lint format browser llamacpp clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[eval,serve,web,dev]"
	touch $@

demo: install
	$(BIN)/anxin demo

test: install browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

# The llama.cpp backend (about 5x faster decoding on a CPU): llama-cpp-python has no Linux
# wheel on PyPI, so pip compiles llama.cpp once (about 4 minutes on 2 cores).
llamacpp: install
	$(BIN)/pip install -q -c constraints.txt -e ".[llamacpp]"

test-slow: install
	$(BIN)/python -m pytest -q --run-slow

# Debian's Chromium for the web UI test; skipped quietly where apt is unavailable.
browser:
	@command -v chromium >/dev/null 2>&1 || ( command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-zenhei >/dev/null) \
	  || echo "chromium not installed: the browser test will be skipped" )

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
