"""Taint eviction without servers: when a pod must leave a NoExecute-tainted node, and the default
not-ready/unreachable tolerations every new pod gets at admission."""

from __future__ import annotations

import datetime as dt
from typing import Any

from minik8s.api import kinds as k
from minik8s.api import types as t
from minik8s.apiserver.admission import AdmissionRequest, DefaultTolerationSeconds
from minik8s.controllers.nodelifecycle import NodeLifecycleController
from minik8s.controllers.tainteviction import eviction_due

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(seconds=100)


def pod(*tolerations: dict[str, Any]) -> t.Pod:
    return t.Pod.model_validate({"metadata": {"name": "p"},
                                 "spec": {"containers": [{"name": "c"}], "tolerations": list(tolerations) or None}})


def taint(key: str, effect: str = "NoExecute") -> t.Taint:
    return t.Taint(key=key, effect=effect)  # type: ignore[arg-type]


def added(_: t.Taint) -> dt.datetime:
    return T0


def test_untolerated_no_execute_taint_evicts_now() -> None:
    assert eviction_due(pod(), [taint("dedicated")], added, NOW) == NOW
    assert eviction_due(pod({"key": "other", "operator": "Exists"}), [taint("dedicated")], added, NOW) == NOW


def test_no_schedule_taints_never_evict() -> None:
    assert eviction_due(pod(), [taint("dedicated", "NoSchedule")], added, NOW) is None


def test_toleration_without_seconds_tolerates_for_ever() -> None:
    assert eviction_due(pod({"key": "dedicated", "operator": "Exists"}), [taint("dedicated")], added, NOW) is None
    assert eviction_due(pod({"operator": "Exists"}), [taint("a"), taint("b")], added, NOW) is None


def test_toleration_seconds_counts_from_when_the_taint_was_added_smallest_wins() -> None:
    p = pod({"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
            {"key": "b", "operator": "Exists", "tolerationSeconds": 600})
    assert eviction_due(p, [taint("b")], added, NOW) == T0 + dt.timedelta(seconds=600)
    assert eviction_due(p, [taint("a"), taint("b")], added, NOW) == T0 + dt.timedelta(seconds=30)
    assert eviction_due(p, [taint("a"), taint("c")], added, NOW) == NOW  # c is not tolerated at all


def test_zero_or_negative_toleration_seconds_evicts_now() -> None:
    p = pod({"key": "a", "operator": "Exists", "tolerationSeconds": 0})
    assert eviction_due(p, [taint("a")], added, NOW) == NOW


def _admit(spec: dict[str, Any], plugin: DefaultTolerationSeconds) -> list[dict[str, Any]]:
    req = AdmissionRequest("CREATE", k.lookup("Pod"), {"metadata": {"name": "p"}, "spec": spec})
    assert plugin.handles(req)
    plugin.admit(req)
    return req.obj["spec"]["tolerations"]


def test_default_toleration_seconds_added_unless_the_pod_already_tolerates() -> None:
    plugin = DefaultTolerationSeconds(not_ready_s=10, unreachable_s=20)
    tols = _admit({"containers": [{"name": "c"}]}, plugin)
    assert {(tol["key"], tol["effect"], tol["tolerationSeconds"]) for tol in tols} == {
        ("node.kubernetes.io/not-ready", "NoExecute", 10), ("node.kubernetes.io/unreachable", "NoExecute", 20)}
    own = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
           "tolerationSeconds": 5}
    tols = _admit({"containers": [{"name": "c"}], "tolerations": [own]}, plugin)
    assert [tol["key"] for tol in tols] == ["node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"]
    assert tols[0]["tolerationSeconds"] == 5
    assert _admit({"containers": [{"name": "c"}], "tolerations": [{"operator": "Exists"}]}, plugin) == \
        [{"operator": "Exists"}]  # tolerates everything for ever: nothing added


def test_node_lifecycle_taint_follows_the_ready_condition() -> None:
    def ready(status: str) -> t.Condition:
        return t.Condition(type="Ready", status=status)  # type: ignore[arg-type]

    wanted = NodeLifecycleController._wanted_taint
    assert wanted(ready("True"), silent=False) is None
    assert wanted(ready("True"), silent=True) == "node.kubernetes.io/unreachable"
    assert wanted(ready("Unknown"), silent=False) == "node.kubernetes.io/unreachable"
    assert wanted(ready("False"), silent=False) == "node.kubernetes.io/not-ready"
