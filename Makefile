# minik8s: `make up` starts a local cluster, `make test` runs every check.
PY := .venv/bin/python
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install up down test lint unit integration e2e

install:
	@bash scripts/install.sh

up: install
	@ln -sf $(CURDIR)/.venv/bin/minik8s /usr/local/bin/minik8s
	.venv/bin/minik8s up
	@echo
	@echo "minik8s is on PATH. Try:"
	@echo "  minik8s status"
	@echo "  minik8s apply -f examples/two-containers.yaml"
	@echo "  minik8s get pods -o wide"
	@echo "  minik8s kubeconfig > kc && kubectl --kubeconfig kc get pods"

down:
	.venv/bin/minik8s down

lint: install
	.venv/bin/ruff check minik8s actors cli tests benchmarks
	.venv/bin/mypy

unit: install
	$(PY) -m pytest -q tests/unit

integration: install
	$(PY) -m pytest -q tests/integration

# chaos last: it kills and restarts the control plane under the rest of the suite's cluster
E2E := tests/e2e/test_*.py tests/e2e/chaos

e2e: install
	$(PY) -m pytest -q -x $(E2E)

test: install lint
	$(PY) -m pytest -q tests/unit tests/integration
	$(PY) -m pytest -q -x $(E2E)
