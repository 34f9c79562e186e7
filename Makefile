# ftbnn-exp. Every target creates .venv and installs the package on first use.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=
# Paper tables: make ablation | make derived [DATA=imagenet DATA_ROOT=/path EPOCHS=60 ARGS=...]
DATA ?= digits
DATA_ROOT ?=
EPOCHS ?=
MNIST_NPZ ?=
SWEEP_DIR ?= multirun/$(shell date +%Y-%m-%d_%H-%M-%S)
rows = $(shell ls conf/experiment/$(1) | sed -e 's/\.yaml$$//' -e 's|^|$(1)/|' | paste -sd, -)
table_run = $(PY) -m ftbnn_exp -m experiment=$(call rows,$(1)) data=$(DATA) \
	$(if $(DATA_ROOT),data.root=$(DATA_ROOT)) trainer.max_epochs=$(or $(EPOCHS),$(2)) \
	hydra.sweep.dir=$(SWEEP_DIR)/$(1) $(ARGS) && $(PY) -m ftbnn_exp.report $(SWEEP_DIR)/$(1)

.PHONY: help setup train test test-slow lint clean ablation derived bench bench-data bench-gpu bench-deploy fig2

help: ## List the targets and their variables
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'
	@echo "  variables: ARGS='more hydra overrides'; for ablation/derived also DATA (digits),"
	@echo "             DATA_ROOT (for imagenet), EPOCHS (8 for ablation, 3 for derived on"
	@echo "             the default data; 60 is the paper's), SWEEP_DIR (multirun/<time>)"
	@echo "             fig2: MNIST_NPZ (a Keras-style mnist.npz; else torchvision, else digits)"

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP) ## Create .venv and install the package with its test tools

train: $(STAMP) ## Train the FTBNN baseline on the embedded digits (ARGS= adds overrides)
	$(PY) -m ftbnn_exp $(ARGS)

ablation: $(STAMP) ## Table 3: the nine ablation rows as one multirun, then the report
	$(call table_run,table3,8)

derived: $(STAMP) ## Table 4: the 20 derived models as one multirun, then the report
	$(call table_run,table4,3)

test: $(STAMP) ## Run the default test suite (< 10 min on 2 cores)
	$(PY) -m pytest -q

test-slow: $(STAMP) ## Run the tests marked slow
	$(PY) -m pytest -q -m slow

fig2: $(STAMP) ## Fig. 2: 4 MNIST models × 5 seeds, discrepancy table and picture (MNIST_NPZ=path)
	@overrides="$$($(PY) -m ftbnn_exp.data.mnist_source $(MNIST_NPZ))" && \
	$(PY) -m ftbnn_exp -m experiment=fig2 $$overrides model.kind=linear,binary,prelu,relu \
		seed=1,2,3,4,5 $(if $(EPOCHS),trainer.max_epochs=$(EPOCHS)) \
		hydra.sweep.dir=$(SWEEP_DIR)/fig2 $(ARGS) && \
	$(PY) -m ftbnn_exp.report fig2 $(SWEEP_DIR)/fig2

bench: $(STAMP) ## Memory (ours vs Appendix E) and step time (Lightning vs plain, eager vs compile)
	$(PY) -m benchmarks.memory
	$(PY) -m benchmarks.speed $(ARGS)

bench-data: $(STAMP) ## Input pipeline img/s per data.backend and worker count beside the model's
	$(PY) -m benchmarks.data $(ARGS)

bench-deploy: $(STAMP) ## C++ binary convs: per layer vs fp32; whole networks vs OpenVINO/ORT int8, threads, breakdown
	$(PY) -m benchmarks.deploy $(ARGS)

bench-gpu: $(STAMP) ## One GPU: training modes, data backends, a trainer=gpu run; ARGS=--dry-run on CPU
	bash benchmarks/gpu.sh $(ARGS)

lint: $(STAMP) ## ruff over the code
	$(VENV)/bin/ruff check src tests benchmarks

clean: ## Remove run outputs (keeps .venv)
	rm -rf outputs multirun
