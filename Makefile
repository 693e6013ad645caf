# PICE — the two commands a fresh clone needs:
#   make run    start the embedded default (cloud stand-in, two edge agents, gateway on :8000)
#   make test   install everything into .venv (and .venv-vllm) and run the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
VLLM_VENV ?= .venv-vllm
TUNE_VENV ?= .venv-tune
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
VLLM_STAMP := $(VLLM_VENV)/.installed-stamp
TUNE_STAMP := $(TUNE_VENV)/.installed-stamp
PICE_VLLM ?= 1

.PHONY: install models vllm-env tune-env litellm-env run test check lint typecheck unit chaos edge-py310 soak bench overhead clean

# llama-cpp-python is built by scripts/install-llama-cpp.sh (for this CPU, never with llama.cpp's
# crashing AMX kernels) and rebuilt whenever its flags or the CPU change: `install` re-checks
# that on every run, in well under a second when nothing changed.
$(STAMP): pyproject.toml scripts/install-llama-cpp.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	bash scripts/install-llama-cpp.sh $(VENV)
	@echo "Installing pice and its dependencies..."
	$(BIN)/python -m pip install --progress-bar on -e '.[edge,gateway,hub,bench,dev]'
	touch $(STAMP)

install: $(STAMP)
	@bash scripts/install-llama-cpp.sh $(VENV)

models: install
	$(BIN)/pice models pull qwen2.5-coder-0.5b-instruct qwen2.5-coder-0.5b-instruct-q8_0 qwen2.5-coder-1.5b-instruct
	$(BIN)/pice router pull

$(VLLM_STAMP): scripts/setup-vllm.sh
	bash scripts/setup-vllm.sh $(VLLM_VENV)
	touch $(VLLM_STAMP)

vllm-env: $(VLLM_STAMP)

# LiteLLM's proxy, in a venv of its own, only for the side-by-side overhead benchmark.
LITELLM_VENV ?= .venv-litellm
$(LITELLM_VENV)/.installed-stamp:
	test -x $(LITELLM_VENV)/bin/python || $(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install --quiet 'litellm[proxy]'
	touch $@

litellm-env: $(LITELLM_VENV)/.installed-stamp

# Gateway overhead vs LiteLLM and the upstream direct (docs/operations.md "Overhead").
overhead: install litellm-env
	$(BIN)/python benchmarks/overhead.py --rounds 3 --requests 1000 --out benchmarks/results/overhead.json

# `pice tune train/export` run in this environment (torch, transformers, peft, gguf).
$(TUNE_STAMP): scripts/setup-tune.sh
	bash scripts/setup-tune.sh $(TUNE_VENV)
	touch $(TUNE_STAMP)

tune-env: $(TUNE_STAMP)

run: models
	$(BIN)/pice up

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

# The fast tier: no weights, no vLLM, in-process fakes (seconds).
unit: install
	$(BIN)/pytest -m "not model and not vllm"

# The whole suite, as CI runs it: real models, real edge agents, real vLLM. The 25 slowest tests
# are listed at the end, so a CI log shows where its time goes (90-minute limit).
test: models lint typecheck tune-env $(if $(filter 1,$(PICE_VLLM)),vllm-env)
	PICE_VLLM_VENV=$(abspath $(VLLM_VENV)) PICE_TUNE_VENV=$(abspath $(TUNE_VENV)) $(BIN)/pytest --durations=25

# The fault and load suite: edges killed and hung, the cloud down or dying, slow and vanishing
# clients, pings, and a short soak (50 streams x 20 s). Its fast part also runs in `make test`.
chaos: install
	$(BIN)/pytest tests/chaos --chaos -v

# The edge (pice-edge, packaging/edge) installed into a fresh Python 3.10 venv, as on a Jetson
# Orin's JetPack 6, running its tests there (docs/orin.md); skipped without python3.10.
edge-py310: install
	$(BIN)/pytest tests/test_edge_py310.py -v -rs

# The full-size soak: 200 streams for 5 minutes; prints a table, writes JSON and a plot.
soak: install
	$(BIN)/python benchmarks/soak.py --streams 200 --seconds 300 --out benchmarks/results/soak.json

# Before every commit: format, lint, strict types and the fast tier, well under a minute.
check: lint typecheck unit

bench: models
	$(BIN)/python benchmarks/edge_batching.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(LITELLM_VENV) .mypy_cache .ruff_cache .pytest_cache
