# Two commands on a fresh clone: `make run` (set up + main job) and `make test` (set up + tests).
PYTHON ?= python3
PIP_FIND_LINKS_OPT := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: setup run test
setup:
	$(PYTHON) -m pip install -q $(PIP_FIND_LINKS_OPT) torch==2.13.0
	$(PYTHON) -m pip install -q $(PIP_FIND_LINKS_OPT) -e ".[dev,cluster]"
	$(PYTHON) -m pip install -q ./tests/plugin_example

run: setup
	$(PYTHON) -m benchmark run

test: setup
	$(PYTHON) -m pytest -q
