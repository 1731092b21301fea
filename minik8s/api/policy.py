"""policy/v1: PodDisruptionBudget (how many of a set of pods may be down by choice) and Eviction (the
request to delete a pod that the budgets may refuse)."""

from __future__ import annotations

from typing import Any

from minik8s.api import printers as p
from minik8s.api import types as t
from minik8s.api.validation import Causes, check_label_selector, check_meta

GROUP, VERSION = "policy", "v1"
API_VERSION = f"{GROUP}/{VERSION}"


class PodDisruptionBudgetSpec(t.Model):
    minAvailable: int | str | None = None
    maxUnavailable: int | str | None = None
    selector: t.LabelSelector | None = None
    unhealthyPodEvictionPolicy: str | None = None


class PodDisruptionBudgetStatus(t.Model):
    observedGeneration: int | None = None
    disruptedPods: dict[str, str] | None = None
    disruptionsAllowed: int = 0
    currentHealthy: int = 0
    desiredHealthy: int = 0
    expectedPods: int = 0
    conditions: list[t.Condition] | None = None


class PodDisruptionBudget(t.TypedObject):
    spec: PodDisruptionBudgetSpec
    status: PodDisruptionBudgetStatus | None = None


class Eviction(t.TypedObject):
    deleteOptions: dict[str, Any] | None = None


UNHEALTHY_POLICIES = ("IfHealthyBudget", "AlwaysAllow")


def _check_int_or_percent(value: int | str, path: str, causes: Causes) -> None:
    if isinstance(value, int):
        if value < 0:
            causes.append((path, f"Invalid value: {value}: must be greater than or equal to 0"))
        return
    if not value.endswith("%") or not value[:-1].isdigit():
        causes.append((path, f'Invalid value: "{value}": a valid percent string must be a numeric string '
                             "followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is "
                             "'[0-9]+%')"))
    elif int(value[:-1]) > 100:
        causes.append((path, f'Invalid value: "{value}": must not be greater than 100%'))


def validate_pdb(pdb: PodDisruptionBudget) -> Causes:
    causes: Causes = []
    check_meta(pdb.metadata, causes)
    spec = pdb.spec
    if spec.minAvailable is not None and spec.maxUnavailable is not None:
        causes.append(("spec", "Invalid value: minAvailable and maxUnavailable cannot be both set"))
    for field in ("minAvailable", "maxUnavailable"):
        value = getattr(spec, field)
        if value is not None:
            _check_int_or_percent(value, f"spec.{field}", causes)
    if spec.selector is not None:
        check_label_selector(spec.selector, "spec.selector", causes)
    if spec.unhealthyPodEvictionPolicy is not None and spec.unhealthyPodEvictionPolicy not in UNHEALTHY_POLICIES:
        causes.append(("spec.unhealthyPodEvictionPolicy", f'Unsupported value: "{spec.unhealthyPodEvictionPolicy}"'
                                                          ': supported values: "IfHealthyBudget", "AlwaysAllow"'))
    return causes


def _budget(o: p.Obj, field: str) -> str:
    value = (o.get("spec") or {}).get(field)
    return "N/A" if value is None else str(value)


def _allowed(o: p.Obj) -> str:
    return str((o.get("status") or {}).get("disruptionsAllowed", 0))


PDB_COLUMNS = [p.Column("NAME", p.name), p.Column("MIN AVAILABLE", lambda o: _budget(o, "minAvailable")),
               p.Column("MAX UNAVAILABLE", lambda o: _budget(o, "maxUnavailable")),
               p.Column("ALLOWED DISRUPTIONS", _allowed), p.Column("AGE", p.age)]
