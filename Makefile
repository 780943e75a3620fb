# hpcbridge — developer and CI entry points. Everything installs itself.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
PIP   := $(VENV)/bin/pip
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test test-pg scaleout faults install labextension stack stack-status stack-down lint bench clean

## Run the whole system on embedded defaults (no HPC, no Redis server, no JupyterHub).
demo: install
	$(VENV)/bin/hpcbridge demo

## Bring up the real stack, run every test and the linters, then the fault suite.
test: install stack
	$(VENV)/bin/ruff check .
	bash labextension/test.sh
	$(VENV)/bin/pytest -ra --durations=30 $(ON_PG:%=--ignore=%) $(PYTEST_ARGS)
	$(VENV)/bin/pytest -ra -p no:cacheprovider $(SQLITE_ONLY)
	$(MAKE) test-pg
	$(MAKE) faults

## The middleware's and the maintainer's suites run on PostgreSQL (what production runs),
## not on SQLite as well: each test's services get a new database of their own on the
## stack's PostgreSQL, migrated as in production (tests/integration/store runs on
## PostgreSQL in the main run). SQLite keeps the rest: unit tests, SDK, extension, demo,
## browser, security, scale-out. The maintainer's Slurm-heavy files (job-file faults,
## workers killed on Slurm, the Slurm handler's states) run on SQLite only: what the
## database decides there is covered by the others; ≈ 8 min here.
ON_PG := tests/integration/server tests/integration/maintainer
SQLITE_ONLY := tests/integration/maintainer/test_job_file_faults.py \
	tests/integration/maintainer/test_maintainer_faults.py \
	tests/integration/maintainer/test_maintainer_slurm.py
test-pg: install stack
	HPCBRIDGE_TEST_DB=postgresql $(VENV)/bin/pytest -ra -p no:cacheprovider $(ON_PG) \
		$(SQLITE_ONLY:%=--ignore=%)

## The scale-out test alone (tests/scaleout: 2 middlewares, 3 maintainers, PostgreSQL, 200 jobs; ~2.5 min).
scaleout: install stack
	$(VENV)/bin/pytest -ra -p no:cacheprovider tests/scaleout

## The fault suite alone (tests/faults: breaks Redis, sshd and slurmctld on purpose; slow).
faults: install stack
	HPCBRIDGE_FAULTS=1 HPCBRIDGE_FAULTS_SLURMCTLD=1 $(VENV)/bin/pytest -ra -p no:cacheprovider tests/faults

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Re-run the install only when the package definition changed.
$(VENV)/.installed: $(PY) setup.cfg pyproject.toml
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed labextension

## Build the JupyterLab panel and link it (editable installs never copy data_files).
labextension: $(VENV)/.installed
	bash labextension/build.sh $(VENV)

stack: $(VENV)/.installed
	bash stack/up.sh
	bash stack/cybergis-client.sh

stack-status:
	bash stack/status.sh

stack-down:
	bash stack/down.sh

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	cd labextension && jlpm lint

bench: install stack
	$(PY) bench/ssh_pool.py
	$(PY) bench/api.py
	$(PY) bench/poll.py
	$(PY) bench/submit.py
	$(PY) bench/sessions.py
	$(PY) bench/streams.py

clean: stack-down
	rm -rf .stack $(VENV) hpcbridge/labextension labextension/node_modules labextension/lib
