# Quick start: `make demo` (set up from nothing, run the whole demo workflow), `make test`.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORES ?= all
CONFIG ?=
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup demo test report paper-dry-run clean
setup: $(STAMP)

# Idempotent: re-runs only when the pins change. pip takes torch/torchvision from PyPI (or this
# machine's local wheel cache, where the workplace's pip config points).
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

demo: setup
	snakemake --cores $(CORES) $(if $(CONFIG),--configfile $(CONFIG))

test: setup
	$(PY) -m pytest

report: setup
	snakemake --report report.html $(if $(CONFIG),--configfile $(CONFIG))

# Plan a paper at its settings without data, e.g. make paper-dry-run CONFIG=config/paper/spend.yaml
paper-dry-run: setup
	snakemake -n --configfile $(or $(CONFIG),config/paper/spend.yaml)

clean:
	rm -rf results .snakemake report.html
