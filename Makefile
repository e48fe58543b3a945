# The two commands of the README: `make demo` and `make test`. Each creates .venv when it is
# missing and installs the project (editable, with its test extra) before running.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The modules setup.py compiles, and their C declarations: editing one rebuilds the compiled
# hot path (a stale build would shadow the edit).
HOT := $(shell grep -o '"mktme_des/[a-z_/]*\.py"' setup.py | tr -d '"') $(wildcard mktme_des/*.pxd mktme_des/*/*.pxd)

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml setup.py $(HOT)
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
	find mktme_des \( -name '*.so' -o -name '*.c' \) -delete
