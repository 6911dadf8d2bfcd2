# Two commands for a newcomer: `make run` and `make test`. Only Python 3.11+ is needed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP_RUN  := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: run test lint typecheck pytest bench clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[qdrant,watcher]'
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,qdrant,watcher]'
	# msclap's pins (numpy<2, transformers<5) are not what its model code needs: see pyproject
	$(BIN)/pip install --quiet --no-deps msclap==1.3.4
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/insight serve

test: $(STAMP_TEST) browser lint typecheck pytest

# The dashboard's browser tests drive Debian's Chromium and its driver (never a downloaded one).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; \
	fi

lint: $(STAMP_TEST)
	$(BIN)/ruff check insight tests bench
	$(BIN)/ruff format --check insight tests bench

typecheck: $(STAMP_TEST)
	$(BIN)/mypy insight

pytest: $(STAMP_TEST) browser
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP_TEST)
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/storage.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
