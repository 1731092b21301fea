"""apps/v1 workloads: ReplicaSet and Deployment models, defaults, validation and printer columns.

Defaults live in the models (replicas 1, RollingUpdate 25%/25%, revisionHistoryLimit 10),
so the server stores and returns them and every reader sees the same values.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from minik8s.api import printers as p
from minik8s.api import types as t
from minik8s.api import validation as v
from minik8s.api.selectors import labels_match, selector_from_match

DEFAULT_REPLICAS = 1
DEFAULT_REVISION_HISTORY = 10
DEFAULT_SURGE = "25%"
DEFAULT_UNAVAILABLE = "25%"
_PERCENT = re.compile(r"^(\d+)%$")

IntOrString = int | str


class PodTemplateSpec(t.Model):
    metadata: t.ObjectMeta = Field(default_factory=t.ObjectMeta)
    spec: t.PodSpec


class ReplicaSetCondition(t.Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    lastTransitionTime: str | None = None
    lastUpdateTime: str | None = None


class ReplicaSetSpec(t.Model):
    replicas: int = DEFAULT_REPLICAS
    minReadySeconds: int | None = None
    selector: t.LabelSelector
    template: PodTemplateSpec


class ReplicaSetStatus(t.Model):
    replicas: int = 0
    fullyLabeledReplicas: int | None = None
    readyReplicas: int | None = None
    availableReplicas: int | None = None
    observedGeneration: int | None = None
    conditions: list[ReplicaSetCondition] | None = None


class ReplicaSet(t.TypedObject):
    spec: ReplicaSetSpec
    status: ReplicaSetStatus | None = None


class RollingUpdateDeployment(t.Model):
    maxSurge: IntOrString | None = None
    maxUnavailable: IntOrString | None = None


class DeploymentStrategy(t.Model):
    type: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    rollingUpdate: RollingUpdateDeployment | None = None

    @model_validator(mode="after")
    def _defaults(self) -> DeploymentStrategy:
        if self.type == "RollingUpdate":
            ru = self.rollingUpdate or RollingUpdateDeployment()
            if ru.maxSurge is None:
                ru.maxSurge = DEFAULT_SURGE
            if ru.maxUnavailable is None:
                ru.maxUnavailable = DEFAULT_UNAVAILABLE
            self.rollingUpdate = ru
        return self


class DeploymentSpec(t.Model):
    replicas: int = DEFAULT_REPLICAS
    selector: t.LabelSelector
    template: PodTemplateSpec
    strategy: DeploymentStrategy = Field(default_factory=DeploymentStrategy)
    minReadySeconds: int | None = None
    revisionHistoryLimit: int = DEFAULT_REVISION_HISTORY
    progressDeadlineSeconds: int = 600
    paused: bool | None = None


class DeploymentCondition(ReplicaSetCondition):
    pass


class DeploymentStatus(t.Model):
    observedGeneration: int | None = None
    replicas: int | None = None
    updatedReplicas: int | None = None
    readyReplicas: int | None = None
    availableReplicas: int | None = None
    unavailableReplicas: int | None = None
    conditions: list[DeploymentCondition] | None = None
    collisionCount: int | None = None


class Deployment(t.TypedObject):
    spec: DeploymentSpec
    status: DeploymentStatus | None = None


class ScaleSpec(t.Model):
    replicas: int | None = None


class ScaleStatus(t.Model):
    replicas: int = 0
    selector: str | None = None


class Scale(t.TypedObject):
    """autoscaling/v1 Scale: what `/scale` serves for ReplicaSets and Deployments."""

    spec: ScaleSpec = Field(default_factory=ScaleSpec)
    status: ScaleStatus | None = None


# --- int-or-percent ----------------------------------------------------------------------------

def check_int_or_percent(value: IntOrString | None, path: str, causes: v.Causes) -> None:
    if value is None:
        return
    if isinstance(value, int):
        if value < 0:
            causes.append((path, f"Invalid value: {value}: must be greater than or equal to 0"))
        return
    m = _PERCENT.match(value)
    if not m:
        causes.append((path, f'Invalid value: "{value}": a valid percent string must be a numeric string '
                             "followed by an ending '%' (e.g. '1%',  or '93%')"))
    elif int(m.group(1)) > 100:  # noqa: PLR2004 - percent
        causes.append((path, f'Invalid value: "{value}": must not be greater than 100%'))


# --- validation -----------------------------------------------------------------------------------

def validate_selector_and_template(sel: t.LabelSelector, template: PodTemplateSpec, replicas: int,
                                    causes: v.Causes, what: str = "deployment") -> None:
    if replicas < 0:
        causes.append(("spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0"))
    if not sel.matchLabels and not sel.matchExpressions:
        causes.append(("spec.selector", f"Invalid value: empty selector is invalid for {what}"))
    v.check_labels(sel.matchLabels, "spec.selector.matchLabels", causes)
    for i, req in enumerate(sel.matchExpressions or []):
        v._check_requirement(req, f"spec.selector.matchExpressions[{i}]", v.LABEL_OPERATORS, causes)
    v.check_labels(template.metadata.labels, "spec.template.metadata.labels", causes)
    if not any(c[0].startswith("spec.selector") for c in causes):
        reqs = selector_from_match(sel.model_dump(exclude_none=True))
        if reqs and not labels_match(reqs, template.metadata.labels):
            causes.append(("spec.template.metadata.labels",
                           f"Invalid value: {template.metadata.labels or {}}: `selector` does not match template "
                           "`labels`"))
    v.validate_pod_spec(template.spec, "spec.template.spec", causes)
    if template.spec.restartPolicy not in (None, "Always"):
        causes.append(("spec.template.spec.restartPolicy",
                       f'Unsupported value: "{template.spec.restartPolicy}": supported values: "Always"'))


def validate_replicaset(rs: ReplicaSet) -> v.Causes:
    causes: v.Causes = []
    v.check_meta(rs.metadata, causes)
    validate_selector_and_template(rs.spec.selector, rs.spec.template, rs.spec.replicas, causes)
    if rs.spec.minReadySeconds is not None and rs.spec.minReadySeconds < 0:
        causes.append(("spec.minReadySeconds", "Invalid value: must be greater than or equal to 0"))
    return causes


def validate_deployment(d: Deployment) -> v.Causes:
    causes: v.Causes = []
    v.check_meta(d.metadata, causes)
    spec = d.spec
    validate_selector_and_template(spec.selector, spec.template, spec.replicas, causes)
    if spec.minReadySeconds is not None and spec.minReadySeconds < 0:
        causes.append(("spec.minReadySeconds", "Invalid value: must be greater than or equal to 0"))
    if spec.revisionHistoryLimit < 0:
        causes.append(("spec.revisionHistoryLimit", "Invalid value: must be greater than or equal to 0"))
    ru = spec.strategy.rollingUpdate
    if spec.strategy.type == "Recreate" and ru is not None:
        causes.append(("spec.strategy.rollingUpdate", "Forbidden: may not be specified when strategy `type` is "
                                                      "'Recreate'"))
    elif ru is not None:
        check_int_or_percent(ru.maxSurge, "spec.strategy.rollingUpdate.maxSurge", causes)
        check_int_or_percent(ru.maxUnavailable, "spec.strategy.rollingUpdate.maxUnavailable", causes)
        if _is_zero(ru.maxSurge) and _is_zero(ru.maxUnavailable):
            causes.append(("spec.strategy.rollingUpdate.maxUnavailable",
                           "Invalid value: may not be 0 when `maxSurge` is 0"))
    return causes


def _is_zero(value: IntOrString | None) -> bool:
    return value in (0, "0%")


def validate_scale(scale: Scale) -> v.Causes:
    causes: v.Causes = []
    if scale.spec.replicas is not None and scale.spec.replicas < 0:
        causes.append(("spec.replicas", f"Invalid value: {scale.spec.replicas}: must be greater than or equal to 0"))
    return causes


# --- printer columns -----------------------------------------------------------------------------

def _status_int(obj: p.Obj, field: str) -> str:
    return str(int((obj.get("status") or {}).get(field) or 0))


def _spec_replicas(obj: p.Obj) -> str:
    return str(int((obj.get("spec") or {}).get("replicas", DEFAULT_REPLICAS)))


def _containers(obj: p.Obj) -> list[dict[str, Any]]:
    return list((((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or [])


def selector_string(selector: dict[str, Any] | None) -> str:
    """A LabelSelector as kubectl prints it: `app=web,tier in (a,b)`."""
    if not selector:
        return "<none>"
    parts = [f"{key}={val}" for key, val in (selector.get("matchLabels") or {}).items()]
    for e in selector.get("matchExpressions") or []:
        op, vals = e.get("operator"), ",".join(e.get("values") or [])
        parts.append({"In": f"{e['key']} in ({vals})", "NotIn": f"{e['key']} notin ({vals})",
                      "Exists": e["key"], "DoesNotExist": f"!{e['key']}"}.get(str(op), e["key"]))
    return ",".join(parts) or "<none>"


WIDE_COLUMNS = [
    p.Column("CONTAINERS", lambda o: ",".join(str(c.get("name")) for c in _containers(o)) or "<none>", wide=True),
    p.Column("IMAGES", lambda o: ",".join(str(c.get("image")) for c in _containers(o)) or "<none>", wide=True),
    p.Column("SELECTOR", lambda o: selector_string((o.get("spec") or {}).get("selector")), wide=True),
]

REPLICASET_COLUMNS = [
    p.Column("NAME", p.name), p.Column("DESIRED", _spec_replicas, type="integer"),
    p.Column("CURRENT", lambda o: _status_int(o, "replicas"), type="integer"),
    p.Column("READY", lambda o: _status_int(o, "readyReplicas"), type="integer"),
    p.Column("AGE", p.age), *WIDE_COLUMNS,
]

DEPLOYMENT_COLUMNS = [
    p.Column("NAME", p.name),
    p.Column("READY", lambda o: f"{_status_int(o, 'readyReplicas')}/{_spec_replicas(o)}"),
    p.Column("UP-TO-DATE", lambda o: _status_int(o, "updatedReplicas"), type="integer"),
    p.Column("AVAILABLE", lambda o: _status_int(o, "availableReplicas"), type="integer"),
    p.Column("AGE", p.age), *WIDE_COLUMNS,
]
