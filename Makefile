# ftbnn-exp. Every target creates .venv and installs the package on first use.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=
# Paper tables: make ablation | make derived [DATA=imagenet DATA_ROOT=/path EPOCHS=60 SEEDS=3
# SWEEP_DIR=multirun/name ARGS=...]
DATA ?= digits
DATA_ROOT ?=
EPOCHS ?=
SEEDS ?=
MNIST_NPZ ?=
SWEEP_DIR ?= multirun/$(shell date +%Y-%m-%d_%H-%M-%S)
# KEEP=weights: each finished run keeps model + metadata only (~1/3 of the disk; cannot be
# extended); KEEP=none: no checkpoints (checkpoint.on_completion)
KEEP ?=
rows = $(shell ls conf/experiment/$(1) | sed -e 's/\.yaml$$//' -e 's|^|$(1)/|' | paste -sd, -)
# seed=1,...,N for N seeds; a one-line error for anything but a whole number from 1 to
# MAX_SEEDS (a million seeds made a command line too long for the shell, and as many jobs).
MAX_SEEDS := 1000
seed_list = seed=$(if $(shell [ "$(1)" -ge 1 ] 2>/dev/null && [ "$(1)" -le $(MAX_SEEDS) ] && $\
	echo y),$(shell seq -s, 1 $(1)),$\
	$(error SEEDS=$(1) is not a number of seeds; give a whole number from 1 to $(MAX_SEEDS), $\
	e.g. SEEDS=3))
# Each job's folder is named after its row and seed, not Hydra's job number, so a rerun into
# the same SWEEP_DIR (with any SEEDS) finds every job where it left it: finished jobs are
# skipped, interrupted ones resume, failed ones run again.
job_dir = 'hydra.sweep.subdir=$${row}-seed$${seed}'
# The report is written whenever the multirun made its folder (failed rows marked); the
# target then fails with the multirun's exit code, or the report's, saying how to finish it.
report_after = status=$$?; if [ -d "$$dir" ]; then $(PY) -m ftbnn_exp.report $(1) "$$dir" || \
	status=$$?; fi; [ $$status -eq 0 ] || echo "to finish it, rerun with SWEEP_DIR=$${dir%/*} $\
	and the same other variables: finished runs are skipped" >&2; exit $$status
table_run = dir=$(SWEEP_DIR)/$(1); $(PY) -m ftbnn_exp -m experiment=$(call rows,$(1)) \
	data=$(DATA) $(if $(DATA_ROOT),data.root=$(DATA_ROOT)) $(if $(SEEDS),$(call seed_list,$(SEEDS))) \
	trainer.max_epochs=$(or $(EPOCHS),$(2)) $(if $(KEEP),checkpoint.on_completion=$(KEEP)) \
	hydra.sweep.dir="$$dir" $(job_dir) $(ARGS); \
	$(call report_after,)

.PHONY: help setup train test test-slow test-slurm lint clean table1 ablation derived bench bench-train bench-data bench-gpu bench-gpu-table3 bench-deploy fig2

help: ## List the targets and their variables
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'
	@echo "  variables: ARGS='more hydra overrides'; for table1/ablation/derived also DATA"
	@echo "             (digits), DATA_ROOT (for imagenet), EPOCHS (2 for table1, 8 for ablation,"
	@echo "             3 for derived on the default data; 60 is the paper's), SEEDS (N: each row"
	@echo "             with seeds 1..N, mean ± std in the report; unset: one run, the config's"
	@echo "             seed), SWEEP_DIR (multirun/<time>; give the same one again to finish an"
	@echo "             interrupted sweep or add seeds: finished runs are skipped), KEEP (weights:"
	@echo "             finished runs keep model + metadata only; none: no checkpoints)"
	@echo "             fig2: MNIST_NPZ (a Keras-style mnist.npz; else torchvision, else digits),"
	@echo "             SEEDS (5), EPOCHS, SWEEP_DIR as above"

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP) ## Create .venv and install the package with its test tools

train: $(STAMP) ## Train the FTBNN baseline on the embedded digits (ARGS= adds overrides)
	$(PY) -m ftbnn_exp $(ARGS)

table1: $(STAMP) ## Table 1: the methods (parts and strategies) as one multirun, then the report
	$(call table_run,table1,2)

ablation: $(STAMP) ## Table 3: the nine ablation rows as one multirun, then the report
	$(call table_run,table3,8)

derived: $(STAMP) ## Table 4: the 20 derived models as one multirun, then the report
	$(call table_run,table4,3)

# One pytest worker per core, at most 4 (each holds torch and Lightning: ~1.5 GB); a worker and
# the CLI processes it starts run one thread each (tests/conftest.py). JOBS=0: no workers, the
# tests in this one process at its default threads.
JOBS ?= auto
test: $(STAMP) ## Run the default test suite (< 10 min on 2 cores; JOBS=0: one process)
	$(PY) -m pytest -q -n $(JOBS) --maxprocesses 4

test-slow: $(STAMP) ## Run the tests marked slow (long end-to-end runs, benchmark dry runs)
	$(PY) -m pytest -q -n $(JOBS) --maxprocesses 4 -m slow

test-slurm: $(STAMP) ## Tests against a private one-node SLURM (needs slurm-wlm, munge; else skipped)
	$(PY) -m pytest -q -m slurm

fig2: $(STAMP) ## Fig. 2: 4 MNIST models × 5 seeds, discrepancy table and picture (MNIST_NPZ=path)
	@overrides="$$($(PY) -m ftbnn_exp.data.mnist_source $(MNIST_NPZ))" || exit $$?; \
	dir=$(SWEEP_DIR)/fig2; \
	$(PY) -m ftbnn_exp -m experiment=fig2 $$overrides model.kind=linear,binary,prelu,relu \
		$(call seed_list,$(or $(SEEDS),5)) $(if $(EPOCHS),trainer.max_epochs=$(EPOCHS)) \
		hydra.sweep.dir="$$dir" $(job_dir) $(ARGS); \
	$(call report_after,fig2)

bench: $(STAMP) ## Memory (ours vs Appendix E) and step time (Lightning vs plain, eager vs compile)
	$(PY) -m benchmarks.memory
	$(PY) -m benchmarks.speed $(ARGS)

bench-train: $(STAMP) ## Training img/s per data source and mode: python -m ftbnn_exp vs a plain loop
	$(PY) -m benchmarks.train $(ARGS)

bench-data: $(STAMP) ## Input pipeline img/s per data.backend and worker count beside the model's
	$(PY) -m benchmarks.data $(ARGS)

bench-deploy: $(STAMP) ## C++ binary convs vs fp32 and OpenVINO/ORT int8: spread, loaded, breakdown; ceiling; rate
	$(PY) -m benchmarks.deploy $(ARGS)
	$(PY) -m benchmarks.ceiling $(ARGS)
	$(PY) -m ftbnn_exp.deploy rate

bench-gpu: $(STAMP) ## One GPU: training modes, data backends, a trainer=gpu run; ARGS=--dry-run on CPU
	bash benchmarks/gpu.sh $(ARGS)

bench-gpu-table3: $(STAMP) ## Table 3 on CIFAR-10, one GPU, < 9 min: ARGS='--data <tree or zip>' (--dry-run on CPU)
	bash benchmarks/gpu_table3.sh $(ARGS)

lint: $(STAMP) ## ruff over the code
	$(VENV)/bin/ruff check src tests benchmarks

clean: ## Remove run outputs (keeps .venv)
	rm -rf outputs multirun
