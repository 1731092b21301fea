"""apps/v1 DaemonSet: model, defaults, validation and printer columns (Kubernetes 1.32 shapes).

Defaults live in the model, as for the other workloads: `updateStrategy` RollingUpdate with
maxUnavailable 1 and maxSurge 0, revisionHistoryLimit 10. A surge rollout (maxSurge > 0) is
refused by validation with a message naming the field: the controller replaces pods in place only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from minik8s.api import apps
from minik8s.api import printers as p
from minik8s.api import types as t
from minik8s.api import validation as v

DEFAULT_MAX_UNAVAILABLE = 1
DEFAULT_MAX_SURGE = 0


class RollingUpdateDaemonSet(t.Model):
    maxUnavailable: apps.IntOrString | None = None
    maxSurge: apps.IntOrString | None = None


class DaemonSetUpdateStrategy(t.Model):
    type: Literal["RollingUpdate", "OnDelete"] = "RollingUpdate"
    rollingUpdate: RollingUpdateDaemonSet | None = None

    @model_validator(mode="after")
    def _defaults(self) -> DaemonSetUpdateStrategy:
        if self.type == "RollingUpdate":
            ru = self.rollingUpdate or RollingUpdateDaemonSet()
            if ru.maxUnavailable is None:
                ru.maxUnavailable = DEFAULT_MAX_UNAVAILABLE
            if ru.maxSurge is None:
                ru.maxSurge = DEFAULT_MAX_SURGE
            self.rollingUpdate = ru
        return self


class DaemonSetSpec(t.Model):
    selector: t.LabelSelector
    template: apps.PodTemplateSpec
    updateStrategy: DaemonSetUpdateStrategy = Field(default_factory=DaemonSetUpdateStrategy)
    minReadySeconds: int | None = None
    revisionHistoryLimit: int = apps.DEFAULT_REVISION_HISTORY


class DaemonSetCondition(apps.ReplicaSetCondition):
    pass


class DaemonSetStatus(t.Model):
    currentNumberScheduled: int = 0
    numberMisscheduled: int = 0
    desiredNumberScheduled: int = 0
    numberReady: int = 0
    observedGeneration: int | None = None
    updatedNumberScheduled: int | None = None
    numberAvailable: int | None = None
    numberUnavailable: int | None = None
    collisionCount: int | None = None
    conditions: list[DaemonSetCondition] | None = None


class DaemonSet(t.TypedObject):
    spec: DaemonSetSpec
    status: DaemonSetStatus | None = None


# --- validation -----------------------------------------------------------------------------------

def _nonzero(value: apps.IntOrString | None) -> bool:
    return value not in (None, 0, "0%")


def validate_daemonset(ds: DaemonSet) -> v.Causes:
    causes: v.Causes = []
    v.check_meta(ds.metadata, causes)
    spec = ds.spec
    apps.validate_selector_and_template(spec.selector, spec.template, 0, causes, what="daemonset")
    if spec.minReadySeconds is not None and spec.minReadySeconds < 0:
        causes.append(("spec.minReadySeconds", "Invalid value: must be greater than or equal to 0"))
    if spec.revisionHistoryLimit < 0:
        causes.append(("spec.revisionHistoryLimit", "Invalid value: must be greater than or equal to 0"))
    ru = spec.updateStrategy.rollingUpdate
    if spec.updateStrategy.type == "RollingUpdate" and ru is not None:
        path = "spec.updateStrategy.rollingUpdate"
        apps.check_int_or_percent(ru.maxUnavailable, f"{path}.maxUnavailable", causes)
        apps.check_int_or_percent(ru.maxSurge, f"{path}.maxSurge", causes)
        if not _nonzero(ru.maxUnavailable) and not _nonzero(ru.maxSurge):
            causes.append((f"{path}.maxUnavailable", "Invalid value: may not be 0 when `maxSurge` is 0"))
        elif _nonzero(ru.maxUnavailable) and _nonzero(ru.maxSurge):
            causes.append((f"{path}.maxSurge", "Invalid value: may not be set when maxUnavailable is non-zero"))
        elif _nonzero(ru.maxSurge):
            causes.append((f"{path}.maxSurge", f"Forbidden: {ru.maxSurge}: minik8s replaces daemon pods in place "
                                               "only; use maxSurge 0 with maxUnavailable > 0"))
    return causes


# --- printer columns -----------------------------------------------------------------------------

def _status_int(obj: p.Obj, field: str) -> str:
    return str(int((obj.get("status") or {}).get(field) or 0))


def _node_selector(obj: p.Obj) -> str:
    sel = ((((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeSelector") or {})
    return ",".join(f"{key}={val}" for key, val in sel.items()) or "<none>"


DAEMONSET_COLUMNS = [
    p.Column("NAME", p.name),
    p.Column("DESIRED", lambda o: _status_int(o, "desiredNumberScheduled"), type="integer"),
    p.Column("CURRENT", lambda o: _status_int(o, "currentNumberScheduled"), type="integer"),
    p.Column("READY", lambda o: _status_int(o, "numberReady"), type="integer"),
    p.Column("UP-TO-DATE", lambda o: _status_int(o, "updatedNumberScheduled"), type="integer"),
    p.Column("AVAILABLE", lambda o: _status_int(o, "numberAvailable"), type="integer"),
    p.Column("NODE SELECTOR", _node_selector),
    p.Column("AGE", p.age),
    *apps.WIDE_COLUMNS,
]
