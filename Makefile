# Developer and CI entry points. Every target that runs code bootstraps first:
# scripts/bootstrap.sh installs what is missing (apt packages, .venv, the package)
# and returns in a fraction of a second when nothing is.

VENV   := .venv
PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help bootstrap test lint unit integration demo bench clean distclean

help:
	@echo "make test         bootstrap, ruff, mypy, then the whole pytest suite (unit + integration)"
	@echo "make lint         ruff check + mypy"
	@echo "make unit         tests/unit only (no services)"
	@echo "make integration  tests/integration only (real PostgreSQL, MariaDB, Tansu)"
	@echo "make demo         run scripts/demo.py"
	@echo "make bench        benchmarks: daemon vs pg_recvlogical / mariadb-binlog (BENCHMARKS.md;"
	@echo "                  about 6 min; BENCH_ARGS='--size small' for a quick run)"
	@echo "make clean        remove caches and build output; distclean also removes .venv"

bootstrap:
	@bash scripts/bootstrap.sh

# ruff, mypy and pytest all run even when an earlier one fails, so one CI run reports
# everything; the target fails if any of them did.
test: bootstrap
	@status=0; \
	echo "== ruff check"; $(VENV)/bin/ruff check . || status=1; \
	echo "== mypy"; $(VENV)/bin/mypy || status=1; \
	echo "== pytest"; $(VENV)/bin/pytest $(PYTEST_ARGS) || status=1; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED (see ruff/mypy/pytest output above)"; fi; \
	exit $$status

lint: bootstrap
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/mypy || status=1; \
	exit $$status

unit: bootstrap
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

integration: bootstrap
	$(VENV)/bin/pytest tests/integration $(PYTEST_ARGS)

demo: bootstrap
	$(PYTHON) scripts/demo.py

# Not part of `make test`: it starts its own servers and needs the machine to itself.
# Results: the terminal, bench/results/latest.{md,json}; see BENCHMARKS.md.
bench: bootstrap
	$(PYTHON) -m bench $(BENCH_ARGS)

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache
	rm -f connectors/accel/*.so
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -prune \
		-exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
