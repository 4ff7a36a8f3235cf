PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run up test lint bench loadtest venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m server serve --demo

up: $(STAMP)
	$(BIN)/python -m server up --demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check server loadtest tests
	$(BIN)/ruff format --check server loadtest tests
	$(BIN)/mypy

# `make bench BENCH_ARGS=--quick` for a short smoke run of every benchmark.
bench: $(STAMP)
	$(BIN)/python -m loadtest.bench $(BENCH_ARGS)
	$(BIN)/python -m loadtest.bench_booking $(BENCH_ARGS)
	$(BIN)/python -m loadtest.bench_nginx $(BENCH_ARGS)
	$(BIN)/python -m loadtest.bench_tokens $(BENCH_ARGS)
	$(BIN)/python -m loadtest.bench_challenge $(BENCH_ARGS)
	$(BIN)/python -m loadtest.bench_redis_loss $(BENCH_ARGS)
	$(BIN)/python -m loadtest.bench_cluster $(BENCH_ARGS)
	$(BIN)/python -m loadtest.bench_partition $(BENCH_ARGS)

loadtest: $(STAMP)
	$(BIN)/python -m loadtest.run $(ARGS)

clean:
	rm -rf .boxoffice .pytest_cache .mypy_cache
