# One command each: `make test` (set up + tests), `make run` (set up + the main job).
# STACK=default (torch 2.1.2, Python <= 3.11) or STACK=modern (torch 2.14.1, numpy 2).
# Without STACK, the modern stack is chosen when the interpreter is too new for torch 2.1.2.
PYTHON ?= python3
PY_MINOR := $(shell $(PYTHON) -c 'import sys; print(sys.version_info[1])')
STACK ?= $(if $(filter 8 9 10 11,$(PY_MINOR)),default,modern)
ifeq ($(STACK),modern)
  VENV ?= .venv-modern
  REQUIREMENTS ?= requirements-modern.txt
  export MMCV_CXX_STD ?= c++20
else
  VENV ?= .venv
  REQUIREMENTS ?= requirements.txt
endif
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup test test-fast run notebook figures bench clean
setup:
	@PYTHON=$(PYTHON) bash scripts/setup_env.sh $(VENV) $(REQUIREMENTS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup  ## everything but the minutes-long training and notebook tests
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

run: setup  ## the main job: both notebooks, top to bottom, on the real data
	$(BIN)/balloondet notebooks

notebook: setup
	$(BIN)/jupyter lab

bench: setup
	$(BIN)/python bench/benchmark.py

clean:
	rm -rf work_dirs .pytest_cache
