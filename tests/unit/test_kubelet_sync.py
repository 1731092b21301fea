"""Kubelet.sync decisions with a fake API client and a fake runtime (no Docker, no API server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker

from minik8s.api.types import Pod, PodStatus
from minik8s.kubelet.kubelet import Kubelet, KubeletConfig
from minik8s.kubelet.labels import PodRef


class FakeClient:
    def __init__(self) -> None:
        self.status_writes: list[Pod] = []
        self.deleted: list[tuple[str, str, str, int | None]] = []
        self.created: list[Any] = []

    def update_status(self, obj: Pod) -> Pod:
        self.status_writes.append(obj)
        return obj

    def delete(self, kind: str, name: str, namespace: str = "default", grace_period_seconds: int | None = None) -> None:
        self.deleted.append((kind, name, namespace, grace_period_seconds))

    def create(self, obj: Any) -> Any:
        self.created.append(obj)
        return obj


class FakeRuntime:
    def __init__(self, pods: list[PodRef] | None = None) -> None:
        self.pods = pods or []
        self.calls: list[tuple[str, Any]] = []

    def list_pods(self) -> list[PodRef]:
        return list(self.pods)

    def kill_pod(self, uid: str, grace: int | None) -> None:
        self.calls.append(("kill", (uid, grace)))

    def remove_pod(self, uid: str) -> None:
        self.calls.append(("remove", uid))

    def stop_sandbox(self, uid: str) -> None:
        self.calls.append(("stop_sandbox", uid))

    def sync_pod(self, pod: Pod) -> float | None:
        self.calls.append(("sync", pod.metadata.uid))
        return 2.5

    def pod_status(self, pod: Pod) -> PodStatus:
        return PodStatus(phase="Running", podIP="10.244.1.5")


class FakeInformer:
    def __init__(self, pods: list[Pod]) -> None:
        self.pods = {f"{p.metadata.namespace}/{p.name}": p for p in pods}

    def get(self, key: str) -> Pod | None:
        return self.pods.get(key)

    def list(self) -> list[Pod]:
        return list(self.pods.values())


def make(pods: list[Pod], runtime_pods: list[PodRef] | None = None) -> tuple[Kubelet, FakeClient, FakeRuntime]:
    client = FakeClient()
    offline = docker.DockerClient(base_url="unix:///nonexistent.sock", version="1.41")
    k = Kubelet(KubeletConfig(node_name="n1", node_ip="10.200.0.2", pods_dir=Path("/nonexistent")), client, offline)
    rt = FakeRuntime(runtime_pods)
    k.runtime = rt  # type: ignore[assignment]
    k.informer = FakeInformer(pods)  # type: ignore[assignment]
    return k, client, rt


def pod(uid: str = "u1", **meta: Any) -> Pod:
    return Pod.model_validate({"metadata": {"name": "p", "namespace": "ns", "uid": uid, **meta},
                               "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 7,
                                        "containers": [{"name": "a", "image": "busybox"}]}})


def test_sync_runs_pod_writes_status_once_and_returns_requeue() -> None:
    p = pod()
    k, client, rt = make([p])
    assert k.sync("ns/p") == 2.5
    assert ("sync", "u1") in rt.calls
    assert len(client.status_writes) == 1 and client.status_writes[0].status.podIP == "10.244.1.5"  # type: ignore[union-attr]
    assert p.status is None  # the cached object was not mutated
    p.status = client.status_writes[0].status
    k.sync("ns/p")
    assert len(client.status_writes) == 1  # unchanged status: no write


def test_deleting_pod_is_killed_with_its_grace_then_deleted_for_real() -> None:
    p = pod(deletionTimestamp="2027-01-15T08:00:00Z", deletionGracePeriodSeconds=3)
    k, client, rt = make([p])
    assert k.sync("ns/p") is None
    assert rt.calls == [("kill", ("u1", 3)), ("remove", "u1")]
    assert client.deleted == [("Pod", "p", "ns", 0)]
    assert k.events.recorder.flush(5)  # events are sent by the recorder's writer thread
    assert any(e["reason"] == "Killing" for e in client.created)


def test_pod_gone_from_api_and_replaced_pod_orphans_are_removed() -> None:
    k, client, rt = make([], [PodRef("old", "ns", "p")])
    k.sync("ns/p")
    assert k.wait_for_kills(5)
    assert rt.calls == [("kill", ("old", 1)), ("remove", "old")]
    k, client, rt = make([pod("new")], [PodRef("old", "ns", "p"), PodRef("new", "ns", "p")])
    k.sync("ns/p")
    assert k.wait_for_kills(5)
    assert ("remove", "old") in rt.calls and ("remove", "new") not in rt.calls and ("sync", "new") in rt.calls


def test_finished_pod_is_not_restarted() -> None:
    p = pod()
    p.status = PodStatus(phase="Succeeded")
    k, client, rt = make([p])
    k.sync("ns/p")
    assert rt.calls == [("stop_sandbox", "u1")] and not client.status_writes
