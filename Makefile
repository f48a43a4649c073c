# fastpose — the README's commands. Every target creates or refreshes .venv with the pinned
# versions of constraints.txt on first use (torch is always pinned: an unpinned torch pulls the
# CUDA build and gigabytes of nvidia packages).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
DEPS   := torch==2.13.0 triton numpy tqdm onnx onnxscript onnxruntime matplotlib pillow \
          pytest pytest-benchmark hypothesis ruff pybind11 cmake ninja setuptools wheel
EXT_SOURCES := $(shell find csrc -type f 2>/dev/null) setup.py CMakeLists.txt pyproject.toml
# benchmarks/results/<machine>: the GPU's name on a GPU machine, cpu-<host> otherwise (expanded
# when the recipe runs, after the venv exists).
BENCH_OUT ?= benchmarks/results/$(shell $(PY) -m benchmarks.report --machine-name 2>/dev/null || echo cpu-$$(hostname -s))

.PHONY: venv demo test bench lint clean

$(VENV)/.deps: constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt $(DEPS)
	touch $@

# The extension is built in place (editable) against nothing but pybind11: no torch at build time.
$(VENV)/.ext: $(VENV)/.deps $(EXT_SOURCES)
	$(PIP) install -q --no-build-isolation --no-deps -e .
	touch $@

venv: $(VENV)/.ext

demo: venv
	$(VENV)/bin/fastpose demo

# Strict dispatch: any silent fallback to the reference backend is an error.
test: venv
	FASTPOSE_STRICT=1 $(PY) -m pytest -q tests benchmarks --benchmark-disable --durations=15

# OMP_WAIT_POLICY=PASSIVE: on a shared machine, OpenMP threads spinning at barriers make every
# parallel region wait for a descheduled thread (measured 50x slower eager runs at load 7 on 2 cores);
# both torch eager and the cpu backend run under the same setting, recorded with the results.
bench: venv
	mkdir -p $(BENCH_OUT)
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(PY) -m pytest -q benchmarks --benchmark-only --benchmark-json=$(BENCH_OUT)/bench.json
	$(PY) -m benchmarks.report

lint: venv
	$(VENV)/bin/ruff check fastpose kernels tests benchmarks

clean:
	rm -rf build $(VENV) *.egg-info
