# stacube: `make demo` installs and runs the main job on the sample data; `make test` runs the tests.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
STACUBE := $(VENV)/bin/stacube
PORT  ?= 8000

.PHONY: install demo test bench serve stop lock clean

install:
	@scripts/install.sh

demo: install
	@$(PY) scripts/demo.py $(PORT)

test: install
	$(VENV)/bin/pytest -q -n 2

bench: install
	$(PY) benchmarks/run_all.py

serve: install
	$(STACUBE) db start
	$(STACUBE) up --port $(PORT)

stop:
	@if [ -f .stacube/up.pid ]; then kill $$(cat .stacube/up.pid) 2>/dev/null || true; rm -f .stacube/up.pid; echo "server stopped"; fi
	@[ -x $(STACUBE) ] && $(STACUBE) db stop || true

lock:
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt

clean: stop
	rm -rf .stacube

serverless-demo: install
	$(PY) scripts/serverless_demo.py
