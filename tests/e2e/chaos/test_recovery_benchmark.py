"""benchmarks/recovery.py in `--smoke` mode (10 pods, a 2 s outage): it kills and restarts the whole
control plane, so it runs among the chaos tests; checked for finishing and printing its ratio only."""

from __future__ import annotations

from minik8s import Client
from tests.e2e.test_benchmarks import assert_ratio, smoke


def test_recovery_benchmark_runs_and_prints_its_ratio(client: Client) -> None:
    assert_ratio("recovery", smoke("recovery"))
