# The two commands of the README: `make run` and `make test`. Both create or reuse .venv/.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test system-deps

# The runtime dependencies come from the image's hash-pinned lock, so the tests run with
# exactly what production ships; the test extras are resolved within those pins.
$(STAMP): pyproject.toml k8s/requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r k8s/requirements.lock
	sed -e '/^ *--hash/d' -e 's/ *\\$$//' k8s/requirements.lock > $(VENV)/constraints.txt
	$(BIN)/python -m pip install -q -c $(VENV)/constraints.txt -e '.[test]'
	@touch $(STAMP)

# Debian's chromium for the browser tests; installed once, skipped when present.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian package) for browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

run: $(STAMP)
	ENVIRONMENT=$${ENVIRONMENT:-development} $(BIN)/fte up

# Two workers (pytest-xdist), each with a stack of its own (tests/conftest.py); a test file
# runs whole on one worker, so its module fixtures (a running flow, a database) start once.
PYTEST_ARGS ?= -n 2 --dist loadfile

test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)
