"""The asynchronous EventRecorder (the scheduler's): queue, one writer, correlation, drops when full."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from minik8s.api import types as t
from minik8s.client.events import EventRecorder


def _pod(name: str) -> t.Pod:
    return t.Pod.model_validate({"apiVersion": "v1", "kind": "Pod",
                                 "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
                                 "spec": {"containers": [{"name": "a", "image": "busybox"}]}})


class RecordingClient:
    """Records creates and patches; `gate`, while clear, holds the writer inside its first create."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.patched: list[tuple[str, dict[str, Any]]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.entered.set()
        assert self.gate.wait(10)
        self.created.append(obj)
        return obj

    def patch(self, kind: str, name: str, patch: dict[str, Any], namespace: str | None = None) -> None:
        self.patched.append((name, patch))


def test_async_recorder_sends_in_order_and_correlates_repeats() -> None:
    client = RecordingClient()
    rec = EventRecorder(client, "default-scheduler", asynchronous=True)  # type: ignore[arg-type]
    for name in ("a", "b", "a"):
        rec.record(_pod(name), "Normal", "Scheduled", f"Successfully assigned default/{name} to n1")
    assert rec.flush(10)
    assert [e["involvedObject"]["name"] for e in client.created] == ["a", "b"]
    assert client.created[0]["source"] == {"component": "default-scheduler"}
    assert len(client.patched) == 1 and client.patched[0][1]["count"] == 2  # the repeat bumped the first
    rec.close(5)
    assert rec._writers and not any(th.is_alive() for th in rec._writers)


def test_async_recorder_drops_instead_of_waiting_when_full(caplog: pytest.LogCaptureFixture) -> None:
    client = RecordingClient()
    client.gate.clear()
    rec = EventRecorder(client, "s", asynchronous=True, max_queued=2)  # type: ignore[arg-type]
    rec.record(_pod("p0"), "Normal", "Scheduled", "m0")
    assert client.entered.wait(10)  # the writer holds p0, the queue is empty again
    with caplog.at_level(logging.WARNING, logger="minik8s.events"):
        for i in range(1, 4):
            rec.record(_pod(f"p{i}"), "Normal", "Scheduled", f"m{i}")  # p3 finds the queue full
    assert not rec.flush(0.05)  # still held
    client.gate.set()
    assert rec.flush(10)
    assert [e["involvedObject"]["name"] for e in client.created] == ["p0", "p1", "p2"]
    assert "event queue full" in caplog.text
    rec.close(5)


def test_sync_recorder_writes_before_returning() -> None:
    client = RecordingClient()
    rec = EventRecorder(client, "kubelet", host="n1")  # type: ignore[arg-type]
    rec.record(_pod("x"), "Warning", "Failed", "boom")
    assert [e["reason"] for e in client.created] == ["Failed"]
    assert client.created[0]["source"] == {"component": "kubelet", "host": "n1"}
    assert rec.flush(0) is True


def test_writers_share_the_load_and_keep_each_objects_events_together() -> None:
    client = RecordingClient()
    rec = EventRecorder(client, "s", asynchronous=True, writers=4)  # type: ignore[arg-type]
    for _ in range(3):
        for i in range(20):
            rec.record(_pod(f"p{i}"), "Normal", "Scheduled", "same message")
    assert rec.flush(10)
    assert sorted(e["involvedObject"]["name"] for e in client.created) == sorted(f"p{i}" for i in range(20))
    assert len(client.patched) == 40  # two repeats per object, each found its object's first Event
    assert sorted(p[1]["count"] for p in client.patched) == [2] * 20 + [3] * 20
    rec.close(5)


def test_kubelet_sink_events_name_the_container_and_repeats_count_per_container() -> None:
    from minik8s.kubelet.events import ApiEventSink

    client = RecordingClient()
    sink = ApiEventSink(client, "node-1")
    pod = _pod("web")
    for container in ("app", "app", "sidecar"):
        sink.event(pod, "Warning", "BackOff", "Back-off restarting failed container", container)
    sink.close(10)
    assert [e["involvedObject"]["fieldPath"] for e in client.created] == ["spec.containers{app}",
                                                                          "spec.containers{sidecar}"]
    assert client.created[0]["source"] == {"component": "kubelet", "host": "node-1"}
    assert len(client.patched) == 1 and client.patched[0][1]["count"] == 2
