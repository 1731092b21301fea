"""scheduling.k8s.io/v1 PriorityClass: a name for a pod priority, resolved into `spec.priority` at admission."""

from __future__ import annotations

from typing import Literal

from minik8s.api import printers as p
from minik8s.api import types as t
from minik8s.api.validation import Causes, check_meta

GROUP, VERSION = "scheduling.k8s.io", "v1"

#: Kubernetes' HighestUserDefinablePriority: values above it belong to the built-in system classes.
HIGHEST_USER_PRIORITY = 1_000_000_000
SYSTEM_PREFIX = "system-"
#: The classes every cluster has (kube-apiserver creates them at start), name -> value.
SYSTEM_CLASSES = {"system-node-critical": 2_000_001_000, "system-cluster-critical": 2_000_000_000}
DEFAULT_PREEMPTION_POLICY = "PreemptLowerPriority"


class PriorityClass(t.TypedObject):
    value: int
    globalDefault: bool | None = None
    description: str | None = None
    preemptionPolicy: Literal["PreemptLowerPriority", "Never"] | None = None


def validate_priority_class(pc: PriorityClass) -> Causes:
    causes: Causes = []
    check_meta(pc.metadata, causes)
    name = pc.metadata.name or ""
    if name in SYSTEM_CLASSES:
        if pc.value != SYSTEM_CLASSES[name]:
            causes.append(("value", f"Invalid value: {pc.value}: the built-in class {name} has value "
                                    f"{SYSTEM_CLASSES[name]}"))
    elif name.startswith(SYSTEM_PREFIX):
        causes.append(("metadata.name", f'Invalid value: "{name}": priority class names with \'{SYSTEM_PREFIX}\' '
                                        "prefix are reserved for system use only"))
    elif pc.value > HIGHEST_USER_PRIORITY:
        causes.append(("value", f"Invalid value: {pc.value}: maximum allowed value of a user defined priority "
                                f"is {HIGHEST_USER_PRIORITY}"))
    return causes


def _value(o: p.Obj) -> str:
    return str(o.get("value", ""))


def _global_default(o: p.Obj) -> str:
    return "true" if o.get("globalDefault") else "false"


def _preemption(o: p.Obj) -> str:
    return str(o.get("preemptionPolicy") or DEFAULT_PREEMPTION_POLICY)


PRIORITY_CLASS_COLUMNS = [p.Column("NAME", p.name), p.Column("VALUE", _value, type="integer"),
                          p.Column("GLOBAL-DEFAULT", _global_default), p.Column("AGE", p.age),
                          p.Column("PREEMPTIONPOLICY", _preemption)]
