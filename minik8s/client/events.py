"""EventRecorder: components report what happened to an object as v1 Events.

Repeats of the same (object, reason, message) bump `count` and `lastTimestamp` on one Event
instead of creating a new one, as Kubernetes' event correlator does.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from typing import Any

from minik8s.client.sdk import Client
from minik8s.errors import MiniK8sError

log = logging.getLogger("minik8s.events")

MAX_REMEMBERED = 4096


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str | None = None) -> None:
        self.client, self.component, self.host = client, component, host
        self._seen: dict[tuple[str, str, str], tuple[str, str, int]] = {}
        self._lock = threading.Lock()

    def record(self, obj: Any, type_: str, reason: str, message: str) -> None:
        """Never raises: an event that cannot be written is logged and dropped."""
        meta = obj.metadata
        namespace = meta.namespace or "default"
        key = (meta.uid or meta.name or "", reason, message)
        now = _now()
        try:
            with self._lock:
                seen = self._seen.get(key)
            if seen:
                name, ns, count = seen
                self.client.patch("Event", name, {"count": count + 1, "lastTimestamp": now}, ns)
                with self._lock:
                    self._seen[key] = (name, ns, count + 1)
                return
            name = f"{meta.name}.{uuid.uuid4().hex[:16]}"
            self.client.create({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {"kind": getattr(obj, "kind", None) or type(obj).__name__,
                                   "apiVersion": getattr(obj, "apiVersion", None) or "v1",
                                   "name": meta.name, "namespace": meta.namespace, "uid": meta.uid},
                "reason": reason, "message": message, "type": type_, "count": 1,
                "firstTimestamp": now, "lastTimestamp": now,
                "source": {"component": self.component, **({"host": self.host} if self.host else {})},
                "reportingComponent": self.component, "reportingInstance": self.host or self.component,
            })
            with self._lock:
                if len(self._seen) >= MAX_REMEMBERED:
                    self._seen.clear()
                self._seen[key] = (name, namespace, 1)
        except MiniK8sError as exc:
            log.warning("could not record event", extra={"reason": reason, "error": exc.message})
            with self._lock:
                self._seen.pop(key, None)
