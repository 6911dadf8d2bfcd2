# Two commands for a newcomer: `make run` and `make test`. Only Python 3.11+ is needed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP_RUN  := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: run test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[qdrant,watcher]'
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,qdrant,watcher]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/insight serve

test: $(STAMP_TEST) lint typecheck pytest

lint: $(STAMP_TEST)
	$(BIN)/ruff check insight tests bench
	$(BIN)/ruff format --check insight tests bench

typecheck: $(STAMP_TEST)
	$(BIN)/mypy insight

pytest: $(STAMP_TEST)
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP_TEST)
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/storage.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
