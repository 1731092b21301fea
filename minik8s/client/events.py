"""EventRecorder: components report what happened to an object as v1 Events.

Repeats of the same (object, reason, message) bump `count` and `lastTimestamp` on one Event
instead of creating a new one, as Kubernetes' event correlator does.

An asynchronous recorder (the scheduler's) only queues the event; writer threads of its own send
them, as client-go's EventBroadcaster does, so reporting never holds up the work it reports on.
The queue is bounded: when it is full, events are dropped (and the drop is logged), never waited for.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
import uuid
from typing import Any

from minik8s.client.sdk import Client
from minik8s.errors import MiniK8sError

log = logging.getLogger("minik8s.events")

MAX_REMEMBERED = 4096
MAX_QUEUED = 10000  # asynchronous recorders: events waiting for the writers (client-go keeps 1000)
FLUSH_POLL_S = 0.01


_Queued = tuple[Any, str, str, str, str, str | None]  # object, type, reason, message, timestamp, fieldPath


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """`asynchronous`: queue events for `writers` threads; an object's events all go to one writer, so
    they are sent in order and a repeat finds the Event its first occurrence created."""

    def __init__(self, client: Client, component: str, host: str | None = None, asynchronous: bool = False,
                 max_queued: int = MAX_QUEUED, writers: int = 1) -> None:
        self.client, self.component, self.host = client, component, host
        self._seen: dict[tuple[str, str, str, str], tuple[str, str, int]] = {}
        self._lock = threading.Lock()
        self._queues: list[queue.Queue[_Queued | None]] = []
        self._writers: list[threading.Thread] = []
        if asynchronous:
            for i in range(max(1, writers)):
                q: queue.Queue[_Queued | None] = queue.Queue(max(1, max_queued // max(1, writers)))
                th = threading.Thread(target=self._write_queued, args=(q,), name=f"events-{component}-{i}",
                                      daemon=True)
                self._queues.append(q)
                self._writers.append(th)
                th.start()

    def record(self, obj: Any, type_: str, reason: str, message: str, field_path: str | None = None) -> None:
        """Never raises: an event that cannot be written (or queued) is logged and dropped. `field_path`
        names the part of the object it is about (``spec.containers{web}``)."""
        if not self._queues:
            self._write(obj, type_, reason, message, _now(), field_path)
            return
        meta = obj.metadata
        q = self._queues[hash(meta.uid or meta.name or "") % len(self._queues)]
        try:
            q.put_nowait((obj, type_, reason, message, _now(), field_path))
        except queue.Full:
            log.warning("event queue full, dropping event", extra={"reason": reason, "object": meta.name})

    def flush(self, timeout: float) -> bool:
        """Wait until every queued event was sent (or given up on); False if `timeout` ran out first."""
        deadline = time.monotonic() + timeout
        while any(q.unfinished_tasks for q in self._queues):
            if time.monotonic() > deadline:
                return False
            time.sleep(FLUSH_POLL_S)
        return True

    def close(self, timeout: float) -> None:
        """Send what is queued (up to `timeout`), then stop the writers."""
        if not self._queues:
            return
        if not self.flush(timeout):
            log.warning("closing with events unsent", extra={"component": self.component,
                                                              "queued": sum(q.qsize() for q in self._queues)})
        for q, th in zip(self._queues, self._writers, strict=True):
            try:
                q.put_nowait(None)
            except queue.Full:
                continue  # the daemon writer dies with the process
            th.join(timeout)

    def _write_queued(self, q: queue.Queue[_Queued | None]) -> None:
        while True:
            item = q.get()
            try:
                if item is None:
                    return
                self._write(*item)
            except Exception:  # a bug here must not stop every later event
                log.exception("event writer failed")
            finally:
                q.task_done()

    def _write(self, obj: Any, type_: str, reason: str, message: str, now: str, field_path: str | None) -> None:
        meta = obj.metadata
        namespace = meta.namespace or "default"
        key = (meta.uid or meta.name or "", field_path or "", reason, message)
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
                                   "name": meta.name, "namespace": meta.namespace, "uid": meta.uid,
                                   **({"fieldPath": field_path} if field_path else {})},
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
