# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Rules call `python -m stages.x`: put the venv first on PATH for Snakemake and its jobs.
export PATH := $(abspath $(BIN)):$(PATH)
TARGET ?=
JOBS   ?= 2

.PHONY: demo test setup clean-results

# The stamp is rebuilt whenever pyproject.toml changes, so `make` re-installs only when pins move.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade "pip>=24"
	# torch first, pinned, so that no later requirement makes pip pick a newer (multi-GB) release.
	$(BIN)/pip install "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/snakemake --cores $(JOBS) $(TARGET)

test: setup
	$(BIN)/python -m pytest -q

clean-results:
	rm -rf results .snakemake
