# Quick start (README): `make run` installs into .venv and starts the application;
# `make test` installs the dev extras and runs the whole test suite.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: run test screenshots bundle install install-dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(VENV)/bin/gnft-gui --demo

test: install-dev
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

# renders docs/screenshots/*.png offscreen from the demo workspace (built first if needed)
screenshots: install
	QT_QPA_PLATFORM=offscreen $(PY) scripts/screenshots.py

# one-folder PyInstaller bundle dist/gnft-gui/, smoke-tested with its --self-test (long: see packaging/BUILD_RESULT.md)
bundle: install
	packaging/build.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
