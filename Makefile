# The README's two commands, `make bench` and `make test`, and the records.
# Each target creates a virtual environment in $(VENV), installs fastopt into it from
# this checkout (with its test extras and torch's CPU build as the optional reference),
# then runs. Override REFERENCE= to skip the optional references (torch's CPU build,
# bitsandbytes' CPU build for the 8-bit codebooks and benchmark).
PYTHON ?= python3
VENV ?= .venv
REFERENCE ?= torch==2.13.0 bitsandbytes==0.50.2
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fastopt-installed

.PHONY: install test lint bench record record-small record-distributed record-8bit gpu-check \
	c-header clean

$(STAMP): pyproject.toml setup.py $(wildcard csrc/* csrc/rules/*)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,cuda,plot,mpi]" $(REFERENCE)
	touch $(STAMP)

install: $(STAMP)

# Lint, then the suite on every CPU backend that loads (one process; the backend is in
# each test id), then the CUDA tests under Numba's CUDA simulator.
test: install lint
	$(PY) -m pytest
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest -q -m cuda

lint: install
	$(PY) -m ruff check .

# The C backend's rule constants (csrc/fo_rules.h, fo_rule_bodies.h), from fastopt/rules/.
c-header: install
	$(PY) -m fastopt.rules._c_header csrc

bench: install
	$(VENV)/bin/fastopt bench

# The benchmark record (docs/benchmarks.*) and the README's results block, from one run.
record: install
	$(VENV)/bin/fastopt bench --full --rounds 21 --json docs/benchmarks.json \
		--plot docs/benchmarks.png --markdown docs/benchmarks.md --readme README.md

# The small-work record (fixed cost per call) and the README's small-work block.
record-small: install
	$(VENV)/bin/fastopt bench --small --rounds 21 --json docs/benchmarks-small.json \
		--markdown docs/benchmarks-small.md --readme README.md

# The data-parallel record (fastopt.distributed over 1 and 2 ranks, through mpiexec).
record-distributed: install
	$(VENV)/bin/fastopt bench --distributed --ranks 1,2 --rounds 11 \
		--json docs/benchmarks-distributed.json --markdown docs/benchmarks-distributed.md

# The 8-bit state record (Adam8bit against float32 Adam, its roofline, bitsandbytes).
record-8bit: install
	$(VENV)/bin/fastopt bench --8bit --rounds 5 --json docs/benchmarks-8bit.json \
		--markdown docs/benchmarks-8bit.md

# On a machine with an NVIDIA GPU: the CUDA tests on the device and the GPU benchmark,
# recorded in docs/gpu/ (no virtual environment: it uses the machine's Python).
gpu-check:
	bash bench/gpu_check.sh

clean:
	rm -rf $(VENV) build *.egg-info fastopt/_fastopt_c.*
