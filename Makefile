# evse-agent: the first commands on a fresh machine are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench soak venv clean install wheels deb deb-tools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,lint]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/evse-sim demo

test: $(STAMP)  # two workers, a test file stays on one (its rig, ports and temporary files are its own)
	$(BIN)/pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check agent drivers simulator tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

soak: $(STAMP)
	$(BIN)/pytest -q -m soak -o addopts=''

install:  # on the charger, as root: /opt/evse-agent venv, user, config, systemd unit (idempotent)
	scripts/install.sh $(INSTALL_ARGS)

# The wheelhouse an image (install.sh --root DIR --wheels build/wheels) or the package installs from offline.
# Needs the package index; the dependency wheels are cached in build/wheel-cache.
wheels: | $(BIN)/python
	rm -rf build/wheels
	$(BIN)/python scripts/wheelhouse.py --out build/wheels --cache build/wheel-cache

# dist/evse-agent_<version>_all.deb (dpkg-deb, Debian package dpkg); checked with lintian when installed.
deb: | $(BIN)/python
	scripts/build-deb.sh --out dist --python $(BIN)/python --cache build/wheel-cache

# System packages for checking the package and the scripts (as root; Debian or Raspberry Pi OS).
deb-tools:
	apt-get install -y --no-install-recommends lintian shellcheck

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
