# llm-proxy: `make run` serves, `make test` runs every check. Both build .venv when missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
export TIKTOKEN_CACHE_DIR ?= $(abspath ../shared/data/tiktoken)

.DEFAULT_GOAL := help
.PHONY: help install run test lint fmt typecheck pytest bench bench-quick bench-deps clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP) ## create .venv and install (pinned by constraints.txt)

run: $(STAMP) ## serve on 127.0.0.1:8000 (ARGS="--config config.yaml --port 9000")
	$(BIN)/llm-proxy serve $(ARGS)

lint: $(STAMP) ## ruff, ruff format --check, mypy --strict, and the long-file report
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	@find src -name '*.py' | xargs wc -l | awk '$$2 != "total" && $$1 > 800 {print "long file (>800 lines): " $$2 " " $$1}'

fmt: $(STAMP) ## format and autofix
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) ## tests only
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint pytest ## lint, then every test

bench-deps:
	@command -v nginx >/dev/null && command -v wrk >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq nginx-light wrk)

bench: $(STAMP) bench-deps ## direct vs floor vs gateway: CPU/request, latency, RSS soak
	$(BIN)/python bench/run.py $(ARGS)

bench-quick: $(STAMP) bench-deps
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
