"""Kubernetes' Priority admission plug-in and the built-in PriorityClasses.

A new pod's `priorityClassName` (or, without one, the global-default class) is resolved into
`spec.priority` and `spec.preemptionPolicy`; a name that matches no class is refused, and so is an
explicit `spec.priority`/`preemptionPolicy` that disagrees with the class (the class is the only
way to set them, as in Kubernetes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from minik8s.api import kinds as k
from minik8s.api.scheduling import DEFAULT_PREEMPTION_POLICY, SYSTEM_CLASSES
from minik8s.apiserver.admission import AdmissionRequest
from minik8s.errors import AlreadyExists, Forbidden

log = logging.getLogger("minik8s.apiserver.admission")

Obj = dict[str, Any]
ListClasses = Callable[[], list[Obj]]


class PriorityAdmission:
    name = "Priority"

    def __init__(self, list_classes: ListClasses) -> None:
        self._list = list_classes

    def handles(self, req: AdmissionRequest) -> bool:
        return req.info.kind == "Pod" and req.operation == "CREATE" and req.subresource is None

    def _resolve(self, class_name: str | None, pod_name: str) -> tuple[str | None, int, str]:
        classes = {c["metadata"]["name"]: c for c in self._list()}
        if class_name:
            pc = classes.get(class_name)
            if pc is None:
                raise Forbidden(f'pods "{pod_name}" is forbidden: no PriorityClass with name {class_name} was found')
        else:
            pc = next((c for c in classes.values() if c.get("globalDefault")), None)
            if pc is None:
                return None, 0, DEFAULT_PREEMPTION_POLICY
        return pc["metadata"]["name"], int(pc["value"]), str(pc.get("preemptionPolicy") or DEFAULT_PREEMPTION_POLICY)

    def admit(self, req: AdmissionRequest) -> None:
        spec = req.obj.get("spec")
        if not isinstance(spec, dict):
            return
        pod_name = str((req.obj.get("metadata") or {}).get("name") or "")
        class_name, value, policy = self._resolve(spec.get("priorityClassName"), pod_name)
        given = spec.get("priority")
        if given is not None and given != value:
            raise Forbidden(f'pods "{pod_name}" is forbidden: the integer value of priority ({given}) must not be '
                            f"provided in pod spec; priority admission controller computed {value} from the given "
                            "PriorityClass name")
        given_policy = spec.get("preemptionPolicy")
        if given_policy is not None and given_policy != policy:
            raise Forbidden(f'pods "{pod_name}" is forbidden: the string value of PreemptionPolicy ({given_policy}) '
                            f"must not be provided in pod spec; priority admission controller computed {policy} "
                            "from given PriorityClass name")
        if class_name:
            spec["priorityClassName"] = class_name
        spec["priority"] = value
        spec["preemptionPolicy"] = policy


def ensure_system_priority_classes(create: Callable[[k.KindInfo, Obj], Obj]) -> None:
    """The built-in classes, made at API server start as kube-apiserver does (kept if they exist)."""
    info = k.lookup("PriorityClass")
    for name, value in SYSTEM_CLASSES.items():
        body = {"apiVersion": info.api_version, "kind": info.kind, "metadata": {"name": name}, "value": value,
                "description": "Used for system critical pods that must not be moved from their current node."
                if name == "system-node-critical" else "Used for system critical pods that must run in the "
                                                       "cluster, but can be moved to another node if necessary."}
        try:
            create(info, body)
            log.info("created priority class", extra={"priorityclass": name})
        except AlreadyExists:
            continue
