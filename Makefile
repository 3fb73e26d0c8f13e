# make serve  -- set up .venv (first time) and serve the shipped model on http://127.0.0.1:8000
# make test   -- set up .venv (first time) and run the test suite
# make train ARGS="--data DIR --out DIR ..."  -- python -m training.train
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test train

$(VENV)/.installed: requirements-serve.txt requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

serve: $(VENV)/.installed
	$(BIN)/gunicorn wsgi:app

test: $(VENV)/.installed
	$(BIN)/python -m pytest

train: $(VENV)/.installed
	$(BIN)/python -m training.train $(ARGS)
