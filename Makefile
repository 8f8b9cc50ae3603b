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

.PHONY: install run test bench lint typecheck clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --progress-bar off -e ".[train,dev,postgres]"
	touch $(STAMP)

run: install
	$(BIN)/dxassist bootstrap --profile quick
	$(BIN)/dxassist serve --host 127.0.0.1 --port 8000

test: install
	$(BIN)/python -m pytest -p no:cacheprovider

bench: install
	$(BIN)/python -m benchmarks

lint: install
	$(BIN)/ruff check inference training model_registry tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache
