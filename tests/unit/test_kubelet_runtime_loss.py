"""The kubelet notices a dead dockerd through its event stream: node status at once, and again (with a resync)
when dockerd is back. Fake Docker client and reporter; the real `_watch_docker` loop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from minik8s.kubelet import kubelet as kubelet_module
from minik8s.kubelet import labels as L
from tests.unit.test_kubelet_sync import make, pod

EVENT = {"Actor": {"Attributes": {L.MANAGED: "true", L.POD_NAMESPACE: "ns", L.POD_NAME: "p", L.POD_UID: "u1"}}}


class ScriptedDocker:
    """`events()` follows a script: a stream that breaks, a refused connection, a stream that ends the test."""

    def __init__(self, log: list[str], stop: threading.Event) -> None:
        self.log = log
        self.stop = stop
        self.script = ["stream-then-break", "refused", "refused", "stream-then-stop"]

    def events(self, **_: Any) -> Iterator[dict[str, Any]]:
        step = self.script.pop(0)
        if step == "refused":
            self.log.append("connect-refused")
            raise requests.exceptions.ConnectionError("Connection refused")
        self.log.append("connect")
        return self._stream(step)

    def _stream(self, step: str) -> Iterator[dict[str, Any]]:
        yield EVENT
        if step == "stream-then-break":
            self.log.append("break")
            raise requests.exceptions.ChunkedEncodingError("Connection broken: dockerd went away")
        self.stop.set()


class Reporter:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def update_status(self) -> None:
        self.log.append("node-status")


def test_dead_dockerd_posts_node_status_once_then_again_with_a_resync_when_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kubelet_module, "RUNTIME_RECONNECT_SECONDS", 0.0)
    k, _, _ = make([pod()])
    log: list[str] = []
    k.docker = ScriptedDocker(log, k._stop)  # type: ignore[assignment]
    k.reporter = Reporter(log)  # type: ignore[assignment]
    monkeypatch.setattr(k, "resync", lambda: log.append("resync"))
    th = threading.Thread(target=k._watch_docker, daemon=True)
    th.start()
    th.join(10)
    assert not th.is_alive()
    assert log == ["connect", "break", "node-status", "connect-refused", "connect-refused", "connect",
                   "node-status", "resync"]
    assert k.queue.get(timeout=0) == "ns/p"  # events seen before the break still queue their pod


def test_an_api_error_while_posting_does_not_stop_the_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kubelet_module, "RUNTIME_RECONNECT_SECONDS", 0.0)
    k, _, _ = make([pod()])
    log: list[str] = []
    k.docker = ScriptedDocker(log, k._stop)  # type: ignore[assignment]

    class DownApi:
        def update_status(self) -> None:
            log.append("node-status-failed")
            raise ConnectionError("API server unreachable")

    k.reporter = DownApi()  # type: ignore[assignment]
    monkeypatch.setattr(k, "resync", lambda: log.append("resync"))
    k._watch_docker()
    assert log[-3:] == ["connect", "node-status-failed", "resync"]
