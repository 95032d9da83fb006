# Smart Pixels firmware pipeline. `make help` lists the targets.
#
# Every target installs what it needs into .venv first (pinned, no root). Stages are
# incremental: data and models are rebuilt only when missing or when their inputs change;
# firmware projects and C-simulation builds are cached by content inside `smartpix`.

PYTHON      ?= python3.11
VENV        := .venv
BIN         := $(VENV)/bin
SMARTPIX    := $(BIN)/smartpix
BUILD       := build
DATA        := $(BUILD)/data/synthetic
MODELS      := $(BUILD)/models
CONFIGS     := $(wildcard hls_configs/*.yml)
CONFIG      ?=
JOBS        ?= $(shell nproc 2>/dev/null || echo 2)
EPOCHS      ?=
REPORTS     ?=
SWEEP       ?= sweeps/default.yml

.DEFAULT_GOAL := help
.PHONY: help setup data train evaluate firmware csim synth report sweep lint test test-fast bench clean distclean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required; set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip==24.3.1
	$(BIN)/python -m pip install -qq -r requirements.lock.txt
	$(BIN)/python -m pip install -qq --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed ## create .venv from the pinned requirements (idempotent)

$(DATA)/.complete: $(VENV)/.installed train/generator.py train/dataset.py
	$(SMARTPIX) generate --out $(DATA)
	touch $@

data: $(DATA)/.complete ## generate the default synthetic dataset (build/data/synthetic)

# One model per spec file; a spec, the data or the training code changing retrains it.
# Training profiles: full (the specs as written, build/models) and quick (a few epochs,
# build/models-quick). Exactness holds for any weights, so `make csim` proves the firmware on
# quick models unless PROFILE is given; every other target trains and reads full models unless
# PROFILE=quick.
PROFILE       ?= full
QUICK_MODELS  := $(BUILD)/models-quick
CSIM_PROFILE  := $(if $(filter command line environment,$(origin PROFILE)),$(PROFILE),quick)
SPECS         := $(wildcard model_specs/*.yml)
TRAIN_SOURCES := $(wildcard train/*.py)
EPOCHS_FLAG   := $(if $(EPOCHS),--epochs $(EPOCHS))

$(MODELS)/%/model.h5: model_specs/%.yml $(DATA)/.complete $(TRAIN_SOURCES)
	$(SMARTPIX) train --spec $< --data $(DATA) --out $(MODELS)/$* --profile full $(EPOCHS_FLAG)

$(QUICK_MODELS)/%/model.h5: model_specs/%.yml $(DATA)/.complete $(TRAIN_SOURCES)
	$(SMARTPIX) train --spec $< --data $(DATA) --out $(QUICK_MODELS)/$* --profile quick $(EPOCHS_FLAG)

# a profile's models folder; the model files of the specs, and of the ones the configurations name
models_of     = $(if $(filter quick,$(1)),$(QUICK_MODELS),$(MODELS))
spec_models   = $(patsubst model_specs/%.yml,$(call models_of,$(1))/%/model.h5,$(SPECS))
CONFIG_MODELS := $(sort $(notdir $(shell sed -n 's/^model: *//p' $(CONFIGS))))
config_models = $(addprefix $(call models_of,$(1))/,$(addsuffix /model.h5,$(CONFIG_MODELS)))

train: $(call spec_models,$(PROFILE)) ## train one QKeras model per spec in model_specs/ (build/models/<spec>/)

evaluate: $(call spec_models,$(PROFILE)) ## every spec's model against its float twin: tables and plots (build/reports/evaluation/)
	$(SMARTPIX) evaluate --data $(DATA) --models $(patsubst %/model.h5,%,$(call spec_models,$(PROFILE)))

firmware: $(call config_models,$(PROFILE)) ## write one hls4ml project per configuration (build/firmware/<config>/)
	$(SMARTPIX) firmware $(CONFIG) --jobs $(JOBS) --models-dir $(call models_of,$(PROFILE))

csim: $(call config_models,$(CSIM_PROFILE)) ## bit-exact C simulation of every configuration (build/reports/csim.md)
	$(SMARTPIX) csim $(CONFIG) --jobs $(JOBS) --models-dir $(call models_of,$(CSIM_PROFILE))

synth: $(call config_models,$(PROFILE)) ## vendor HLS synthesis where installed; open RTL flow (Verilator, Yosys)
	$(SMARTPIX) synth $(CONFIG) --models-dir $(call models_of,$(PROFILE))

report: setup ## summary of every configuration (build/reports/summary.md); REPORTS=<folder> reads reports made elsewhere
ifneq ($(REPORTS),)
	$(SMARTPIX) report --from $(REPORTS)
else
	$(SMARTPIX) report
endif

sweep: $(DATA)/.complete ## resolution against resources over a grid of design points, on Dask; SWEEP=<file>
	$(SMARTPIX) sweep $(SWEEP)

lint: setup ## ruff: pyflakes, pycodestyle and import order
	$(BIN)/ruff check .

test: setup lint ## lint, then the whole test suite, bit-exact tests included; lists the 15 slowest
	$(BIN)/python -m pytest -q -ra --durations=15

test-fast: setup lint ## lint, then the test suite without the slow tests
	$(BIN)/python -m pytest -q -ra -m "not slow"

bench: $(MODEL_FILES) ## speed benchmarks (ratios against baselines run in the same process)
	$(BIN)/python bench/bench_generator.py
	$(BIN)/python bench/bench_loader.py
	$(BIN)/python bench/bench_csim.py
	$(BIN)/python bench/bench_rtl.py --model $(MODELS)/baseline --flat-baseline

clean: ## remove generated artifacts (build/)
	rm -rf $(BUILD)

distclean: clean ## also remove the virtual environment
	rm -rf $(VENV)
