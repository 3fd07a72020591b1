# jupyter_opx — the two commands a newcomer needs are `make demo` and `make test`.
# Both create .venv, install the package (editable, with what they need) and run.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: help venv demo test lint typecheck pytest bench clean

help:
	@echo "make demo   set up .venv and run the demo end to end"
	@echo "make test   set up .venv and run ruff, mypy and pytest"
	@echo "make bench  run the benchmarks under bench/ (see bench/README.md)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet hatchling editables
	$(BIN)/python -m pip install --quiet --no-build-isolation -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 > /dev/null
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

demo: venv
	$(BIN)/opx demo --workspace demo-workspace

lint: venv
	$(BIN)/ruff check jupyter_opx tests bench
	$(BIN)/ruff format --check jupyter_opx tests bench

typecheck: venv
	$(BIN)/mypy jupyter_opx

pytest: venv
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

bench: venv
	$(BIN)/python bench/bench_snapshot.py
	$(BIN)/python bench/bench_jobs.py --jitter

clean:
	rm -rf $(VENV) demo-workspace .pytest_cache .mypy_cache .ruff_cache
