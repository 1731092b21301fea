"""HPA algorithm (fake clock: times are passed in), validation of HPAs, and `top` formatting."""

from __future__ import annotations

from typing import Any

import pytest

from cli.autoscaling import format_top_nodes, format_top_pods
from minik8s.api import autoscaling as a
from minik8s.api import kinds as k
from minik8s.controllers import hpa_algo as algo
from minik8s.metrics.store import MetricsStore

OLD = 3600.0  # a pod past every initialization period


def pods(n: int, request: float = 100.0, ready: bool | None = True, age: float = OLD) -> list[algo.PodInfo]:
    return [algo.PodInfo(f"p{i}", ready, age, age, request) for i in range(n)]


def usage(*values: float) -> dict[str, float]:
    return {f"p{i}": v for i, v in enumerate(values)}


@pytest.mark.parametrize(("current", "pod_list", "use", "target", "expected"), [
    (3, pods(3), usage(100, 100, 100), 50, 6),           # 100% vs 50% → double
    (3, pods(3), usage(54, 54, 54), 50, 3),              # 8% over: inside the 10% tolerance
    (3, pods(3), usage(56, 56, 56), 50, 4),              # 12% over: ceil(3 × 1.12)
    (4, pods(4), usage(10, 10, 10, 10), 50, 1),          # 20% vs 50% → ceil(4 × 0.2)
    # one pod missing metrics on scale-up counts as 0%: ratio 2 → (100+100+0)/150 → ceil(3×1.33)=4
    (3, pods(3), usage(100, 100), 50, 4),
    # missing pod on scale-down counts as 100% of target: (10+10+50)/150 = 0.47 → ceil(3×0.47)=2
    (3, pods(3), usage(10, 10), 50, 2),
    # a pod that never became ready is ignored on scale-up (counted at 0%): (100+100+0)/300 → ceil(3×1.33)
    (3, [*pods(2), algo.PodInfo("p2", False, OLD, OLD, 100.0)], usage(100, 100, 100), 50, 4),
    # a pod that was ready and just flipped to not ready still counts (Kubernetes trusts it after start-up)
    (3, [*pods(2), algo.PodInfo("p2", False, OLD, 1.0, 100.0)], usage(100, 100, 100), 50, 6),
])
def test_propose_utilization(current: int, pod_list: list[algo.PodInfo], use: dict[str, float], target: int,
                             expected: int) -> None:
    assert algo.propose(current, pod_list, use, "cpu", target_utilization=target).replicas == expected


def test_just_started_pod_cpu_sample_is_distrusted_on_scale_up() -> None:
    # p1 became ready 5 s ago, less than one 15 s metric window: its 500% is replaced by 0% → (200+0)/200
    fresh = [*pods(1), algo.PodInfo("p1", True, 5.0, 5.0, 100.0)]
    assert algo.propose(2, fresh, usage(200, 500), "cpu", target_utilization=50, metric_window_s=15).replicas == 4
    assert algo.propose(2, fresh, usage(200, 500), "cpu", target_utilization=50).replicas == 14


def test_propose_average_value_and_reported_utilization() -> None:
    p = algo.propose(2, pods(2, request=100), usage(60, 40), "cpu", target_utilization=50)
    assert p.utilization == 50 and p.replicas == 2
    m = algo.propose(2, pods(2, request=None), usage(200e6, 200e6), "memory", target_average=100e6)  # type: ignore
    assert m.replicas == 4 and m.utilization is None


def test_missing_requests_is_an_error() -> None:
    with pytest.raises(algo.MissingRequests):
        algo.propose(1, pods(1, request=None), usage(10), "cpu", target_utilization=50)  # type: ignore[arg-type]


def rules(window: int, select: str = "Max", *policies: tuple[str, int, int]) -> algo.Rules:
    return algo.Rules(window, select, tuple(algo.Policy(t, v, p) for t, v, p in policies))


UP = rules(0, "Max", ("Pods", 4, 15), ("Percent", 100, 15))
DOWN = rules(300, "Max", ("Percent", 100, 15))


def test_scale_up_rate_policies_max_and_min() -> None:
    # Max of Pods 4 and Percent 100 from 2 → 6; Min → 4
    assert algo.decide(algo.History(), 0, 2, 20, 1, 50, UP, DOWN).replicas == 6
    up_min = rules(0, "Min", ("Pods", 4, 15), ("Percent", 100, 15))
    d = algo.decide(algo.History(), 0, 2, 20, 1, 50, up_min, DOWN)
    assert d.replicas == 4 and d.limited_reason == "ScaleUpLimit"


def test_scale_up_rate_counts_events_in_period() -> None:
    h = algo.History()
    pods_only = rules(0, "Max", ("Pods", 2, 60))
    assert algo.decide(h, 0, 1, 10, 1, 20, pods_only, DOWN).replicas == 3
    assert algo.decide(h, 15, 3, 10, 1, 20, pods_only, DOWN).replicas == 3  # 2 already added in the last 60 s
    assert algo.decide(h, 61, 3, 10, 1, 20, pods_only, DOWN).replicas == 5  # period over


def test_disabled_direction_keeps_count() -> None:
    off = rules(0, "Disabled", ("Pods", 4, 15))
    assert algo.decide(algo.History(), 0, 2, 10, 1, 20, off, DOWN).replicas == 2
    assert algo.decide(algo.History(), 0, 5, 1, 1, 20, UP, rules(0, "Disabled")).replicas == 5


def test_scale_down_stabilization_window() -> None:
    h = algo.History()
    down = rules(60, "Max", ("Percent", 100, 15))
    assert algo.decide(h, 0, 4, 4, 1, 10, UP, down).replicas == 4
    assert algo.decide(h, 30, 4, 1, 1, 10, UP, down).replicas == 4   # the 4 from t=0 is still in the window
    assert algo.decide(h, 61, 4, 1, 1, 10, UP, down).replicas == 1   # window passed


def test_scale_down_percent_policy() -> None:
    down = rules(0, "Max", ("Percent", 50, 15))
    h = algo.History()
    assert algo.decide(h, 0, 8, 1, 1, 10, UP, down).replicas == 4
    assert algo.decide(h, 5, 4, 1, 1, 10, UP, down).replicas == 4    # 4 already removed from 8 this period
    assert algo.decide(h, 16, 4, 1, 1, 10, UP, down).replicas == 2


def test_clamps() -> None:
    d = algo.decide(algo.History(), 0, 3, 10, 1, 4, UP, DOWN)
    assert d.replicas == 4 and d.limited_reason == "TooManyReplicas"
    d = algo.decide(algo.History(), 0, 3, 1, 2, 4, UP, rules(0, "Max", ("Percent", 100, 15)))
    assert d.replicas == 2 and d.limited_reason == "TooFewReplicas"
    assert algo.decide(algo.History(), 0, 9, 9, 1, 4, UP, DOWN).replicas == 4  # above max: back at once


def test_multiple_metrics_take_the_max() -> None:
    cpu = algo.propose(2, pods(2), usage(100, 100), "cpu", target_utilization=50)
    mem = algo.propose(2, pods(2, request=1000), usage(100, 100), "memory", target_utilization=50)
    assert max(cpu.replicas, mem.replicas) == 4 and mem.replicas == 1


# --- validation -----------------------------------------------------------------------------------

def hpa(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                            "maxReplicas": 4,
                            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                                "type": "Utilization", "averageUtilization": 50}}}]}
    base.update(spec)
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
            "spec": base}


def causes(obj: dict[str, Any]) -> list[tuple[str, str]]:
    return a.validate_hpa(a.HorizontalPodAutoscaler.model_validate(obj))


def test_valid_hpa_gets_kubernetes_defaults() -> None:
    model = a.HorizontalPodAutoscaler.model_validate(hpa())
    assert causes(hpa()) == []
    spec = model.to_dict()["spec"]
    assert spec["minReplicas"] == 1
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert spec["behavior"]["scaleUp"]["policies"] == [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                                       {"type": "Percent", "value": 100, "periodSeconds": 15}]
    assert k.lookup("hpa").kind == "HorizontalPodAutoscaler"


@pytest.mark.parametrize(("spec", "path"), [
    ({"minReplicas": 5}, "spec.maxReplicas"),
    ({"metrics": [{"type": "External"}]}, "spec.metrics[0].type"),
    ({"metrics": [{"type": "Resource", "resource": {"name": "gpu", "target": {"type": "Utilization",
                                                                              "averageUtilization": 5}}}]},
     "spec.metrics[0].resource.name"),
    ({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}]},
     "spec.metrics[0].resource.target.averageUtilization"),
    ({"scaleTargetRef": {"kind": "Pod", "name": "x"}}, "spec.scaleTargetRef.kind"),
    ({"behavior": {"scaleUp": {"selectPolicy": "Sometimes"}}}, "spec.behavior.scaleUp.selectPolicy"),
])
def test_invalid_hpas_name_the_field(spec: dict[str, Any], path: str) -> None:
    assert path in [c[0] for c in causes(hpa(**spec))]


def test_missing_target_is_a_shape_error() -> None:
    from pydantic import ValidationError

    from minik8s.api.validation import pydantic_causes
    body = hpa()
    del body["spec"]["scaleTargetRef"]
    with pytest.raises(ValidationError) as err:
        a.HorizontalPodAutoscaler.model_validate(body)
    assert ("spec.scaleTargetRef", "Required value") in pydantic_causes(err.value)


def test_targets_column() -> None:
    obj = hpa()
    assert a.targets(obj) == "cpu: <unknown>/50%"
    obj["status"] = {"currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {
        "averageUtilization": 37}}}]}
    assert a.targets(obj) == "cpu: 37%/50%"


# --- metrics store and top ------------------------------------------------------------------------

def test_store_replaces_per_node_and_expires() -> None:
    now = [0.0]
    store = MetricsStore(ttl_s=60, clock=lambda: now[0])
    pm = {"metadata": {"name": "a", "namespace": "default", "labels": {"app": "x"}}, "timestamp": "t",
          "window": "15s", "containers": [{"name": "c", "usage": {"cpu": "5000000n", "memory": "1024Ki"}}]}
    node = {"timestamp": "t", "window": "15s", "usage": {"cpu": "1", "memory": "1Mi"}}
    store.report("n1", {"pods": [pm], "node": node})
    assert store.get_node("n1")["usage"]["cpu"] == "1"
    assert [p["metadata"]["name"] for p in store.list_pods("default", "app=x")] == ["a"]
    assert store.list_pods("default", "app=y") == []
    store.report("n1", {"pods": []})
    assert store.list_pods(None) == []
    store.report("n1", {"pods": [pm]})
    now[0] = 61
    assert store.list_pods(None) == []


def test_top_formatting() -> None:
    pm = {"metadata": {"name": "web-1", "namespace": "default"},
          "containers": [{"name": "app", "usage": {"cpu": "250000000n", "memory": "20480Ki"}},
                         {"name": "side", "usage": {"cpu": "5m", "memory": "10Mi"}}]}
    assert format_top_pods([pm]).splitlines() == ["NAME    CPU(cores)   MEMORY(bytes)", "web-1   255m         30Mi"]
    lines = format_top_pods([pm], containers=True, all_namespaces=True).splitlines()
    assert lines[0].split() == ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert lines[1].split() == ["default", "web-1", "app", "250m", "20Mi"]
    nm = {"metadata": {"name": "node-1"}, "usage": {"cpu": "500000000n", "memory": "1Gi"}}
    node = {"metadata": {"name": "node-1"}, "status": {"allocatable": {"cpu": "2", "memory": "4Gi"}}}
    assert format_top_nodes([nm], [node]).splitlines()[1].split() == ["node-1", "500m", "25%", "1024Mi", "25%"]
