# Two commands for a fresh machine (see README.md):
#   make lab   - set up .venv and open the course in JupyterLab
#   make test  - set up .venv and run every test: unit tests and pytest --nbval over all notebooks
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.qlearn-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: install lab test unit notebooks execute-notebooks bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[pinned,dev]"
	touch $(STAMP)

install: $(STAMP)

# Jupyter refuses to run as root unless told (containers, CI images).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: install
	$(BIN)/jupyter lab $(ROOT_FLAG) notebooks/00_start_here.ipynb

test: install
	$(BIN)/python -m pytest tests notebooks $(NBVAL)

unit: install
	$(BIN)/python -m pytest tests

notebooks: install
	$(BIN)/python -m pytest notebooks $(NBVAL)

# Re-run every notebook top to bottom in a fresh kernel and store its outputs (maintainers).
execute-notebooks: install
	$(BIN)/python scripts/execute_notebooks.py notebooks/*.ipynb

bench: install
	$(BIN)/python benchmarks/bench_linear.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
