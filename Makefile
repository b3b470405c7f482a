# The two commands of the README, and what they need.
#   make run   — the main job: set up, fetch the offline bundle, execute every notebook (profile `local`)
#   make test  — the tests: set up, unit tests, then every notebook on the `ci` profile + metrics checks
# Set-up happens once (a project-local .venv with the exact pins of requirements.lock) and again only
# when requirements.lock or pyproject.toml change.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-done
PROFILE ?= local

# The offline mirror (verified copies of public files no package ships, README "The offline data bundle"):
# `run` and `test` export GC_LIB_MIRROR=<absolute ../shared/mirror> when that folder exists and GC_LIB_MIRROR is not
# set already (in the environment or on the command line; a user's own setting, even an empty one, wins).
MIRROR_DIR := $(abspath $(CURDIR)/../shared/mirror)
ifeq ($(origin GC_LIB_MIRROR),undefined)
ifneq ($(wildcard $(MIRROR_DIR)/.),)
run test: export GC_LIB_MIRROR := $(MIRROR_DIR)
endif
endif

.PHONY: setup run test unit notebooks lock clean bench

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml setup.py $(wildcard gc_lib/corpus/*.c gc_lib/corpus/*.h)
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or pass PYTHON=..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@# Strip notebook outputs on `git add` (nbstripout as a git filter), when this is a git clone.
	@if git rev-parse --git-dir >/dev/null 2>&1; then $(BIN)/nbstripout --install; fi
	touch $@

run: setup
	$(BIN)/python -m gc_lib.core.run_notebooks --profile $(PROFILE)

test: setup
	$(BIN)/ruff check gc_lib tests benchmarks notebooks
	$(BIN)/python -m pytest tests/unit tests/notebooks

unit: setup
	$(BIN)/python -m pytest tests/unit

# Benchmarks (never part of the tests): the tokenizer against Geneformer's (in its own environment), and a training
# step against HuggingFace BertForMaskedLM.
benchmarks/.venv-geneformer/bin/python:
	PYTHON=$(PYTHON) bash benchmarks/geneformer_env.sh benchmarks/.venv-geneformer

bench: setup benchmarks/.venv-geneformer/bin/python
	$(BIN)/python -P benchmarks/tokenize.py
	$(BIN)/python -P benchmarks/train_throughput.py --out build/bench/train_throughput.json

# Re-pin requirements.lock from pyproject.toml (a fresh resolve; commit the result).
# The local +cpu tag of torch is dropped so GPU machines take the CUDA build of the same version.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	{ echo "# Exact pins for \`make\`; regenerate with \`make lock\`. Source of truth: pyproject.toml (deps + the dev extra)."; \
	  .lock-venv/bin/pip freeze --exclude-editable 2>/dev/null | sed 's/+cpu$$//'; } > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf build $(VENV)
