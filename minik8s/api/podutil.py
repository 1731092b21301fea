"""Small facts about pods that several components read the same way (disruption budgets, eviction, preemption)."""

from __future__ import annotations

from typing import Any

from minik8s.api import types as t
from minik8s.scheduler.affinity import selector_matches

Obj = dict[str, Any]
TERMINAL_PHASES = ("Succeeded", "Failed")


def is_ready(pod: Obj) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def selects(selector: Obj | None, pod: Obj) -> bool:
    """policy/v1 semantics: a missing selector selects no pod, an empty one every pod of the namespace."""
    if selector is None:
        return False
    return selector_matches(t.LabelSelector.model_validate(selector), (pod.get("metadata") or {}).get("labels") or {})


def budgets_for(pod: Obj, pdbs: list[Obj]) -> list[Obj]:
    """The PodDisruptionBudgets (of the pod's namespace) whose selector selects the pod."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    return [b for b in pdbs if (b.get("metadata") or {}).get("namespace", "default") == ns
            and selects((b.get("spec") or {}).get("selector"), pod)]


def is_sidecar(container: t.Container) -> bool:
    """A native sidecar: an init container with ``restartPolicy: Always`` (runs alongside the app containers)."""
    return container.restartPolicy == "Always"


def sidecars(pod: t.Pod) -> list[t.Container]:
    """The pod's native sidecars, in declaration order."""
    return [c for c in pod.spec.initContainers or [] if is_sidecar(c)]


def long_running(pod: t.Pod) -> list[t.Container]:
    """Containers that run alongside each other once the pod is initialized (probed, counted in READY)."""
    return [*sidecars(pod), *pod.spec.containers]
