"""Taint eviction: pods are deleted from nodes whose NoExecute taints they do not tolerate.

Like kube-controller-manager's taint-eviction-controller (Kubernetes 1.29+):
- a pod on a node with a NoExecute taint it does not tolerate is deleted at once;
- a pod that tolerates every NoExecute taint of its node, some of them only for `tolerationSeconds`,
  is deleted that many seconds (the smallest of its matching tolerations) after the taint was added
  (`timeAdded`, or when this controller first saw the taint if it has none);
- a toleration without tolerationSeconds tolerates the taint for ever.
The node lifecycle controller adds the unreachable/not-ready taints; users add others with
`kubectl taint`. Deletion is graceful: the pod shows Terminating and its controller replaces it.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from minik8s.api import types as t
from minik8s.client import Client, InformerFactory
from minik8s.client.events import EventRecorder
from minik8s.client.informer import informer_for
from minik8s.errors import MiniK8sError, NotFound
from minik8s.health import WATCHDOG
from minik8s.scheduler.policy import tolerates

log = logging.getLogger("minik8s.controllers.tainteviction")

NO_EXECUTE = "NoExecute"


@dataclass
class TaintEvictionConfig:
    period_s: float = 1.0  # how often tainted nodes' pods are checked (the resolution of tolerationSeconds)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _parse(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def eviction_due(pod: t.Pod, taints: list[t.Taint], added: Callable[[t.Taint], dt.datetime],
                 now: dt.datetime) -> dt.datetime | None:
    """When the pod must leave a node with `taints`: None for never, `now` when a NoExecute taint is not
    tolerated, else the earliest `added(taint) + tolerationSeconds` over its matching tolerations
    (a toleration with tolerationSeconds <= 0 evicts at once, as in Kubernetes)."""
    due: dt.datetime | None = None
    for taint in taints:
        if taint.effect != NO_EXECUTE:
            continue
        matching = [tol for tol in pod.spec.tolerations or [] if tolerates(tol, taint)]
        if not matching:
            return now
        for tol in matching:
            if tol.tolerationSeconds is None:
                continue
            when = now if tol.tolerationSeconds <= 0 else added(taint) + dt.timedelta(seconds=tol.tolerationSeconds)
            due = when if due is None else min(due, when)
    return due


class TaintEvictionController:
    def __init__(self, client: Client, config: TaintEvictionConfig | None = None,
                 clock: Callable[[], dt.datetime] = _now, informers: InformerFactory | None = None) -> None:
        self.client = client
        self.config = config or TaintEvictionConfig()
        self.clock = clock
        self.nodes = informer_for(informers, client, "Node")
        self.pods = informer_for(informers, client, "Pod")
        self.events = EventRecorder(client, "taint-eviction-controller")
        self._first_seen: dict[tuple[str, str, str | None], dt.datetime] = {}
        self._stop = threading.Event()

    def start(self) -> None:
        for inf in (self.nodes, self.pods):
            inf.start()
        for inf in (self.nodes, self.pods):
            inf.wait_synced()
        threading.Thread(target=self._loop, name="taint-eviction", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        for inf in (self.nodes, self.pods):
            inf.stop()

    def _loop(self) -> None:
        WATCHDOG.expect("taint-eviction", self.config.period_s)
        while not self._stop.wait(self.config.period_s):
            WATCHDOG.beat("taint-eviction")
            try:
                self.reconcile()
            except MiniK8sError as exc:
                log.warning("taint eviction pass failed", extra={"error": exc.message})
            except Exception:
                log.exception("taint eviction pass crashed")

    def reconcile(self) -> None:
        """One pass: nothing to do (one list of nodes) unless a node has a NoExecute taint."""
        now = self.clock()
        tainted = {n.metadata.name or "": [tn for tn in n.spec.taints or [] if tn.effect == NO_EXECUTE]
                   for n in self.nodes.list() if n.spec}
        tainted = {name: taints for name, taints in tainted.items() if taints}
        self._forget_gone_taints(tainted)
        if not tainted:
            return
        for pod in self.pods.list():
            taints = tainted.get(pod.spec.nodeName or "")
            if not taints or pod.metadata.deletionTimestamp:
                continue
            if pod.status and pod.status.phase in ("Succeeded", "Failed"):
                continue
            node = pod.spec.nodeName or ""
            due = eviction_due(pod, taints, functools.partial(self._added, node, now=now), now)
            if due is not None and due <= now:
                self._evict(pod, taints)

    def _added(self, node: str, taint: t.Taint, *, now: dt.datetime) -> dt.datetime:
        return _parse(taint.timeAdded) or self._first_seen.setdefault((node, taint.key, taint.value), now)

    def _forget_gone_taints(self, tainted: dict[str, list[t.Taint]]) -> None:
        live = {(node, tn.key, tn.value) for node, taints in tainted.items() for tn in taints}
        for key in [k for k in self._first_seen if k not in live]:
            del self._first_seen[key]

    def _evict(self, pod: t.Pod, taints: list[t.Taint]) -> None:
        name, namespace = pod.metadata.name or "", pod.metadata.namespace
        try:
            self.client.delete("Pod", name, namespace)
        except NotFound:
            return
        message = (f"Marking for deletion Pod {namespace}/{name} (node {pod.spec.nodeName} has NoExecute taint(s) "
                   f"{', '.join(tn.key for tn in taints)})")
        log.info(message)
        self.events.record(pod, "Normal", "TaintManagerEviction", message)
