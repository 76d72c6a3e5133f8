# The two commands of the README: `make test` and `make bench`.
# Each creates a virtual environment in $(VENV), installs fastopt into it from this
# checkout (with its test extras and torch's CPU build as the optional reference),
# then runs. Override REFERENCE= to skip torch.
PYTHON ?= python3
VENV ?= .venv
REFERENCE ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fastopt-installed

.PHONY: install test bench clean

$(STAMP): pyproject.toml setup.py $(wildcard csrc/*)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,cuda,plot]" $(REFERENCE)
	touch $(STAMP)

install: $(STAMP)

# The whole suite on the default backend (numba), then once more on each other CPU
# backend, then the CUDA tests under Numba's CUDA simulator (on a GPU machine, plain
# `pytest tests/test_cuda.py` runs them on the device).
test: install
	$(PY) -m pytest
	FASTOPT_BACKEND=c $(PY) -m pytest -q
	FASTOPT_BACKEND=numpy $(PY) -m pytest -q
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest -q tests/test_cuda.py

bench: install
	$(VENV)/bin/fastopt bench

clean:
	rm -rf $(VENV) build *.egg-info fastopt/_fastopt_c.*
