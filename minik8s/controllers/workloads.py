"""Pure helpers the ReplicaSet, Deployment and garbage-collector controllers share.

No I/O here: pod readiness and availability, ranking pods for scale-down, owner references,
the pod-template hash, int-or-percent arithmetic of rolling updates, and the controllers'
"expectations" (creates and deletes issued but not yet seen through the informer).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from minik8s.api import types as t

HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
EXPECTATIONS_TTL_S = 60.0  # like Kubernetes' ExpectationsTimeout (5 min), shorter for a lab cluster
_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def parse_time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- pods ------------------------------------------------------------------------------------------

def is_terminating(pod: t.Pod) -> bool:
    return pod.metadata.deletionTimestamp is not None


def is_active(pod: t.Pod) -> bool:
    """Counts toward a ReplicaSet's replicas: not finished and not being deleted."""
    phase = pod.status.phase if pod.status else None
    return phase not in ("Succeeded", "Failed") and not is_terminating(pod)


def ready_condition(pod: t.Pod) -> t.Condition | None:
    return next((c for c in (pod.status.conditions if pod.status else None) or [] if c.type == "Ready"), None)


def is_ready(pod: t.Pod) -> bool:
    cond = ready_condition(pod)
    return cond is not None and cond.status == "True"


def is_available(pod: t.Pod, min_ready_seconds: int, at: dt.datetime) -> bool:
    """Ready for at least `min_ready_seconds` (Kubernetes' IsPodAvailable)."""
    if not is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    cond = ready_condition(pod)
    since = parse_time(cond.lastTransitionTime if cond else None)
    return since is not None and (at - since).total_seconds() >= min_ready_seconds


def deletion_rank(pod: t.Pod) -> tuple[int, int, int, float]:
    """Sort key: the pods to delete first sort first.

    Unscheduled < pending < not ready < ready; among equals, more restarts first and newer first
    (Kubernetes' ActivePods ordering, simplified).
    """
    phase = pod.status.phase if pod.status else None
    scheduled = 1 if pod.spec.nodeName else 0
    running = {"Pending": 0, "Unknown": 1, "Running": 2}.get(phase or "Pending", 0)
    ready = 1 if is_ready(pod) else 0
    restarts = sum(cs.restartCount for cs in (pod.status.containerStatuses if pod.status else None) or [])
    created = parse_time(pod.metadata.creationTimestamp)
    newer_first = -(created.timestamp() if created else 0.0)
    return (scheduled * 100 + running * 10 + ready, -restarts, 0, newer_first)


def pods_to_delete(pods: list[t.Pod], count: int) -> list[t.Pod]:
    return sorted(pods, key=deletion_rank)[:max(0, count)]


# --- owner references ------------------------------------------------------------------------------

def controller_ref(obj: Any) -> t.OwnerReference | None:
    return next((r for r in obj.metadata.ownerReferences or [] if r.controller), None)


def owner_ref(owner: Any, api_version: str, kind: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": owner.metadata.name, "uid": owner.metadata.uid,
            "controller": True, "blockOwnerDeletion": True}


# --- templates and revisions -----------------------------------------------------------------------

def template_dict(template: Any) -> dict[str, Any]:
    d = template.to_dict() if hasattr(template, "to_dict") else dict(template)
    return json.loads(json.dumps(d))


def strip_hash(template: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(template))
    labels = (out.get("metadata") or {}).get("labels")
    if labels is not None:
        labels.pop(HASH_LABEL, None)
    return out


def template_hash(template: dict[str, Any], collision_count: int = 0) -> str:
    """A short, stable, label-safe hash of a pod template (without its pod-template-hash label)."""
    data = json.dumps(strip_hash(template), sort_keys=True, separators=(",", ":")) + f"/{collision_count}"
    digest = int.from_bytes(hashlib.sha256(data.encode()).digest()[:8], "big")
    out = ""
    for _ in range(10):
        digest, rem = divmod(digest, len(_HASH_ALPHABET))
        out += _HASH_ALPHABET[rem]
    return out


def same_template(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return strip_hash(a) == strip_hash(b)


def revision_of(obj: Any) -> int:
    value = (obj.metadata.annotations or {}).get(REVISION_ANNOTATION, "0")
    try:
        return int(value)
    except ValueError:
        return 0


# --- rolling-update arithmetic ---------------------------------------------------------------------

def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """An int, or a percent of `total` rounded up (maxSurge) or down (maxUnavailable)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.endswith("%"):
        frac = int(text[:-1]) * total / 100
        return math.ceil(frac) if round_up else math.floor(frac)
    return int(text)


def resolve_fenceposts(max_surge: int | str | None, max_unavailable: int | str | None,
                       desired: int) -> tuple[int, int]:
    """(surge, unavailable) like Kubernetes' ResolveFenceposts: both 0 would stall, so unavailable becomes 1."""
    surge = scaled_value(max_surge, desired, True)
    unavailable = scaled_value(max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def new_rs_replicas(desired: int, total_current: int, new_current: int, max_surge: int) -> int:
    """How many replicas the new ReplicaSet may have now (Kubernetes' NewRSNewReplicas for RollingUpdate)."""
    if new_current >= desired:
        return desired
    max_total = desired + max_surge
    if total_current >= max_total:
        return new_current
    return new_current + min(max_total - total_current, desired - new_current)


def max_old_scale_down(desired: int, max_unavailable: int, all_replicas: int, new_replicas: int,
                       new_available: int) -> int:
    """How many old replicas may go without dropping below desired - maxUnavailable available pods."""
    min_available = desired - max_unavailable
    new_unavailable = max(0, new_replicas - new_available)
    return all_replicas - min_available - new_unavailable


# --- expectations ----------------------------------------------------------------------------------

@dataclass
class _Expect:
    adds: int = 0
    deletes: set[str] = field(default_factory=set)
    stamp: float = 0.0


class Expectations:
    """Creates and deletes a controller issued for a key and has not yet seen in its informer.

    While some are outstanding the controller does not act on its (stale) cache, so it never
    creates a second batch of pods for the same shortfall.
    """

    def __init__(self, ttl_s: float = EXPECTATIONS_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, _Expect] = {}
        self.ttl_s, self.clock = ttl_s, clock

    def expect(self, key: str, adds: int = 0, deletes: set[str] | None = None) -> None:
        with self._lock:
            self._items[key] = _Expect(adds, set(deletes or ()), self.clock())

    def creation_observed(self, key: str) -> None:
        with self._lock:
            e = self._items.get(key)
            if e is not None and e.adds > 0:
                e.adds -= 1

    def deletion_observed(self, key: str, uid: str | None) -> None:
        with self._lock:
            e = self._items.get(key)
            if e is not None and uid:
                e.deletes.discard(uid)

    def lower(self, key: str, adds: int = 0, uid: str | None = None) -> None:
        """A create or delete failed: do not wait for it."""
        with self._lock:
            e = self._items.get(key)
            if e is not None:
                e.adds = max(0, e.adds - adds)
                if uid:
                    e.deletes.discard(uid)

    def satisfied(self, key: str) -> bool:
        with self._lock:
            e = self._items.get(key)
            if e is None or (e.adds <= 0 and not e.deletes):
                return True
            return self.clock() - e.stamp > self.ttl_s

    def forget(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)
