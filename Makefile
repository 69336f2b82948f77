# Two entry points on a fresh machine: `make serve` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV := .venv
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[test,build]'
	touch $(STAMP)

.PHONY: install serve test data docs-figure bench
install: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/uvicorn app.main:app --host $(HOST) --port $(PORT) --http httptools --loop uvloop

test: $(STAMP)
	$(VENV)/bin/python -m pytest

# Rebuild the embedded reference data, the test fixture and the docs picture (deterministic).
data: $(STAMP)
	$(VENV)/bin/python -m scripts.build_reference_data
	$(VENV)/bin/python -m scripts.build_reference_data --profile fixture --out tests/fixtures/mini
	$(VENV)/bin/python -m scripts.render_dataset_map

# The performance benchmark (a script, not a test; docs/benchmarks.md). For its PostGIS rows first:
# apt-get install -y --no-install-recommends postgresql-15-postgis-3 wrk
bench: $(STAMP)
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[test,build,bench]'
	$(VENV)/bin/python -m scripts.benchmark_assessment
