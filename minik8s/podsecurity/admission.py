"""Pod Security admission: the namespace's labels choose the level a pod is held to.

As in Kubernetes: `pod-security.kubernetes.io/enforce` refuses pods that break the level; `warn`
answers with `Warning` headers; workload objects (Deployment, Job ...) are never refused, their pod
template only earns warnings, so the refusal lands on the pods their controllers make. Unlabelled
namespaces are `baseline`, the system namespace `kube-system` is `privileged` (minik8s' own pods run
there). `-version` labels take `latest` or `v1.N`; every version is evaluated as `latest`, and the
messages say `latest`, since that is what was checked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from minik8s.apiserver import audit, warnings
from minik8s.apiserver.admission import AdmissionRequest
from minik8s.errors import Forbidden, Invalid
from minik8s.podsecurity.checks import BASELINE, LEVELS, PRIVILEGED, violations

log = logging.getLogger("minik8s.podsecurity")

Obj = dict[str, Any]
LABEL_PREFIX = "pod-security.kubernetes.io/"
MODES = ("enforce", "audit", "warn")
VERSION_RE = re.compile(r"^(latest|v1\.(0|[1-9][0-9]*))$")
EVALUATED_VERSION = "latest"
DEFAULT_LEVEL = BASELINE
PRIVILEGED_NAMESPACES = ("kube-system",)
#: where each workload kind keeps its pod spec
TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "ReplicaSet": ("spec", "template", "spec"), "Deployment": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"), "StatefulSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"), "ReplicationController": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec")}


@dataclass(frozen=True)
class NamespacePolicy:
    """The levels a namespace asks for, by mode (`enforce`, `warn`, `audit`)."""

    enforce: str = DEFAULT_LEVEL
    warn: str | None = None
    audit: str | None = None

    @classmethod
    def of(cls, namespace: str, labels: dict[str, str] | None) -> NamespacePolicy:
        labels = labels or {}
        default = PRIVILEGED if namespace in PRIVILEGED_NAMESPACES else DEFAULT_LEVEL
        level = labels.get(LABEL_PREFIX + "enforce")
        return cls(enforce=level if level in LEVELS else default, warn=labels.get(LABEL_PREFIX + "warn"),
                   audit=labels.get(LABEL_PREFIX + "audit"))


def label_causes(labels: dict[str, str] | None) -> list[tuple[str, str]]:
    """Invalid pod-security labels of a Namespace, as (field path, message) causes."""
    causes = []
    for mode in MODES:
        level = (labels or {}).get(LABEL_PREFIX + mode)
        if level is not None and level not in LEVELS:
            causes.append((f"metadata.labels[{LABEL_PREFIX}{mode}]",
                           f'Unsupported value: "{level}": supported values: "privileged", "baseline", "restricted"'))
        version = (labels or {}).get(f"{LABEL_PREFIX}{mode}-version")
        if version is not None and not VERSION_RE.match(version):
            causes.append((f"metadata.labels[{LABEL_PREFIX}{mode}-version]",
                           f'Invalid value: "{version}": must be "latest" or "v1.N"'))
    return causes


def pod_spec_of(obj: Obj, kind: str) -> Obj | None:
    node: Any = obj
    for key in ("spec",) if kind == "Pod" else TEMPLATE_PATHS.get(kind, ()):
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) and kind in ("Pod", *TEMPLATE_PATHS) else None


def summary(level: str, reasons: list[str], verb: str = "violates") -> str:
    return f'{verb} PodSecurity "{level}:{EVALUATED_VERSION}": {", ".join(reasons)}'


@dataclass
class PodSecurity:
    """The validating plug-in. `namespace_labels(name)` reads a namespace's labels (None: no such namespace)."""

    namespace_labels: Callable[[str], dict[str, str] | None]
    name: str = "PodSecurity"
    handled: frozenset[str] = field(default_factory=lambda: frozenset({"Pod", "Namespace", *TEMPLATE_PATHS}))

    def handles(self, req: AdmissionRequest) -> bool:
        return req.info.kind in self.handled and req.subresource is None

    def admit(self, req: AdmissionRequest) -> None:
        kind = req.info.kind
        if kind == "Namespace":
            causes = label_causes((req.obj.get("metadata") or {}).get("labels"))
            if causes:
                raise Invalid("Namespace", str(req.obj["metadata"].get("name", "")), causes)
            return
        spec = pod_spec_of(req.obj, kind)
        if spec is None or not req.namespace:
            return
        if req.operation == "UPDATE" and req.old is not None and pod_spec_of(req.old, kind) == spec:
            return  # as Kubernetes: metadata- and status-only updates are not held to the level again
        policy = NamespacePolicy.of(req.namespace, self.namespace_labels(req.namespace))
        name = str((req.obj.get("metadata") or {}).get("name", ""))
        self._audit_and_warn(policy, spec, kind)
        reasons = violations(spec, policy.enforce)
        if not reasons:
            return
        if kind == "Pod":
            log.info("pod refused by pod security",
                     extra={"namespace": req.namespace, "pod": name, "level": policy.enforce})
            raise Forbidden(f'pods "{name}" is forbidden: {summary(policy.enforce, reasons)}',
                            {"name": name, "kind": "pods"})
        warnings.add(summary(policy.enforce, reasons, "would violate"))  # a workload: its template is only warned

    @staticmethod
    def _audit_and_warn(policy: NamespacePolicy, spec: Obj, kind: str) -> None:
        """The `warn` mode's Warning headers and the `audit` mode's audit annotations (never refusals)."""
        if kind == "Pod":
            audit.annotate(f"{LABEL_PREFIX}enforce-policy", f"{policy.enforce}:{EVALUATED_VERSION}")
        if policy.audit in LEVELS and policy.audit != PRIVILEGED:
            reasons = violations(spec, policy.audit)
            if reasons:
                audit.annotate(f"{LABEL_PREFIX}audit-violations", summary(policy.audit, reasons, "would violate"))
        if policy.warn in LEVELS and policy.warn != PRIVILEGED:
            reasons = violations(spec, policy.warn)
            if reasons:
                warnings.add(summary(policy.warn, reasons, "would violate"))
