# The two set-up commands of the README:  `make run`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SPEC   ?= examples/digits.json

.PHONY: install run up test test-fast lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[plot]'
	touch $@

# the test tools (pytest, Playwright, schemathesis, ...) only for `make test`
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[plot,test]'
	touch $@

## run: train the example job on this machine (progress bar, per-epoch metrics, checkpoints under runs/)
run: install
	$(BIN)/trainyard train $(SPEC)

## up: the service on this machine (API + worker + reaper, SQLite, embedded broker); Ctrl-C stops it
up: install
	$(BIN)/trainyard up

## test: the whole test suite, slow tests included
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

## test-fast: the in-process tier, no server processes (under a minute)
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not integration and not slow"

lint: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff check nncore service worker tests bench trainyard

## bench: throughput of nncore vs PyTorch CPU and scikit-learn (installs the bench extra)
bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/core.py

clean:
	rm -rf $(VENV) runs .pytest_cache
