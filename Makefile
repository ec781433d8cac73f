# One command each: `make test` (set up + tests), `make run` (set up + the main job).
# The locked stack (requirements.lock: torch 2.14.1, Python 3.11-3.13, nothing compiled), or
# STACK=system: the interpreter's own torch >= 2.1 and torchvision (a CUDA machine's, Colab's).
# MMCV=compiled swaps mmcv-lite for mmcv compiled with every op (docs/setup.md).
# WHEELHOUSE=DIR installs from a folder of wheels alone (make wheelhouse), for machines without an index.
PYTHON ?= python3
PY_MINOR := $(shell $(PYTHON) -c 'import sys; print(sys.version_info[1])')
STACK ?= locked
ifeq ($(STACK),system)
  VENV ?= .venv-system
  REQUIREMENTS ?= requirements-system.txt
  export SYSTEM_TORCH = 1
else ifeq ($(STACK),locked)
  VENV ?= .venv
  REQUIREMENTS ?= requirements.txt
else
  $(error STACK=$(STACK): use locked (the default) or system)
endif
export MMCV
BIN := $(VENV)/bin
PYTEST_ARGS ?=
FIGURES ?= figures
# make wheelhouse: for which Python, into which folder, with the notebook/test tools (DEV=1) or not
PY ?= 3.$(PY_MINOR)
WHEELHOUSE_DIR ?= wheelhouse
DEV ?= 1

.PHONY: setup lint test test-fast run notebook bench bench-loop lock wheelhouse gpu-assets gpu-check bf16-check clean
setup:
	@PYTHON=$(PYTHON) bash scripts/setup_env.sh $(VENV)

lint: setup
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: lint  ## everything but the minutes-long training and notebook tests
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

run: setup  ## the main job: both notebooks, top to bottom, on the real data; figures into figures/ (the README's)
	$(BIN)/balloondet notebooks -p figures_dir $(FIGURES)

notebook: setup
	$(BIN)/jupyter lab

bench: setup  ## the model's step, inference, CAM and cam-eval per image; then bench-loop's real iteration
	$(BIN)/python bench/benchmark.py
	$(MAKE) bench-loop

bench-loop: setup  ## the real training iteration beside the model step, image cache on and off (on the real data)
	$(BIN)/balloondet data
	$(BIN)/python bench/train_loop.py

lock: setup  ## regenerate requirements.lock (uv, hashes) after changing a pin
	UV=$(BIN)/uv bash scripts/lock.sh

wheelhouse:  ## every wheel STACK needs for CPython PY besides the interpreter's, into WHEELHOUSE_DIR
	bash scripts/wheelhouse.sh $(REQUIREMENTS) $(WHEELHOUSE_DIR) $(PY) $(DEV)

# The GPU check's files, for a CUDA machine without internet (Python 3.12, torch from the machine):
# .gpu/wheelhouse (runtime only, no mmcv wheel: nms comes from the machine's torchvision), the real archive.
ARCHIVE ?= ../shared/data/balloon_dataset.zip
gpu-assets:
	$(MAKE) wheelhouse STACK=system PY=3.12 DEV=0 WHEELHOUSE_DIR=.gpu/wheelhouse
	cp $(ARCHIVE) .gpu/balloon_dataset.zip
	du -sh .gpu

gpu-check:  ## on the GPU machine: set-up + train/test/predict/featmap/cam on cuda (scripts/gpu_check.sh)
	bash scripts/gpu_check.sh

bf16-check:  ## on a CPU with native bf16: both torch stacks benchmarked and profiled side by side (scripts/bf16_check.sh)
	bash scripts/bf16_check.sh

clean:
	rm -rf work_dirs .pytest_cache
