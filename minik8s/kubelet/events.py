"""Where the runtime reports what it did to a pod (Kubernetes Events, via the kubelet)."""

from __future__ import annotations

from typing import Any, Protocol

from minik8s.api.types import Pod
from minik8s.client.events import EventRecorder

COMPONENT = "kubelet"

NORMAL = "Normal"
WARNING = "Warning"


class EventSink(Protocol):
    def event(
        self, pod: Pod, event_type: str, reason: str, message: str, container: str | None = None
    ) -> None:
        """Record that something happened to ``pod`` (never raises)."""
        ...


class NullSink:
    def event(
        self, pod: Pod, event_type: str, reason: str, message: str, container: str | None = None
    ) -> None:
        return None


class ApiEventSink:
    """Pod events through the shared :class:`~minik8s.client.events.EventRecorder`: repeats of one event
    bump its count, and a background writer sends them, so a pod sync never waits on the API for one."""

    def __init__(self, client: Any, node_name: str, component: str = COMPONENT) -> None:
        self.recorder = EventRecorder(client, component, host=node_name, asynchronous=True)

    def event(
        self, pod: Pod, event_type: str, reason: str, message: str, container: str | None = None
    ) -> None:
        field_path = f"spec.containers{{{container}}}" if container is not None else None
        self.recorder.record(pod, event_type, reason, message, field_path)

    def close(self, timeout: float) -> None:
        self.recorder.close(timeout)
