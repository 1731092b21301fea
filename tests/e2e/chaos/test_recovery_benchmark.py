"""benchmarks/recovery.py (10 pods, a 2 s outage) and chaos_loop.py (one round) in `--smoke` mode: they kill
and restart the whole control plane, so they run among the chaos tests; checked for finishing and printing
their ratio only."""

from __future__ import annotations

from minik8s import Client
from tests.e2e.conftest import leave_ray
from tests.e2e.test_benchmarks import assert_ratio, smoke


def test_recovery_benchmark_runs_and_prints_its_ratio(client: Client) -> None:
    leave_ray()  # the benchmark kills the Ray head: a driver left in this process would take pytest down with it
    assert_ratio("recovery", smoke("recovery"))


def test_chaos_loop_benchmark_runs_and_prints_its_ratio(client: Client) -> None:
    leave_ray()
    assert_ratio("chaos_loop", smoke("chaos_loop"))
