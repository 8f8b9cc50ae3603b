# One entry point for developers, CI and the demo. See README.md.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The product never phones home: ONNX Runtime and MLflow telemetry off everywhere.
export ORT_DISABLE_TELEMETRY := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install run test test-other-cpu bench lint typecheck clean screenshots

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --progress-bar off -e ".[train,dev,postgres,batch]"
	touch $(STAMP)

run: install
	$(BIN)/dxassist bootstrap --profile quick
	$(BIN)/dxassist serve --host 127.0.0.1 --port 8000

# Two pytest-xdist workers (CI has 2 cores; most of the suite waits on the servers and hosts it starts).
# `--dist loadscope` gives each worker whole modules; tests/conftest.py keeps tests/acceptance on one
# worker (one bootstrap per run) and hands out the longest modules first.
PYTEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadscope

# The suite as another x86-64 CPU would run it: numpy's baseline SIMD kernels instead of AVX2/AVX-512,
# OpenBLAS's Haswell kernels, PyTorch's AVX2 kernels, oneDNN capped at AVX2, one thread everywhere.
# Nothing in the suite may depend on these (docs/internals.md, "Tests on any CPU").
test-other-cpu: install
	NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR" OPENBLAS_CORETYPE=Haswell \
	ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
	MKL_NUM_THREADS=1 $(BIN)/python -m pytest -p no:cacheprovider

bench: install
	$(BIN)/python -m benchmarks

# The screenshots of docs/ui.md (needs Debian's chromium; HOME_WITH_MODELS=var for the trained models).
screenshots: install
	$(BIN)/python docs/ui_screenshots.py $(if $(HOME_WITH_MODELS),--home $(HOME_WITH_MODELS))

# mypy --strict on inference/ and model_registry/ (pyproject.toml [tool.mypy]).
lint: install
	$(BIN)/ruff check inference training model_registry tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache
