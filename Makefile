# Two commands on a fresh machine: `make demo` and `make test`. Each creates
# .venv on first use (about 4 minutes: torch, torchaudio and Ray are large).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo demo-quick test test-e2e test-unit lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,beam]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bigssl demo --out runs/demo

demo-quick: $(STAMP)
	$(VENV)/bin/bigssl demo --quick --out runs/demo-quick

test: $(STAMP)
	$(PY) -m pytest tests -m "not e2e"

# The whole recipe against a local S3 server (moto), ~7 min here: kept out of `make test`
# (CI's 30 min) and run before changes that touch storage, checkpoints or the sweep.
test-e2e: $(STAMP)
	$(PY) -m pytest tests -m e2e

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check platform tests bench jobs
	$(VENV)/bin/ruff format --check platform tests bench jobs

bench: $(STAMP)
	$(PY) bench/featurize.py

clean:
	rm -rf runs .pytest_cache
