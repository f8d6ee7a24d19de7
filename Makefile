# Quick start: `make demo` (set up from nothing, run the whole demo workflow), `make test` (every test),
# `make test-fast` (the unit tests).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORES ?= all
CONFIG ?=
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup slurm-bins demo lint test test-fast bench footprint report paper-dry-run clean
setup: $(STAMP)

# Idempotent: re-runs only when the pins change. pip takes torch/torchvision from PyPI (or this
# machine's local wheel cache, where the workplace's pip config points).
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# Debian's slurm-wlm and munge for tests/test_slurm.py (a single-node SLURM on this machine), installed
# when slurmctld is missing; apt-get needs root (CI runs as root). Without them that test fails, with
# the reason, unless TICKETLAB_SKIP_SLURM=1; the demo does not need them.
APT_SLURM := DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge
slurm-bins:
	@if [ "$${TICKETLAB_SKIP_SLURM:-0}" != 1 ] && ! command -v slurmctld >/dev/null && ! test -x /usr/sbin/slurmctld; then \
	  $(APT_SLURM) || { apt-get update -q && $(APT_SLURM); } \
	  || echo "warning: could not install slurm-wlm and munge (needs root): tests/test_slurm.py will fail"; \
	fi

demo: setup
	snakemake --cores $(CORES) $(if $(CONFIG),--configfile $(CONFIG))

# ruff over the package, the entry points and the tests (settings in pyproject.toml), then Snakemake's linter
# over the workflow (exits 1 on any finding, as on a workflow that does not parse).
lint: setup
	$(VENV)/bin/ruff check scripts tests
	$(VENV)/bin/snakemake --lint

# Lint, then every test, on two pytest-xdist workers (the smoke DAG they share is built once:
# tests/conftest.py); `pytest` alone runs them one after another, with the same results.
test: setup slurm-bins lint
	$(PY) -m pytest -n 2

# The unit tests: no subprocess (no snakemake, training process, job server or SLURM), for a quick loop.
test-fast: setup
	$(PY) -m pytest -m "not workflow" -n 2

# Training throughput (scripts/bench.py): the papers' input pipeline vs ours, masked vs dense; a GPU when
# there is one. Options through BENCH, e.g. make bench BENCH="--concurrent 4" (4 runs at once on the device).
bench: setup
	$(PY) scripts/bench.py $(BENCH)

# Disk footprint of a configuration's results, estimated from its DAG without running it (scripts/footprint.py),
# e.g. make footprint CONFIG=config/paper/tost.yaml; MEASURE=1 also measures what exists under results/.
footprint: setup
	$(PY) scripts/footprint.py $(if $(CONFIG),--configfile $(CONFIG)) $(if $(MEASURE),--measure)

report: setup
	snakemake --report report.html $(if $(CONFIG),--configfile $(CONFIG))

# Plan a paper at its settings without data, then estimate the plan's GPU time (scripts/gpu_budget.py), e.g.
# make paper-dry-run CONFIG=config/paper/spend.yaml, or its quick tier:
# make paper-dry-run CONFIG="config/paper/spend.yaml config/quick/spend.yaml"
paper-dry-run: setup
	$(VENV)/bin/snakemake -n --quiet rules --configfile $(or $(CONFIG),config/paper/spend.yaml)
	$(PY) scripts/gpu_budget.py $(addprefix --configfile ,$(or $(CONFIG),config/paper/spend.yaml))

clean:
	rm -rf results .snakemake report.html
