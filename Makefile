# Two commands on a fresh machine with only Python and pip:
#   make run   - create .venv, install, create the SQLite database with demo data, serve the UI
#                with the scheduler in the same process (notifications, timers, reminders)
#   make test  - create .venv, install, run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LINT_STAMP := $(VENV)/.lint-installed

.PHONY: run test test-pg bench lint sbom clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,postgres]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/qms init --demo
	$(BIN)/qms serve --scheduler --host 127.0.0.1 --port 5000

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# the database tests again on PostgreSQL (QMS_TEST_DATABASE_URL must point at a scratch DB)
test-pg: $(STAMP)
	@test -n "$$QMS_TEST_DATABASE_URL" || { echo "set QMS_TEST_DATABASE_URL=postgresql+psycopg://..."; exit 2; }
	$(BIN)/python -m pytest tests/integration tests/web $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/engine.py --n 1000
	$(BIN)/python bench/engine.py --n 10000
	$(BIN)/python bench/web.py
	$(BIN)/python bench/kpi.py

$(LINT_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[lint]'
	touch $(LINT_STAMP)

# the static checks CI runs: style, types (workflow.spec and workflow.engine strict, the rest
# held to .ci/mypy-baseline.txt), import contracts (layers, forbidden imports, no cycles)
lint: $(LINT_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python .ci/mypy_check.py
	$(BIN)/lint-imports

$(VENV)/.sbom-installed: pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[sbom]'
	touch $(VENV)/.sbom-installed

# the product's own components (its runtime dependencies, installed alone in a clean
# environment) as a CycloneDX JSON SBOM, sbom.cdx.json; record it on this QMS's inventory
# entry with `qms sbom import sbom.cdx.json --as USER --reason "release X.Y"`
sbom: $(VENV)/.sbom-installed
	rm -rf .venv-sbom && $(PYTHON) -m venv .venv-sbom
	.venv-sbom/bin/python -m pip install --quiet '.[postgres,server]'
	$(BIN)/cyclonedx-py environment --of JSON --output-reproducible -o sbom.cdx.json .venv-sbom

clean:
	rm -rf $(VENV) .venv-sbom instance .pytest_cache
