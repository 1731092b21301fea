"""PriorityClass (scheduling.k8s.io/v1) and PodDisruptionBudget (policy/v1) writes beyond validation.

- A PriorityClass's `value` and `preemptionPolicy` are immutable, and at most one class is the
  global default (kube-apiserver's Priority admission refuses a second one).
- A new PodDisruptionBudget starts with an empty status: the disruption controller writes it, and
  the Eviction subresource refuses evictions until it has (observedGeneration behind generation).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from minik8s.api.scheduling import DEFAULT_PREEMPTION_POLICY
from minik8s.api.strategy import Obj, Strategy
from minik8s.api.validation import Causes
from minik8s.errors import Invalid


class PriorityClassStrategy(Strategy):
    _lock = threading.Lock()  # the one-default check and the write happen together

    def prepare_for_create(self, obj: Obj) -> None:
        obj.setdefault("preemptionPolicy", DEFAULT_PREEMPTION_POLICY)

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        new.setdefault("preemptionPolicy", old.get("preemptionPolicy", DEFAULT_PREEMPTION_POLICY))

    def validate_update(self, new: Obj, old: Obj) -> Causes:
        causes: Causes = []
        for field in ("value", "preemptionPolicy"):
            if new.get(field) != old.get(field):
                causes.append((field, f"Invalid value: {new.get(field)!r}: field is immutable"))
        return causes

    @contextlib.contextmanager
    def write_guard(self, obj: Obj, old: Obj | None) -> Iterator[None]:
        with self._lock:
            name = obj["metadata"]["name"]
            if obj.get("globalDefault"):
                for other in self.server.list_all("PriorityClass"):
                    if other["metadata"]["name"] != name and other.get("globalDefault"):
                        raise Invalid("PriorityClass", name, [(
                            "globalDefault", f"Invalid value: true: PriorityClass {other['metadata']['name']} is "
                                             "already marked as default. Only one default can exist")],
                                      "scheduling.k8s.io")
            yield


class PodDisruptionBudgetStrategy(Strategy):
    def prepare_for_create(self, obj: Obj) -> None:
        obj["status"] = {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        """Status is the controller's and the Eviction subresource's (through the status subresource)."""
