# On a fresh clone: `make run` (set up + main job), `make test` (set up + lint + every test, .ci/test) and
# `make test-fast` (the unit tests without the end-to-end runs, under 2 minutes).
PYTHON ?= python3
PIP_FIND_LINKS_OPT := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: setup run test test-fast
setup:
	$(PYTHON) -m pip install -q $(PIP_FIND_LINKS_OPT) torch==2.13.0
	$(PYTHON) -m pip install -q $(PIP_FIND_LINKS_OPT) -e ".[dev,cluster,docs]"
	$(PYTHON) -m pip install -q ./tests/plugin_example
	bash .ci/install-chromium

run: setup
	$(PYTHON) -m benchmark run

test: setup
	PYTHON=$(PYTHON) bash .ci/test

test-fast:
	$(PYTHON) -m pytest -q -n 2 -m "not slow" -p no:benchmark
