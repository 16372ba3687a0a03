# Two commands a new user needs: `make serve` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: serve test bench bench-scale soak check clean

# Runs a command holding an exclusive lock on a file (flock(2) through Python: no util-linux needed).
WITH_LOCK = $(PYTHON) -c 'import fcntl, os, subprocess, sys; fcntl.flock(os.open(sys.argv[1], os.O_CREAT | os.O_RDWR), fcntl.LOCK_EX); sys.exit(subprocess.call(sys.argv[2:]))'

# `make serve` and `make test` started together on a fresh clone must not run pip into one venv
# at once: the set-up holds a lock, and whoever waited for it finds the stamp fresh and stops.
$(BIN)/.installed: pyproject.toml
	@$(WITH_LOCK) $(VENV).lock sh -c '\
	  if [ -f $@ ] && [ $@ -nt pyproject.toml ]; then exit 0; fi; \
	  set -ex; \
	  $(PYTHON) -m venv $(VENV); \
	  $(BIN)/python -m pip install --quiet --upgrade pip; \
	  $(BIN)/python -m pip install --quiet -e ".[test]"; \
	  touch $@'

# Forwarding is off unless you name resolvers: make serve UPSTREAM=192.0.2.53 (or UPSTREAM=/etc/resolv.conf).
UPSTREAM ?=
serve: $(BIN)/.installed
	$(BIN)/clusterdns serve --manifests zones --listen 127.0.0.1:5353 $(if $(UPSTREAM),--upstream $(UPSTREAM),--no-forward)

test: $(BIN)/.installed
	$(BIN)/ruff check clusterdns tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

check: $(BIN)/.installed
	$(BIN)/clusterdns check --manifests zones

# clusterdns against Knot with dnsperf (installs both from apt when missing); docs/benchmark.md
bench: $(BIN)/.installed
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# memory, start-up and churn at 10,000 services (and 150,000 pods); docs/benchmark.md
bench-scale: $(BIN)/.installed
	$(BIN)/python bench/scale.py $(BENCH_ARGS)

# every fault of issue 8 against a real server, one row each, loopback only, under 10 minutes; docs/reliability.md
soak: $(BIN)/.installed
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) $(VENV).lock build *.egg-info
