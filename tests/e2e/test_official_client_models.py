"""The official `kubernetes` Python client reads every object we serve, in every state a pod or Job reaches.

Its typed models refuse an object that lacks a field Kubernetes always sets (a container status without
`imageID` once rejected a whole pod list), so each state is produced here, in a namespace of its own, and
read back through the typed API; then every kind of the cluster (what the other tests left too) is
listed across namespaces through its typed `list_*` call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from minik8s import Client
from minik8s.api.kinds import KINDS, KindInfo
from tests.e2e.conftest import unique, wait_for

STATE_TIMEOUT_S = 90.0


def api_class(info: KindInfo) -> str:
    """The client's API class of a group/version: `apps` v1 -> AppsV1Api, `` v1 -> CoreV1Api."""
    group = info.group.replace(".k8s.io", "")
    name = "".join(part.capitalize() for part in group.split(".")) if group else "Core"
    return f"{name}{info.version.capitalize()}Api"


def list_method(info: KindInfo) -> str:
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", info.kind).lower()
    return f"list_{snake}_for_all_namespaces" if info.namespaced else f"list_{snake}"


@pytest.fixture(scope="module")
def k8s(kubeconfig: Path) -> Any:
    from kubernetes import config

    return config.new_client_from_config(str(kubeconfig))


@pytest.fixture(scope="module")
def namespace(client: Client) -> Iterator[str]:
    name = unique("models")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    client.delete("Namespace", name)


def pod(name: str, command: str, restart: str = "Always", image: str = "busybox", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": image, "command": ["sh", "-c", command]}], **spec}}


def job(name: str, command: str) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", command]}]}}}}


def waiting_reason(p: Any) -> str | None:
    statuses = p.status.container_statuses or []
    return statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else None


def test_every_pod_and_job_state_reads_through_the_typed_models(client: Client, k8s: Any, namespace: str) -> None:
    from kubernetes import client as kc

    core, batch = kc.CoreV1Api(k8s), kc.BatchV1Api(k8s)
    states: dict[str, tuple[dict[str, Any], Callable[[Any], bool]]] = {
        "unschedulable": (pod("unsched", "sleep 3600", nodeSelector={"no-such-label": "x"}),
                          lambda p: p.status.phase == "Pending" and any(
                              c.type == "PodScheduled" and c.status == "False" for c in p.status.conditions or [])),
        "bad image": (pod("badimage", "true", image="no-such-image-here:1"),
                      lambda p: waiting_reason(p) in ("ErrImagePull", "ImagePullBackOff")),
        "crash loop": (pod("crashloop", "exit 3"), lambda p: waiting_reason(p) == "CrashLoopBackOff"),
        "succeeded": (pod("done", "true", restart="Never"), lambda p: p.status.phase == "Succeeded"),
        "failed": (pod("failed", "exit 1", restart="Never"), lambda p: p.status.phase == "Failed"),
        "running": (pod("running", "sleep 3600"), lambda p: p.status.phase == "Running"),
    }
    for manifest, _ in states.values():
        client.create(manifest, namespace)
    client.create(job("job-ok", "true"), namespace)
    client.create(job("job-bad", "exit 1"), namespace)

    def pod_in(name: str, reached: Callable[[Any], bool]) -> Callable[[], Any]:
        def probe() -> Any:
            p = core.read_namespaced_pod(name, namespace)
            return p if reached(p) else None
        return probe

    def job_in(name: str, condition: str) -> Callable[[], bool]:
        def probe() -> bool:
            conditions = batch.read_namespaced_job(name, namespace).status.conditions or []
            return any(c.type == condition and c.status == "True" for c in conditions)
        return probe

    for state, (manifest, reached) in states.items():
        name = manifest["metadata"]["name"]
        assert wait_for(f"pod {name} {state}", pod_in(name, reached), timeout=STATE_TIMEOUT_S).metadata.name == name
    for name, condition in (("job-ok", "Complete"), ("job-bad", "Failed")):
        wait_for(f"job {name} {condition}", job_in(name, condition), timeout=STATE_TIMEOUT_S)

    # terminating: a container that ignores SIGTERM, deleted with a grace period, is listed with its deletionTimestamp
    stubborn = pod("terminating", "trap '' TERM; while :; do sleep 1; done")
    stubborn["spec"]["terminationGracePeriodSeconds"] = 60
    client.create(stubborn, namespace)
    wait_for("terminating pod running", pod_in("terminating", lambda p: p.status.phase == "Running"),
             timeout=STATE_TIMEOUT_S)
    core.delete_namespaced_pod("terminating", namespace, grace_period_seconds=60)
    try:
        listed = {p.metadata.name: p for p in core.list_namespaced_pod(namespace).items}
        assert listed["terminating"].metadata.deletion_timestamp is not None
        assert {"unsched", "badimage", "crashloop", "done", "failed", "running"} <= set(listed)
        job_pods = [p for p in listed.values() if (p.metadata.labels or {}).get("job-name")]
        assert {p.metadata.labels["job-name"] for p in job_pods} == {"job-ok", "job-bad"}
    finally:
        core.delete_namespaced_pod("terminating", namespace, grace_period_seconds=0)


def test_every_kind_lists_through_its_typed_call(client: Client, k8s: Any, namespace: str) -> None:
    """Everything in the cluster at this point: the states above, the system namespace's objects, and
    whatever the earlier tests left behind."""
    import kubernetes.client as kc

    listed: dict[str, int] = {}
    for info in KINDS:
        if info.group == "minik8s.io":  # our own kinds: the client has no typed model of them
            continue
        api = getattr(kc, api_class(info))(k8s)
        items = getattr(api, list_method(info))().items  # the typed models parse every item or raise
        listed[info.kind] = len(items)
    assert listed["Namespace"] >= 2 and listed["Node"] == 3 and listed["Pod"] >= 6 and listed["Job"] >= 2
    assert listed["ServiceAccount"] >= 2 and listed["ClusterRole"] > 0
