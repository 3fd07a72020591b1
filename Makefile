# jupyter_opx — the two commands a newcomer needs are `make demo` and `make test`.
# Both create .venv, install the package (editable, with what they need) and run.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# jlpm (yarn 3, from the jupyterlab package) and jupyter must be found by the build hook
RUN    := PATH="$(abspath $(BIN)):$$PATH"
LABEXT := jupyter_opx/labextension/static/style.js
LABSRC := $(shell find labextension/src labextension/style -type f 2>/dev/null) \
          labextension/package.json labextension/yarn.lock labextension/tsconfig.json
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help venv demo lab test lint typecheck pytest bench clean labextension chromium postgresql

help:
	@echo "make demo   set up .venv and run the demo end to end"
	@echo "make lab    JupyterLab on the demo's workspace (runs the demo first if needed)"
	@echo "make test   set up .venv and run ruff, mypy and pytest"
	@echo "make bench  run the benchmarks under bench/ (see bench/README.md)"

# The editable install runs without build isolation, so the build hook's own needs
# come first: hatch-jupyter-builder, and jupyterlab for jlpm (the hook runs
# jlpm install + jlpm build in labextension/, fetching from the npm registry).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet hatchling editables hatch-jupyter-builder "jupyterlab>=4.2"
	$(RUN) $(BIN)/python -m pip install --quiet --no-build-isolation -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 > /dev/null
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

# Rebuild the lab extension when its sources change, and link the build into
# the venv's share/jupyter/labextensions (so a rebuild needs no reinstall).
$(LABEXT): $(LABSRC) | $(STAMP)
	cd labextension && $(RUN) jlpm install && $(RUN) jlpm build
	$(RUN) $(BIN)/jupyter-builder develop --overwrite . > /dev/null
	touch $@

labextension: $(LABEXT)

# The browser tests drive Debian's chromium (Playwright's own download cannot work here).
chromium:
	@command -v chromium > /dev/null || ( \
		export DEBIAN_FRONTEND=noninteractive; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

# The PostgreSQL tests start a throwaway cluster with the server binaries (initdb,
# pg_ctl); as root they run as the 'postgres' user, which the Debian package creates.
PG_BINDIR := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))
postgresql:
	@command -v initdb > /dev/null || test -n "$(PG_BINDIR)" || ( \
		export DEBIAN_FRONTEND=noninteractive; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q postgresql)

demo: venv
	$(BIN)/opx demo --workspace demo-workspace

# JupyterLab on the demo's store; root needs --allow-root
lab: venv labextension
	@test -x $(BIN)/jupyter-lab || { echo "make lab: JupyterLab is not installed in $(VENV); install it with: $(BIN)/python -m pip install jupyterlab" >&2; exit 1; }
	test -d demo-workspace/.opx || $(BIN)/opx demo --workspace demo-workspace
	OPX_HOME=$(CURDIR)/demo-workspace/.opx $(BIN)/jupyter lab --ServerApp.root_dir=demo-workspace $(if $(filter 0,$(shell id -u)),--allow-root)

lint: venv labextension
	$(BIN)/ruff check jupyter_opx tests bench
	$(BIN)/ruff format --check jupyter_opx tests bench
	cd labextension && $(RUN) jlpm lint:check

typecheck: venv
	$(BIN)/mypy jupyter_opx

pytest: venv labextension chromium postgresql
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

bench: venv
	$(BIN)/python bench/bench_snapshot.py
	$(BIN)/python bench/bench_jobs.py --jitter
	$(BIN)/python bench/bench_feedback.py
	$(BIN)/python bench/bench_api.py

clean:
	rm -rf $(VENV) demo-workspace .pytest_cache .mypy_cache .ruff_cache test-artifacts
	rm -rf labextension/node_modules labextension/lib jupyter_opx/labextension
