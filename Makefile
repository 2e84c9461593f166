# The README's quick start: `make demo` (set up, then compare policies on the bundled
# workload) and `make test` (set up, then run the test suite). Both create .venv as needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean

demo: $(VENV)/.installed
	$(BIN)/llmsim compare --policies fcfs,sjf --force --out llmsim-out/demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check .

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) llmsim-out .pytest_cache .hypothesis *.egg-info
