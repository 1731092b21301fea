"""Every benchmark still runs: each in its `--smoke` mode (smallest sizes, seconds), checked only for
finishing and printing its ratio, never for its numbers (timing never decides a test).

The standalone ones build their own etcd, API server, testbed netns or dockerd beside the cluster;
the others measure the e2e session's cluster. `benchmarks/recovery.py` kills the control plane, so
it runs with the chaos tests (tests/e2e/chaos/test_recovery_benchmark.py).
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from minik8s import Client
from tests.e2e.conftest import REPO

SMOKE_TIMEOUT_S = 300


def smoke(name: str) -> str:
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--smoke"], cwd=REPO, capture_output=True,
                          text=True, timeout=SMOKE_TIMEOUT_S)
    assert proc.returncode == 0, f"benchmarks/{name}.py --smoke exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def assert_ratio(name: str, out: str) -> None:
    """A ratio line: the word, or a figure such as `8.67x`."""
    found = "ratio" in out.lower() or re.search(r"\d\.\d+x\b", out)
    assert found, f"benchmarks/{name}.py --smoke printed no ratio:\n{out}"


@pytest.mark.parametrize("name", ["dns", "scheduler", "service_proxy", "pod_network", "gateway", "hpa", "api_auth",
                                  "api_security", "kubelet_tls", "list_pods", "portforward_local"])
def test_standalone_benchmark_runs_and_prints_its_ratio(name: str) -> None:
    assert_ratio(name, smoke(name))


@pytest.mark.parametrize("name", ["cli", "exec", "portforward", "pod_startup", "netpol"])
def test_cluster_benchmark_runs_and_prints_its_ratio(client: Client, name: str) -> None:
    assert_ratio(name, smoke(name))
