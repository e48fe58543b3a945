# The two commands of the README: `make demo` and `make test`. Each creates .venv when it is
# missing and installs the project (editable, with its test extra) before running.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check mktme_des tests
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/python -m mktme_des demo

bench: $(STAMP)
	$(BIN)/python -m mktme_des bench

lint: $(STAMP)
	$(BIN)/ruff check mktme_des tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
