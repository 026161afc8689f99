# The two commands: `make run` (main job) and `make test` (lint, types, tests).
# torch==2.13.0 is installed first so that no resolver pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint browser clean

$(BIN)/deniable: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/deniable

install: $(BIN)/deniable

run: install
	$(BIN)/deniable run

lint: install
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy

# Headless Chromium renders the HTML report in a test; installed from Debian when missing (root).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		apt-get update -qq >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium is not installed: the report screenshot test will be skipped"

test: lint browser
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
