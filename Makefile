# Two commands matter on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install lint fmt typecheck cases bench clean

run: $(STAMP)
	$(BIN)/policygate lint policies
	$(BIN)/policygate compile

test: $(STAMP)
	$(BIN)/pytest
	$(BIN)/ruff check engine tests
	$(BIN)/ruff format --check engine tests
	$(BIN)/mypy engine

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check engine tests
	$(BIN)/mypy engine
	$(BIN)/policygate lint policies
	for example in examples/*/; do $(BIN)/policygate lint --base policies $$example || exit 1; done

fmt: $(STAMP)
	$(BIN)/ruff format engine tests
	$(BIN)/ruff check --fix engine tests

cases: $(STAMP)
	$(BIN)/policygate test policies
	for example in examples/*/; do $(BIN)/policygate test --base policies $$example || exit 1; done

bench: $(STAMP)
	$(BIN)/policygate bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
