# make serve  -- set up .venv (first time) and serve the shipped model on http://127.0.0.1:8000
# make serve-prod  -- the production stack (nginx in front of gunicorn, deploy/) on http://127.0.0.1:8080
# make test   -- set up .venv (first time) and run the test suite
# make train ARGS="--data DIR --out DIR ..."  -- python -m training.train
# make bench  -- every benchmark in benchmarks/ (about 10 minutes on 2 cores; needs ../shared)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve serve-prod test train bench

# glibc keeps one malloc arena per thread; two cut a worker's resident memory
# by about 35 MB with no measured slowdown (README "Performance"). Dockerfile: same.
serve serve-prod bench: export MALLOC_ARENA_MAX = 2

$(VENV)/.installed: requirements-serve.txt requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

serve: $(VENV)/.installed
	$(BIN)/gunicorn wsgi:app

# What the Docker image runs (deploy/start.sh, same nginx config), without Docker; needs nginx
# (Debian: apt-get install nginx). README "Reliability".
serve-prod: $(VENV)/.installed
	PATH="$(abspath $(BIN)):$$PATH" LISTEN=127.0.0.1:8080 deploy/start.sh

test: $(VENV)/.installed
	$(BIN)/python -m pytest

train: $(VENV)/.installed
	$(BIN)/python -m training.train $(ARGS)

bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks.bare_model
	TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=2 $(BIN)/python -m benchmarks.bare_model --callers 1 2 --no-predict
	$(BIN)/python -m benchmarks.service
	$(BIN)/python -m benchmarks.load_test
	$(BIN)/python -m benchmarks.training_throughput
