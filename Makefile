# Two entry points (see README): `make dev` runs the local mesh, `make test` runs every check.
VENV    ?= .venv
PYTHON  ?= python3
PROMPT  ?=
STAMP   := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: dev test lint bench install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

dev: $(STAMP)
	$(VENV)/bin/asya dev $(if $(PROMPT),--prompt "$(PROMPT)")

test: $(STAMP)
	bash scripts/test.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

bench: $(STAMP)
	for b in bench/*_bench.py; do $(VENV)/bin/python $$b --quick || exit 1; done
