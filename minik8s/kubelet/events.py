"""Where the runtime reports what it did to a pod (Kubernetes Events, via the kubelet)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from minik8s.api.types import Pod

log = logging.getLogger(__name__)

COMPONENT = "kubelet"
DEFAULT_DEDUP_SECONDS = 60.0
#: Above this many remembered events, expired ones are dropped.
MAX_RECENT = 1024
EVENT_SUFFIX_LEN = 16

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
    """Creates core/v1 Events through the API; repeats of one event within ``dedup_seconds`` are dropped."""

    def __init__(
        self,
        client: Any,
        node_name: str,
        component: str = COMPONENT,
        dedup_seconds: float = DEFAULT_DEDUP_SECONDS,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.component = component
        self.dedup_seconds = dedup_seconds
        self._recent: dict[tuple[str, str | None, str, str], float] = {}
        self._lock = threading.Lock()

    def _duplicate(self, key: tuple[str, str | None, str, str], now: float) -> bool:
        with self._lock:
            if len(self._recent) > MAX_RECENT:
                self._recent = {k: t for k, t in self._recent.items() if now - t < self.dedup_seconds}
            last = self._recent.get(key)
            if last is not None and now - last < self.dedup_seconds:
                return True
            self._recent[key] = now
            return False

    def event(
        self, pod: Pod, event_type: str, reason: str, message: str, container: str | None = None
    ) -> None:
        now = time.time()
        if self._duplicate((pod.metadata.uid or "", container, reason, message), now):
            return
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = pod.metadata.namespace or "default"
        involved: dict[str, Any] = {
            "kind": "Pod",
            "apiVersion": "v1",
            "namespace": namespace,
            "name": pod.name,
            "uid": pod.metadata.uid,
            "resourceVersion": pod.metadata.resourceVersion,
        }
        if container is not None:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{pod.name}.{uuid.uuid4().hex[:EVENT_SUFFIX_LEN]}", "namespace": namespace},
            "involvedObject": {k: v for k, v in involved.items() if v is not None},
            "reason": reason,
            "message": message,
            "type": event_type,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": self.component, "host": self.node_name},
            "reportingComponent": self.component,
            "reportingInstance": self.node_name,
        }
        try:
            self.client.create(body)
        except Exception as exc:  # events are best effort: never fail a pod sync over one
            log.warning(
                "could not record event", extra={"reason": reason, "pod": pod.name, "error": str(exc)}
            )
