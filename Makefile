# make serve  -- set up .venv with what serving needs (first time) and serve the shipped model on http://127.0.0.1:8000
# make serve-prod  -- the production stack (nginx in front of gunicorn, deploy/) on http://127.0.0.1:8080
# make test   -- set up .venv with everything (first time) and run the test suite
# make test-fast  -- the quick tier, under a minute: no ../shared, browser or gunicorn (synthetic images, tiny models)
# make check  -- ruff (lint, import order) and mypy (types), as CI runs them before the tests
# make train ARGS="--data DIR --out DIR ..."  -- carclf train
# make docs   -- build the documentation site (mkdocs.yml, docs/) into site/; --strict: a broken link or anchor fails
# make bench  -- the benchmarks of docs/performance.md (about 13 minutes on 2 idle cores; needs ../shared)
# make image  -- build the Docker image car-classifier (RUNTIME=onnxruntime|litert|tensorflow) with docker or podman
# make image-check  -- build the image with podman and prove it: smoke test, JSON logs, read-only root, stop, Kubernetes pod
# make lock   -- regenerate the hashed locks requirements-*.txt from pyproject.toml (needs PyPI)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SERVE_ENV := $(VENV)/.serve-installed
DEV_ENV := $(VENV)/.dev-installed
# The project itself, editable, for the `carclf` command (its dependencies come from the locks above).
INSTALL_PROJECT := $(BIN)/python -m pip install --no-deps --editable .

.PHONY: serve serve-prod test test-fast check docs train bench lock image image-check

# glibc keeps one malloc arena per thread; two cut a worker's resident memory
# by about 35 MB with no measured slowdown (docs/performance.md). Dockerfile: same.
serve serve-prod bench: export MALLOC_ARENA_MAX = 2

# Setting up .venv: `make serve` and `make test` started together (two
# terminals) take turns. Each holds an exclusive lock on $(VENV).lock (flock(2);
# through Python, as macOS has no flock command) and, holding it, runs make
# again, which sees whether the other one installed meanwhile. A stamp is
# written only once pip succeeded, so an interrupted install is redone.
$(SERVE_ENV): requirements-serve.txt
$(DEV_ENV): requirements-dev.txt
ifndef HOLDING_VENV_LOCK
$(SERVE_ENV) $(DEV_ENV):
	@$(PYTHON) -c 'import fcntl, subprocess, sys; lock = open(sys.argv[1], "a"); fcntl.flock(lock, fcntl.LOCK_EX); sys.exit(subprocess.call(sys.argv[2:]))' \
		$(VENV).lock $(MAKE) --no-print-directory HOLDING_VENV_LOCK=1 $@
else
$(SERVE_ENV): WHAT = the service's packages (ONNX Runtime, no TensorFlow: about 0.2 GB)
$(DEV_ENV): WHAT = the service's, training's and tests' packages (about 2.3 GB, a few minutes)
$(SERVE_ENV) $(DEV_ENV):
	@echo "Installing $(WHAT) into $(VENV)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --require-hashes --only-binary=:all: --progress-bar on -r $<
	$(INSTALL_PROJECT)
	@touch $@
endif

serve: $(SERVE_ENV)
	$(BIN)/carclf serve

# What the Docker image runs (deploy/start.sh, same nginx config), without Docker; needs nginx
# (Debian: apt-get install nginx). docs/reliability.md.
serve-prod: $(SERVE_ENV)
	PATH="$(abspath $(BIN)):$$PATH" LISTEN=127.0.0.1:8080 deploy/start.sh

test: $(DEV_ENV)
	$(BIN)/python -m pytest

# The tests marked neither shared, browser nor server (pyproject.toml). ../shared is pointed
# elsewhere and CARCLF_STRICT=1 turns a skip for something absent into a failure: a fast test
# that reads ../shared fails here instead of passing only beside it.
test-fast: $(DEV_ENV)
	CARCLF_STRICT=1 CARCLF_SHARED=$(CURDIR)/.no-shared $(BIN)/python -m pytest -m "not shared and not browser and not server"

# Settings in pyproject.toml ([tool.ruff], [tool.mypy]).
check: $(DEV_ENV)
	$(BIN)/ruff check .
	$(BIN)/mypy

# NO_MKDOCS_2_WARNING: Material for MkDocs prints a notice about MkDocs 2 at every build otherwise.
docs: $(DEV_ENV)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

train: $(DEV_ENV)
	$(BIN)/carclf train $(ARGS)

bench: $(DEV_ENV)
	$(BIN)/python -m benchmarks.runtimes
	$(BIN)/python -m benchmarks.bare_model --runtime onnxruntime --callers 1 2
	$(BIN)/python -m benchmarks.bare_model --runtime litert --callers 1 2
	$(BIN)/python -m benchmarks.bare_model
	TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=2 $(BIN)/python -m benchmarks.bare_model --callers 1 2 --no-predict
	$(BIN)/python -m benchmarks.request_parts
	$(BIN)/python -m benchmarks.service
	$(BIN)/python -m benchmarks.load_test
	$(BIN)/python -m benchmarks.training_throughput

# docker where its daemon answers, else podman (the same Dockerfile; podman needs no daemon, and
# Docker's image format to keep the HEALTHCHECK).
RUNTIME ?= onnxruntime
ENGINE ?= $(shell docker info >/dev/null 2>&1 && echo docker || { command -v podman >/dev/null && echo podman; })
image:
	@test -n "$(ENGINE)" || { echo "make image: needs docker (its daemon running) or podman"; exit 1; }
	$(ENGINE) build $(if $(filter podman,$(ENGINE)),--format docker) --build-arg RUNTIME=$(RUNTIME) \
		-t car-classifier$(if $(filter-out onnxruntime,$(RUNTIME)),:$(RUNTIME)) .

# The committed tree's image, built and proven as CI does (deploy/image-check; needs root, podman, ../shared).
image-check: $(DEV_ENV)
	deploy/image-check $(RUNTIME)

# Every platform's wheels are hashed (--universal): the same locks serve Linux, macOS and the Docker image.
LOCK_OPTIONS := --universal --generate-hashes --python-version 3.11 --custom-compile-command "make lock"
lock: $(DEV_ENV)
	$(BIN)/uv pip compile pyproject.toml --extra train --extra dev $(LOCK_OPTIONS) -o requirements-dev.txt
	$(BIN)/uv pip compile pyproject.toml $(LOCK_OPTIONS) -c requirements-dev.txt -o requirements-serve.txt
	$(BIN)/uv pip compile pyproject.toml --extra litert $(LOCK_OPTIONS) -c requirements-dev.txt \
		-o requirements-serve-litert.txt
	$(BIN)/uv pip compile pyproject.toml --extra tensorflow $(LOCK_OPTIONS) -c requirements-dev.txt \
		-o requirements-serve-tensorflow.txt
