# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Rules call `python -m stages.x`: put the venv first on PATH for Snakemake and its jobs.
export PATH := $(abspath $(BIN)):$(PATH)
TARGET ?=
JOBS   ?= 2

.PHONY: demo test test-cluster system-deps setup clean-results

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

# One OpenMP thread per process: the workflow tests run Snakemake jobs side by side, and each torch process taking
# every core oversubscribed them (the suite took 15:46 instead of 7:31 on 2 cores).
test: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

# Debian packages some checks need (root; installs only what is missing): headless Chromium for the report's
# render test, OpenCV's sample data (real photos for the captioner tests), munge + slurm for test-cluster.
SYSTEM_PACKAGES := chromium opencv-doc munge slurmctld slurmd slurm-client
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The demo on a real one-node SLURM cluster (started here if needed; root) through workflow/profiles/slurm.
# CLUSTER_TEST_CONFIGS=tests/config/test.yaml runs the tiny test overlay instead (about 3x faster).
test-cluster: setup
	bash tests/cluster/local_slurm.sh
	$(BIN)/python -m pytest -q tests/cluster

clean-results:
	rm -rf results .snakemake
