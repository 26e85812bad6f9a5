# Two commands do all the set-up on a fresh Debian machine:
#   make demo   virtualenv + install + offline plan of the shipped `cnaf` environment
#   make test   Python and Debian test dependencies + the whole test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ENV    ?= cnaf
# Ansible content linted at the production profile (.ansible-lint).
ANSIBLE_LINT_PATHS ?= roles playbooks

.PHONY: demo test install install-test deps-debian lint molecule docs bench bench-openstack bench-bootstrap clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,lint]'

deps-debian:
	bash scripts/install-debian-deps.sh
	bash scripts/install-openstack-fixture-deps.sh
	bash scripts/install-host-fixture-deps.sh
	bash scripts/install-hub-test-deps.sh
	bash scripts/install-monitoring-test-deps.sh

demo: install
	$(BIN)/aiinfn plan $(ENV)
	@echo
	@echo "Next: look at build/$(ENV)/ (plan.json, cloud-init, k8s/), change environments/$(ENV).yaml and run"
	@echo "  $(BIN)/aiinfn diff $(ENV)            what the change does, offline"
	@echo "  $(BIN)/aiinfn new-site NAME          scaffold your own site (environment, stack file, secrets checklist)"
	@echo "  $(BIN)/aiinfn preflight $(ENV)       check the live cloud (needs a clouds.yaml entry)"
	@echo "then follow docs/operations.md (Add a site, Stand up a site) to deploy it."

lint: install-test
	$(BIN)/ruff check src stacks tests benchmarks inventory
	$(BIN)/mypy
	$(BIN)/yamllint -s environments Pulumi.yaml Pulumi.*.yaml roles playbooks
	$(BIN)/ansible-lint $(ANSIBLE_LINT_PATHS)

test: install-test deps-debian lint
	$(BIN)/python scripts/test-lanes.py $(PYTEST_ARGS)

# Only the roles' molecule scenarios (roles/*/molecule/default, on local test hosts; root), as `make test` runs them.
molecule: install-test deps-debian
	$(BIN)/pytest -p no:cacheprovider tests/integration/hosts/test_molecule.py $(PYTEST_ARGS)

docs: install
	$(BIN)/python -m aiinfn.config.reference > docs/environment-reference.md

bench: install
	$(BIN)/python benchmarks/plan.py

bench-openstack: install-test deps-debian
	$(BIN)/python benchmarks/openstack.py

bench-bootstrap: install-test deps-debian
	$(BIN)/python benchmarks/bootstrap.py

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
