"""Pure parts of DaemonSets and ReplicationControllers: node eligibility, the daemon pod, rolling-update
choices, status counts, defaults, validation, printer columns, and the scheduler's unschedulable filter."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from minik8s.api import daemonsets as dsapi
from minik8s.api import kinds as k
from minik8s.api import replication as rcapi
from minik8s.api import types as t
from minik8s.controllers import daemonpods as dp
from minik8s.scheduler.policy import Cycle, NodeInfo, Snapshot, node_schedulable

AT = dt.datetime(2024, 1, 1, 0, 1, tzinfo=dt.UTC)


def _ds(spec: dict[str, Any] | None = None, strategy: dict[str, Any] | None = None) -> dsapi.DaemonSet:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default", "uid": "u1", "generation": 1},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "template": {"metadata": {"labels": {"app": "agent"}},
                              "spec": {"containers": [{"name": "m", "image": "busybox"}], **(spec or {})}}}}
    if strategy is not None:
        body["spec"]["updateStrategy"] = strategy
    return dsapi.DaemonSet.model_validate(body)


def _node(name: str, labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None,
          unschedulable: bool = False) -> t.Node:
    return t.Node.model_validate({"metadata": {"name": name, "labels": labels or {}},
                                  "spec": {"taints": taints, "unschedulable": unschedulable or None}})


def _pod(name: str, node: str, hash_: str, ready: bool = True, phase: str = "Running", created: int = 0,
         terminating: bool = False) -> t.Pod:
    status: dict[str, Any] = {"phase": phase}
    if ready:
        status["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]
    meta: dict[str, Any] = {"name": name, "uid": name, "labels": {"app": "agent", dp.REVISION_HASH_LABEL: hash_},
                            "creationTimestamp": f"2024-01-01T00:00:{created:02d}Z"}
    if terminating:
        meta["deletionTimestamp"] = "2024-01-01T00:00:59Z"
    return t.Pod.model_validate({"metadata": meta, "spec": {"containers": [{"name": "m", "image": "x"}],
                                                            "nodeName": node}, "status": status})


def test_defaults_and_kind_table() -> None:
    ds = _ds()
    ru = ds.spec.updateStrategy.rollingUpdate
    assert ds.spec.updateStrategy.type == "RollingUpdate" and ru is not None
    assert (ru.maxUnavailable, ru.maxSurge, ds.spec.revisionHistoryLimit) == (1, 0, 10)
    assert _ds(strategy={"type": "OnDelete"}).spec.updateStrategy.rollingUpdate is None
    assert k.lookup("ds").kind == "DaemonSet" and k.lookup("rc").kind == "ReplicationController"
    assert "scale" in k.lookup("rc").subresources and "status" in k.lookup("ds").subresources


@pytest.mark.parametrize(("rolling", "field", "text"), [
    ({"maxUnavailable": 0, "maxSurge": 0}, "maxUnavailable", "may not be 0 when `maxSurge` is 0"),
    ({"maxUnavailable": 1, "maxSurge": 1}, "maxSurge", "may not be set when maxUnavailable is non-zero"),
    ({"maxUnavailable": 0, "maxSurge": "20%"}, "maxSurge", "replaces daemon pods in place"),
    ({"maxUnavailable": "120%"}, "maxUnavailable", "must not be greater than 100%"),
])
def test_update_strategy_validation_names_the_field(rolling: dict[str, Any], field: str, text: str) -> None:
    causes = dsapi.validate_daemonset(_ds(strategy={"type": "RollingUpdate", "rollingUpdate": rolling}))
    assert any(path == f"spec.updateStrategy.rollingUpdate.{field}" and text in msg for path, msg in causes), causes


def test_selector_must_match_template() -> None:
    ds = _ds()
    ds.spec.selector = t.LabelSelector(matchLabels={"app": "other"})
    assert [c[0] for c in dsapi.validate_daemonset(ds)] == ["spec.template.metadata.labels"]
    ds.spec.selector = t.LabelSelector()
    assert "empty selector is invalid for daemonset" in dsapi.validate_daemonset(ds)[0][1]


def test_eligibility_selector_affinity_taints() -> None:
    spec = _ds({"nodeSelector": {"disk": "ssd"}}).spec.template.spec
    assert dp.should_run(spec, _node("a", {"disk": "ssd"})) == (True, True)
    assert dp.should_run(spec, _node("b", {"disk": "hdd"})) == (False, False)
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}
    spec = _ds({"affinity": affinity}).spec.template.spec
    assert dp.should_run(spec, _node("a", {"zone": "z1"}))[0] and not dp.should_run(spec, _node("a"))[0]
    plain = _ds().spec.template.spec
    no_schedule = [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]
    no_execute = [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]
    assert dp.should_run(plain, _node("a", taints=no_schedule)) == (False, True)  # a running pod may stay
    assert dp.should_run(plain, _node("a", taints=no_execute)) == (False, False)
    tolerating = _ds({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}).spec.template.spec
    assert dp.should_run(tolerating, _node("a", taints=no_execute)) == (True, True)
    # the automatic tolerations: cordoned, unreachable and under-pressure nodes keep their daemons
    for key, effect in (("node.kubernetes.io/unschedulable", "NoSchedule"),
                        ("node.kubernetes.io/unreachable", "NoExecute"),
                        ("node.kubernetes.io/memory-pressure", "NoSchedule")):
        assert dp.should_run(plain, _node("a", taints=[{"key": key, "effect": effect}])) == (True, True)
    assert dp.should_run(plain, _node("a", unschedulable=True)) == (True, True)
    assert dp.should_run(_ds({"nodeName": "b"}).spec.template.spec, _node("a")) == (False, False)


def test_daemon_pod_targets_its_node_through_match_fields() -> None:
    ds = _ds({"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                               "tolerationSeconds": 300}]})
    body = dp.pod_for(ds, "node-2", "h1", "apps/v1", "DaemonSet")
    pod = t.Pod.model_validate({**body, "metadata": {**body["metadata"], "name": "agent-x"}})
    assert dp.target_node(pod) == "node-2" and pod.spec.nodeName is None
    assert pod.metadata.labels == {"app": "agent", dp.REVISION_HASH_LABEL: "h1"}
    assert pod.metadata.ownerReferences[0].kind == "DaemonSet" and pod.metadata.ownerReferences[0].controller
    tols = pod.spec.tolerations or []
    not_ready = [x for x in tols if x.key == "node.kubernetes.io/not-ready"]
    assert len(not_ready) == 1 and not_ready[0].tolerationSeconds is None  # the user's equal one is replaced
    assert {x.key for x in tols if x.effect == "NoSchedule"} >= {"node.kubernetes.io/unschedulable"}
    info = NodeInfo(_node("node-2", unschedulable=True))
    assert info.unschedulable
    assert node_schedulable(Cycle(pod, Snapshot()), info) is None
    plain = t.Pod.model_validate({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "m", "image": "x"}]}})
    assert node_schedulable(Cycle(plain, Snapshot()), info) == "node(s) were unschedulable"


def test_plan_creates_missing_deletes_extra_failed_and_orphaned() -> None:
    spec = _ds({"nodeSelector": {"role": "edge"}}).spec.template.spec
    nodes = [_node("a", {"role": "edge"}), _node("b", {"role": "edge"}), _node("c")]
    by_node = {"b": [_pod("b1", "b", "h", created=1), _pod("b2", "b", "h", created=2)],
               "c": [_pod("c1", "c", "h")], "gone": [_pod("g1", "gone", "h")]}
    plan = dp.plan_nodes(spec, nodes, by_node)
    assert plan.create_on == ["a"]
    assert sorted((p.metadata.name, why) for p, why in plan.delete) == [
        ("b2", "extra"), ("c1", "not eligible"), ("g1", "node gone")]
    failed = dp.plan_nodes(spec, nodes[:1], {"a": [_pod("a1", "a", "h", phase="Failed", ready=False)]})
    assert [(p.metadata.name, why) for p, why in failed.delete] == [("a1", "failed")] and not failed.create_on
    # a terminating pod holds its node: the replacement comes once it is gone
    assert dp.plan_nodes(spec, nodes[:1], {"a": [_pod("a1", "a", "h", terminating=True)]}).create_on == []


def test_rolling_update_keeps_within_max_unavailable() -> None:
    nodes = [_node(n) for n in "abcd"]
    old = {n: [_pod(f"{n}1", n, "old")] for n in "abcd"}
    ds = _ds()
    h = dp.revision_hash(ds)
    assert [p.metadata.name for p in dp.rolling_deletes(ds, nodes, old, h, AT)] == ["a1"]
    # one node is already replaced but its new pod is not ready yet: nothing more may go
    progress = {**old, "a": [_pod("a2", "a", h, ready=False)]}
    assert dp.rolling_deletes(ds, nodes, progress, h, AT) == []
    # an unavailable old pod is replaced at once, on top of the budget
    broken = {**old, "b": [_pod("b1", "b", "old", ready=False)]}
    assert sorted(p.metadata.name for p in dp.rolling_deletes(ds, nodes, broken, h, AT)) == ["a1", "b1"]
    half = _ds(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}})
    assert len(dp.rolling_deletes(half, nodes, old, dp.revision_hash(half), AT)) == 2


def test_status_counts() -> None:
    ds = _ds({"nodeSelector": {"role": "edge"}})
    h = dp.revision_hash(ds)
    nodes = [_node("a", {"role": "edge"}), _node("b", {"role": "edge"}), _node("c", {"role": "edge"}), _node("d")]
    by_node = {"a": [_pod("a1", "a", h)], "b": [_pod("b1", "b", "old", ready=False)], "d": [_pod("d1", "d", h)]}
    s = dp.compute_status(ds, nodes, by_node, h, AT)
    assert (s.desiredNumberScheduled, s.currentNumberScheduled, s.numberReady, s.numberAvailable,
            s.updatedNumberScheduled, s.numberMisscheduled, s.numberUnavailable, s.observedGeneration) == (
        3, 2, 1, 1, 1, 1, 2, 1)


def test_printer_columns_match_kubectl() -> None:
    ds = _ds({"nodeSelector": {"role": "edge"}}).to_dict()
    ds["status"] = {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                    "updatedNumberScheduled": 3, "numberAvailable": 2}
    cols = [c for c in dsapi.DAEMONSET_COLUMNS if not c.wide]
    assert [c.name for c in cols] == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE",
                                      "NODE SELECTOR", "AGE"]
    assert [c.get(ds) for c in cols[:-1]] == ["agent", "3", "3", "2", "3", "2", "role=edge"]
    rc = _rc().to_dict()
    rc_cols = [c for c in rcapi.REPLICATIONCONTROLLER_COLUMNS if not c.wide]
    assert [c.name for c in rc_cols] == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    wide = {c.name: c.get(rc) for c in rcapi.REPLICATIONCONTROLLER_COLUMNS if c.wide}
    assert wide["SELECTOR"] == "app=web" and wide["IMAGES"] == "busybox"


def _rc(**spec: Any) -> rcapi.ReplicationController:
    return rcapi.ReplicationController.model_validate({
        "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "m", "image": "busybox"}]}}, **spec}})


def test_replication_controller_defaults_and_validation() -> None:
    rc = _rc()
    assert (rc.spec.replicas, rc.spec.selector, rc.metadata.labels) == (1, {"app": "web"}, {"app": "web"})
    assert rcapi.validate_replicationcontroller(rc) == []
    bad = _rc(selector={"app": "other"}, replicas=-1)
    paths = [c[0] for c in rcapi.validate_replicationcontroller(bad)]
    assert paths == ["spec.replicas", "spec.template.metadata.labels"]
    bare = rcapi.ReplicationController.model_validate({"metadata": {"name": "x"}, "spec": {}})
    assert [c[0] for c in rcapi.validate_replicationcontroller(bare)] == ["spec.selector", "spec.template"]
