"""autoscaling/v2 HorizontalPodAutoscaler: model, Kubernetes' defaults, validation and printer columns.

Defaults live in the model (minReplicas 1, behavior scaleUp window 0 / Pods 4 + Percent 100 per 15 s / Max,
scaleDown window 300 s / Percent 100 per 15 s), so the server stores them and every reader sees the same values.
Only `Resource` metrics (cpu, memory) are served; other metric types are rejected with their field path.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from minik8s.api import printers as p
from minik8s.api import types as t
from minik8s.api import validation as v
from minik8s.api.quantity import QuantityError, parse_quantity

DEFAULT_MIN_REPLICAS = 1
SCALE_UP_WINDOW_S = 0
SCALE_DOWN_WINDOW_S = 300
DEFAULT_PERIOD_S = 15
SCALE_UP_PODS = 4
SCALE_UP_PERCENT = 100
SCALE_DOWN_PERCENT = 100
MAX_WINDOW_S = 3600
MAX_PERIOD_S = 1800
METRIC_TYPES = ("Resource",)
RESOURCE_NAMES = ("cpu", "memory")
TARGET_KINDS = ("Deployment", "ReplicaSet")


class CrossVersionObjectReference(t.Model):
    apiVersion: str | None = None
    kind: str
    name: str


class MetricTarget(t.Model):
    type: str
    averageUtilization: int | None = None
    averageValue: t.Quantity | None = None
    value: t.Quantity | None = None


class ResourceMetricSource(t.Model):
    name: str
    target: MetricTarget


class MetricSpec(t.Model):
    type: str
    resource: ResourceMetricSource | None = None
    # other Kubernetes metric sources parse so validation can name them, but are not served
    pods: dict[str, Any] | None = None
    object: dict[str, Any] | None = None
    external: dict[str, Any] | None = None
    containerResource: dict[str, Any] | None = None


class HPAScalingPolicy(t.Model):
    type: str
    value: int
    periodSeconds: int


class HPAScalingRules(t.Model):
    stabilizationWindowSeconds: int | None = None
    selectPolicy: str | None = None
    policies: list[HPAScalingPolicy] | None = None


def default_scale_up() -> HPAScalingRules:
    return HPAScalingRules(stabilizationWindowSeconds=SCALE_UP_WINDOW_S, selectPolicy="Max",
                           policies=[HPAScalingPolicy(type="Pods", value=SCALE_UP_PODS, periodSeconds=DEFAULT_PERIOD_S),
                                     HPAScalingPolicy(type="Percent", value=SCALE_UP_PERCENT,
                                                      periodSeconds=DEFAULT_PERIOD_S)])


def default_scale_down() -> HPAScalingRules:
    return HPAScalingRules(stabilizationWindowSeconds=SCALE_DOWN_WINDOW_S, selectPolicy="Max",
                           policies=[HPAScalingPolicy(type="Percent", value=SCALE_DOWN_PERCENT,
                                                      periodSeconds=DEFAULT_PERIOD_S)])


def _fill(rules: HPAScalingRules | None, default: HPAScalingRules) -> HPAScalingRules:
    if rules is None:
        return default
    if rules.stabilizationWindowSeconds is None:
        rules.stabilizationWindowSeconds = default.stabilizationWindowSeconds
    if rules.selectPolicy is None:
        rules.selectPolicy = "Max"
    if rules.policies is None:
        rules.policies = default.policies
    return rules


class HorizontalPodAutoscalerBehavior(t.Model):
    scaleUp: HPAScalingRules | None = None
    scaleDown: HPAScalingRules | None = None

    @model_validator(mode="after")
    def _defaults(self) -> HorizontalPodAutoscalerBehavior:
        self.scaleUp = _fill(self.scaleUp, default_scale_up())
        self.scaleDown = _fill(self.scaleDown, default_scale_down())
        return self


class HorizontalPodAutoscalerSpec(t.Model):
    scaleTargetRef: CrossVersionObjectReference
    minReplicas: int = DEFAULT_MIN_REPLICAS
    maxReplicas: int
    metrics: list[MetricSpec] | None = None
    behavior: HorizontalPodAutoscalerBehavior = Field(default_factory=HorizontalPodAutoscalerBehavior)


class MetricValueStatus(t.Model):
    averageUtilization: int | None = None
    averageValue: t.Quantity | None = None
    value: t.Quantity | None = None


class ResourceMetricStatus(t.Model):
    name: str
    current: MetricValueStatus


class MetricStatus(t.Model):
    type: str
    resource: ResourceMetricStatus | None = None


class HorizontalPodAutoscalerStatus(t.Model):
    observedGeneration: int | None = None
    lastScaleTime: str | None = None
    currentReplicas: int = 0
    desiredReplicas: int = 0
    currentMetrics: list[MetricStatus] | None = None
    conditions: list[t.Condition] | None = None


class HorizontalPodAutoscaler(t.TypedObject):
    spec: HorizontalPodAutoscalerSpec
    status: HorizontalPodAutoscalerStatus | None = None


# --- validation -----------------------------------------------------------------------------------

def _check_target(target: MetricTarget, path: str, causes: v.Causes) -> None:
    if target.type == "Utilization":
        if target.averageUtilization is None:
            causes.append((f"{path}.averageUtilization", "Required value: must be set for type Utilization"))
        elif target.averageUtilization <= 0:
            causes.append((f"{path}.averageUtilization",
                           f"Invalid value: {target.averageUtilization}: must be greater than 0"))
    elif target.type == "AverageValue":
        if target.averageValue is None:
            causes.append((f"{path}.averageValue", "Required value: must be set for type AverageValue"))
        else:
            try:
                if parse_quantity(target.averageValue) <= 0:
                    causes.append((f"{path}.averageValue", "Invalid value: must be positive"))
            except QuantityError as exc:
                causes.append((f"{path}.averageValue", f"Invalid value: {exc}"))
    else:
        causes.append((f"{path}.type", f'Unsupported value: "{target.type}": supported values: '
                                       '"Utilization", "AverageValue"'))


def _check_metric(m: MetricSpec, path: str, causes: v.Causes) -> None:
    if m.type not in METRIC_TYPES:
        causes.append((f"{path}.type", f'Unsupported value: "{m.type}": supported values: "Resource"'))
        return
    if m.resource is None:
        causes.append((f"{path}.resource", "Required value: must populate information for the given metric source"))
        return
    if m.resource.name not in RESOURCE_NAMES:
        causes.append((f"{path}.resource.name", f'Unsupported value: "{m.resource.name}": supported values: '
                                                '"cpu", "memory"'))
    _check_target(m.resource.target, f"{path}.resource.target", causes)


def _check_rules(rules: HPAScalingRules | None, path: str, causes: v.Causes) -> None:
    if rules is None:
        return
    w = rules.stabilizationWindowSeconds
    if w is not None and not 0 <= w <= MAX_WINDOW_S:
        causes.append((f"{path}.stabilizationWindowSeconds", f"Invalid value: {w}: must be in [0, {MAX_WINDOW_S}]"))
    if rules.selectPolicy not in (None, "Max", "Min", "Disabled"):
        causes.append((f"{path}.selectPolicy", f'Unsupported value: "{rules.selectPolicy}": supported values: '
                                               '"Disabled", "Max", "Min"'))
    if rules.policies is not None and not rules.policies and rules.selectPolicy != "Disabled":
        causes.append((f"{path}.policies", "Required value: must specify at least one Policy"))
    for i, pol in enumerate(rules.policies or []):
        pp = f"{path}.policies[{i}]"
        if pol.type not in ("Pods", "Percent"):
            causes.append((f"{pp}.type", f'Unsupported value: "{pol.type}": supported values: "Percent", "Pods"'))
        if pol.value <= 0:
            causes.append((f"{pp}.value", f"Invalid value: {pol.value}: must be greater than zero"))
        if not 0 < pol.periodSeconds <= MAX_PERIOD_S:
            causes.append((f"{pp}.periodSeconds",
                           f"Invalid value: {pol.periodSeconds}: must be in (0, {MAX_PERIOD_S}]"))


def validate_hpa(hpa: HorizontalPodAutoscaler) -> v.Causes:
    causes: v.Causes = []
    v.check_meta(hpa.metadata, causes)
    spec = hpa.spec
    ref = spec.scaleTargetRef
    if not ref.name:
        causes.append(("spec.scaleTargetRef.name", "Required value"))
    if ref.kind not in TARGET_KINDS:
        causes.append(("spec.scaleTargetRef.kind", f'Unsupported value: "{ref.kind}": supported values: '
                                                   '"Deployment", "ReplicaSet"'))
    if ref.apiVersion not in (None, "apps/v1"):
        causes.append(("spec.scaleTargetRef.apiVersion", f'Unsupported value: "{ref.apiVersion}": supported '
                                                         'values: "apps/v1"'))
    if spec.minReplicas < 1:
        causes.append(("spec.minReplicas", f"Invalid value: {spec.minReplicas}: must be greater than or equal to 1"))
    if spec.maxReplicas < spec.minReplicas:
        causes.append(("spec.maxReplicas", f"Invalid value: {spec.maxReplicas}: must be greater than or equal to "
                                           "`minReplicas`"))
    for i, m in enumerate(spec.metrics or []):
        _check_metric(m, f"spec.metrics[{i}]", causes)
    _check_rules(spec.behavior.scaleUp, "spec.behavior.scaleUp", causes)
    _check_rules(spec.behavior.scaleDown, "spec.behavior.scaleDown", causes)
    return causes


# --- printer columns -----------------------------------------------------------------------------

def reference(obj: p.Obj) -> str:
    ref = (obj.get("spec") or {}).get("scaleTargetRef") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


def _current_of(status: p.Obj, name: str) -> p.Obj | None:
    for m in status.get("currentMetrics") or []:
        res = m.get("resource") or {}
        if m.get("type") == "Resource" and res.get("name") == name:
            return res.get("current") or {}
    return None


def targets(obj: p.Obj) -> str:
    """kubectl's TARGETS: `cpu: 37%/50%`, `memory: 12Mi/100Mi`, `<unknown>` before the first reading."""
    status = obj.get("status") or {}
    parts = []
    for m in (obj.get("spec") or {}).get("metrics") or []:
        res = m.get("resource") or {}
        if m.get("type") != "Resource" or not res:
            continue
        target, current = res.get("target") or {}, _current_of(status, res.get("name", ""))
        if target.get("type") == "Utilization":
            cur = current.get("averageUtilization") if current else None
            shown = f"{cur}%" if cur is not None else "<unknown>"
            parts.append(f"{res['name']}: {shown}/{target.get('averageUtilization')}%")
        else:
            cur = current.get("averageValue") if current else None
            parts.append(f"{res['name']}: {cur if cur is not None else '<unknown>'}/{target.get('averageValue')}")
    return ", ".join(parts) or "<none>"


HPA_COLUMNS = [
    p.Column("NAME", p.name), p.Column("REFERENCE", reference), p.Column("TARGETS", targets),
    p.Column("MINPODS", lambda o: str((o.get("spec") or {}).get("minReplicas", DEFAULT_MIN_REPLICAS)),
             type="integer"),
    p.Column("MAXPODS", lambda o: str((o.get("spec") or {}).get("maxReplicas", "")), type="integer"),
    p.Column("REPLICAS", lambda o: str((o.get("status") or {}).get("currentReplicas", 0)), type="integer"),
    p.Column("AGE", p.age),
]
