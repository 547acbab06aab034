# The README's two commands: `make demo` and `make test`. Each creates .venv in the repo when missing,
# installs nncert (release build of the Rust extension) with what it needs, then runs.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
export NNCERT_DATA ?= $(abspath ../shared/data)

.PHONY: demo test install install-test cargo-test pytest bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

install: $(PY)
	$(PIP) install -q ".[torch]"

install-test: $(PY)
	$(PIP) install -q ".[torch,test]"

demo: install
	$(VENV)/bin/nncert demo

cargo-test:
	cargo test --workspace --exclude nncert-py --release

pytest:
	$(PY) -m pytest -q

test: install-test cargo-test pytest

bench: install-test
	cargo bench -p nncert-core
	$(PY) bench/forward_bench.py

clean:
	rm -rf $(VENV) target
