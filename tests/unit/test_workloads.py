"""Pure parts of the workload controllers: rolling-update arithmetic, scale-down ranking, hashes, validation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from click.testing import CliRunner

from minik8s.api import apps, printers
from minik8s.api import kinds as k
from minik8s.api import types as t
from minik8s.controllers import workloads as w


def _pod(name: str, node: str | None = None, phase: str = "Pending", ready: bool = False, created: int = 0,
         restarts: int = 0) -> t.Pod:
    status: dict[str, Any] = {"phase": phase}
    if ready:
        status["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]
    if restarts:
        status["containerStatuses"] = [{"name": "m", "ready": ready, "restartCount": restarts, "image": "x"}]
    return t.Pod.model_validate({
        "metadata": {"name": name, "creationTimestamp": f"2024-01-01T00:00:{created:02d}Z"},
        "spec": {"containers": [{"name": "m", "image": "x"}], **({"nodeName": node} if node else {})},
        "status": status})


def test_percentages_round_like_kubernetes() -> None:
    assert w.resolve_fenceposts("25%", "25%", 10) == (3, 2)  # surge rounds up, unavailable down
    assert w.resolve_fenceposts("25%", "25%", 1) == (1, 0)
    assert w.resolve_fenceposts(0, 0, 5) == (0, 1)  # both zero would stall: one may be unavailable
    assert w.resolve_fenceposts(2, "50%", 3) == (2, 1)


def test_new_replica_set_grows_by_surge_only() -> None:
    assert w.new_rs_replicas(desired=4, total_current=4, new_current=0, max_surge=1) == 1
    assert w.new_rs_replicas(desired=4, total_current=5, new_current=1, max_surge=1) == 1  # at the cap
    assert w.new_rs_replicas(desired=4, total_current=4, new_current=3, max_surge=2) == 4  # never past desired
    assert w.new_rs_replicas(desired=2, total_current=0, new_current=5, max_surge=1) == 2


def test_old_scale_down_keeps_minimum_available() -> None:
    # 4 desired, maxUnavailable 1: 4 old + 1 new (not yet available) -> one old may go (3 stay available)
    assert w.max_old_scale_down(4, 1, all_replicas=5, new_replicas=1, new_available=0) == 1
    assert w.max_old_scale_down(4, 0, all_replicas=5, new_replicas=1, new_available=0) == 0
    # once the new pod is available, 2 may go (5 - 3 - 0)
    assert w.max_old_scale_down(4, 1, all_replicas=5, new_replicas=1, new_available=1) == 2


def test_scale_down_ranks_unscheduled_then_not_ready_then_newest() -> None:
    pods = [_pod("ready-old", "n", "Running", True, created=1), _pod("ready-new", "n", "Running", True, created=9),
            _pod("unscheduled"), _pod("notready", "n", "Running", False), _pod("pending", "n", "Pending")]
    order = [p.metadata.name for p in w.pods_to_delete(pods, 5)]
    assert order == ["unscheduled", "pending", "notready", "ready-new", "ready-old"]
    assert [p.metadata.name for p in w.pods_to_delete(pods, 1)] == ["unscheduled"]
    crashy = [_pod("a", "n", "Running", True, created=9), _pod("b", "n", "Running", True, created=1, restarts=5)]
    assert w.pods_to_delete(crashy, 1)[0].metadata.name == "b"


def test_availability_waits_min_ready_seconds() -> None:
    pod = _pod("p", "n", "Running", True)
    ready_at = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert w.is_available(pod, 0, ready_at)
    assert not w.is_available(pod, 10, ready_at + dt.timedelta(seconds=5))
    assert w.is_available(pod, 10, ready_at + dt.timedelta(seconds=10))
    terminating = _pod("q", "n", "Running", True)
    terminating.metadata.deletionTimestamp = "2024-01-01T00:00:00Z"
    assert not w.is_active(terminating) and not w.is_active(_pod("f", "n", "Failed"))


def test_template_hash_is_stable_and_ignores_its_own_label() -> None:
    tmpl = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "m", "image": "x:1"}]}}
    h = w.template_hash(tmpl)
    assert h == w.template_hash({**tmpl, "metadata": {"labels": {"app": "web", w.HASH_LABEL: h}}})
    assert h != w.template_hash({**tmpl, "spec": {"containers": [{"name": "m", "image": "x:2"}]}})
    assert len(h) == 10 and h.isalnum() and h.islower()
    assert w.same_template(tmpl, {"metadata": {"labels": {"app": "web", w.HASH_LABEL: h}}, "spec": tmpl["spec"]})


def test_expectations_block_until_observed_or_expired() -> None:
    clock = [0.0]
    e = w.Expectations(ttl_s=10, clock=lambda: clock[0])
    e.expect("ns/rs", adds=2, deletes={"u1"})
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    e.creation_observed("ns/rs")
    assert not e.satisfied("ns/rs")
    e.deletion_observed("ns/rs", "u1")
    assert e.satisfied("ns/rs")
    e.expect("ns/rs", adds=1)
    clock[0] = 11
    assert e.satisfied("ns/rs")


def _deploy(**spec: Any) -> dict[str, Any]:
    base = {"selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "m", "image": "x"}]}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {**base, **spec}}


def test_deployment_defaults_and_validation_paths() -> None:
    d = apps.Deployment.model_validate(_deploy())
    assert d.spec.replicas == 1 and d.spec.revisionHistoryLimit == 10
    assert d.spec.strategy.type == "RollingUpdate"
    assert d.spec.strategy.rollingUpdate is not None and d.spec.strategy.rollingUpdate.maxSurge == "25%"
    assert apps.validate_deployment(d) == []
    rec = apps.Deployment.model_validate(_deploy(strategy={"type": "Recreate"}))
    assert rec.spec.strategy.rollingUpdate is None and apps.validate_deployment(rec) == []

    def paths(**spec: Any) -> list[str]:
        return [p for p, _ in apps.validate_deployment(apps.Deployment.model_validate(_deploy(**spec)))]

    assert paths(replicas=-1) == ["spec.replicas"]
    assert "spec.template.metadata.labels" in paths(selector={"matchLabels": {"app": "other"}})
    assert "spec.selector" in paths(selector={})
    assert "spec.strategy.rollingUpdate.maxUnavailable" in paths(
        strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}})
    assert "spec.strategy.rollingUpdate.maxSurge" in paths(strategy={"rollingUpdate": {"maxSurge": "150%"}})
    assert "spec.template.spec.containers[0].image" in paths(
        template={"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "m"}]}})


def test_kinds_and_columns() -> None:
    assert k.lookup("rs").kind == "ReplicaSet" and k.lookup("deploy").kind == "Deployment"
    assert "scale" in k.lookup("deployments").subresources
    d = _deploy(replicas=3)
    d["status"] = {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    headers, rows = printers.table_rows(k.lookup("deploy").columns, [d], wide=True)
    assert headers == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert rows[0][:4] == ["d", "2/3", "3", "2"] and rows[0][5:] == ["m", "x", "app=a"]
    headers, _ = printers.table_rows(k.lookup("rs").columns, [], wide=False)
    assert headers == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]


@pytest.mark.parametrize("args", [["scale", "--help"], ["rollout", "status", "--help"], ["rollout", "undo", "--help"],
                                  ["rollout", "restart", "--help"], ["rollout", "history", "--help"]])
def test_cli_help_has_examples(args: list[str]) -> None:
    from cli.main import cli
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0 and "Example:" in result.output


def test_cli_rejects_unsupported_kind() -> None:
    from cli.main import cli
    result = CliRunner().invoke(cli, ["rollout", "undo", "pod/web"])
    assert result.exit_code != 0 and "not supported" in result.output


def test_rollout_messages() -> None:
    from cli.workloads import rollout_message

    def dep(status: dict[str, Any], generation: int = 1) -> apps.Deployment:
        body = _deploy(replicas=2)
        body["metadata"]["generation"] = generation
        body["status"] = {"observedGeneration": 1, **status}
        return apps.Deployment.model_validate(body)

    assert rollout_message(dep({}, generation=2))[0] is False
    assert "1 out of 2 new replicas" in rollout_message(dep({"updatedReplicas": 1, "replicas": 2}))[1]
    assert "1 old replicas are pending" in rollout_message(dep({"updatedReplicas": 2, "replicas": 3}))[1]
    assert rollout_message(dep({"updatedReplicas": 2, "replicas": 2, "availableReplicas": 2})) == (
        True, 'deployment "d" successfully rolled out')
