# make demo : set up (first time) and run the default job → outputs/synthray-demo (report.html inside)
# make test : set up (first time) and run the whole test suite
VENV := .venv
STAMP := $(VENV)/.synthray-installed
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint bench

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

demo: $(STAMP)
	$(VENV)/bin/python -m rayjobs.generate run.overwrite=true $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not real_engine and not s3 and not faults and not cluster" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(VENV)/bin/pip install -q -e '.[bench]'
	$(VENV)/bin/python benchmarks/filters.py
	$(VENV)/bin/python benchmarks/engine_overhead.py
