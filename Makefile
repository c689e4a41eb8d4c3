# asgdjax: `make demo` runs the main job on the embedded digits set; `make test` runs the test suite.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-full lint bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): setup.cfg pyproject.toml constraints.txt $(VENV)/bin/python
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/asgdjax-train

test: lint
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-full: lint  # the fast tier plus the slow one (CNN replays, long CLI runs, soak): what .ci/run adds
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)  # style, the import layering (core -> sim, runtime -> train -> CLI) and types
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

BENCHES := startup sim_overhead cut_calls sweep vs_torch runtime_overhead runtime_scaling model_parallel ray_overhead small_problems mixed_precision

bench: $(STAMP)  # CPU benchmarks, --quick; vs_torch needs `pip install torch==2.13.0`; GPU: experiments/bench/gpu_check.sh
	cd experiments/bench && for b in $(BENCHES); do ../../$(PY) $$b.py --quick || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
