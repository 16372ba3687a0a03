# Two commands a new user needs: `make serve` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: serve test bench check clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Forwarding is off unless you name resolvers: make serve UPSTREAM=192.0.2.53 (or UPSTREAM=/etc/resolv.conf).
UPSTREAM ?=
serve: $(BIN)/.installed
	$(BIN)/clusterdns serve --manifests zones --listen 127.0.0.1:5353 $(if $(UPSTREAM),--upstream $(UPSTREAM),--no-forward)

test: $(BIN)/.installed
	$(BIN)/ruff check clusterdns tests bench
	$(BIN)/python -m pytest -q

check: $(BIN)/.installed
	$(BIN)/clusterdns check --manifests zones

bench: $(BIN)/.installed
	$(BIN)/python bench/run.py
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) build *.egg-info
