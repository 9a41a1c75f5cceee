# Two commands do everything (see README): `make run` and `make test`.
# Both bootstrap a local virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 8
# At most half the cores per job, so two independent branches of the DAG run side by side: torch gains little from
# a second thread, and on a 2-core CPU two training jobs side by side took 83-88 s, one after the other 128 s.
MAX_THREADS ?= $(shell echo $$(( $(CORES) / 2 > 0 ? $(CORES) / 2 : 1 )))
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup run test lint dry-run clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned, so that no other requirement can pull a newer (multi-GB) build
	$(BIN)/pip install -c constraints.txt torch torchvision
	$(BIN)/pip install -c constraints.txt -e '.[test,slurm]'
	touch $(STAMP)

setup: $(STAMP)

# the default target `all`: every stage, score, figure and the fully supervised reference
run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --max-threads $(MAX_THREADS)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/snakemake --lint

dry-run: $(STAMP)
	$(BIN)/snakemake -n results/voc_miou.txt

clean:
	rm -rf artifacts results logs benchmarks .snakemake
