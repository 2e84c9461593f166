# The README's quick start: `make demo` (set up, then compare policies on the bundled
# workload) and `make test` (set up, then run the test suite). Both create .venv as needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean

# demo installs what the simulator needs and nothing else (no torch, Ray or transformers);
# test adds the test extra to the same venv.
demo: $(VENV)/.installed-base
	$(BIN)/llmsim compare --policies fcfs,sjf --force --out llmsim-out/demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

$(VENV)/.installed-base: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-base
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) llmsim-out .pytest_cache .hypothesis *.egg-info
