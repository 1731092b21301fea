"""v1 ReplicationController: model, defaults, validation and printer columns (Kubernetes 1.32 shapes).

The ReplicaSet's predecessor: an equality-only `selector` map instead of a LabelSelector.
As in Kubernetes' defaulting, an empty selector and empty object labels are taken from the
template's labels, and replicas defaults to 1.
"""

from __future__ import annotations

from pydantic import model_validator

from minik8s.api import apps
from minik8s.api import printers as p
from minik8s.api import types as t
from minik8s.api import validation as v


class ReplicationControllerSpec(t.Model):
    replicas: int = apps.DEFAULT_REPLICAS
    minReadySeconds: int | None = None
    selector: dict[str, str] | None = None
    template: apps.PodTemplateSpec | None = None


class ReplicationControllerStatus(apps.ReplicaSetStatus):
    pass


class ReplicationController(t.TypedObject):
    spec: ReplicationControllerSpec
    status: ReplicationControllerStatus | None = None

    @model_validator(mode="after")
    def _defaults(self) -> ReplicationController:
        template_labels = self.spec.template.metadata.labels if self.spec.template else None
        if template_labels:
            if not self.spec.selector:
                self.spec.selector = dict(template_labels)
            if not self.metadata.labels:
                self.metadata.labels = dict(template_labels)
        return self


def label_selector(rc: ReplicationController) -> t.LabelSelector:
    """The selector map as the LabelSelector the ReplicaSet machinery reads."""
    return t.LabelSelector(matchLabels=dict(rc.spec.selector or {}))


def validate_replicationcontroller(rc: ReplicationController) -> v.Causes:
    causes: v.Causes = []
    v.check_meta(rc.metadata, causes)
    spec = rc.spec
    if spec.replicas < 0:
        causes.append(("spec.replicas", f"Invalid value: {spec.replicas}: must be greater than or equal to 0"))
    if spec.minReadySeconds is not None and spec.minReadySeconds < 0:
        causes.append(("spec.minReadySeconds", "Invalid value: must be greater than or equal to 0"))
    if not spec.selector:
        causes.append(("spec.selector", "Required value"))
    v.check_labels(spec.selector, "spec.selector", causes)
    if spec.template is None:
        causes.append(("spec.template", "Required value"))
        return causes
    labels = spec.template.metadata.labels or {}
    v.check_labels(labels, "spec.template.metadata.labels", causes)
    if spec.selector and any(labels.get(key) != val for key, val in spec.selector.items()):
        causes.append(("spec.template.metadata.labels",
                       f"Invalid value: {labels}: `selector` does not match template `labels`"))
    v.validate_pod_spec(spec.template.spec, "spec.template.spec", causes)
    if spec.template.spec.restartPolicy not in (None, "Always"):
        causes.append(("spec.template.spec.restartPolicy",
                       f'Unsupported value: "{spec.template.spec.restartPolicy}": supported values: "Always"'))
    return causes


def _selector_map(obj: p.Obj) -> str:
    sel = (obj.get("spec") or {}).get("selector") or {}
    return ",".join(f"{key}={val}" for key, val in sel.items()) or "<none>"


REPLICATIONCONTROLLER_COLUMNS = [
    *apps.REPLICASET_COLUMNS[:5],
    *(c for c in apps.WIDE_COLUMNS if c.name != "SELECTOR"),
    p.Column("SELECTOR", _selector_map, wide=True),
]
