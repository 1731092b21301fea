"""Where strategic merge patch merges lists instead of replacing them, per kind and field path.

Kubernetes reads this from `patchStrategy`/`patchMergeKey` struct tags on its Go types (the same tags
kubectl compiles in to compute `kubectl apply` patches); the table below copies those tags for the
kinds minik8s serves. A path is the dotted field names from the object root; list elements add no
segment (`spec.template.spec.containers.ports` are the ports of every container). A list not in the
table is atomic: a patch replaces it whole, as Kubernetes does for fields without a patch strategy.
(`$retainKeys`, Kubernetes' other strategy, is honoured wherever a patch has it.)

A kind that embeds a pod template registers it with :func:`pod_template` at its path, so a new
workload kind (Job, DaemonSet, StatefulSet, CronJob at `spec.jobTemplate.spec.template`) gets every
pod list's merge key with one line.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ListStrategy:
    """How a strategic merge patch treats one list: merged by `key` (a field of each element), or, with
    key None, a set of primitives merged by value (`finalizers`)."""

    key: str | None


PathTable = dict[str, ListStrategy]

BY_KEY = ListStrategy  # short alias for the table rows below
PRIMITIVE_SET = ListStrategy(None)

#: ObjectMeta, on every kind.
OBJECT_META: PathTable = {
    "metadata.finalizers": PRIMITIVE_SET,
    "metadata.ownerReferences": BY_KEY("uid"),
}

#: core/v1 Container (containers, initContainers; EphemeralContainerCommon has the same tags).
_CONTAINER: PathTable = {
    "ports": BY_KEY("containerPort"),
    "env": BY_KEY("name"),
    "volumeMounts": BY_KEY("mountPath"),
    "volumeDevices": BY_KEY("devicePath"),
}

#: core/v1 PodSpec (envFrom, tolerations, readinessGates, resizePolicy have no strategy: atomic).
_POD_SPEC: PathTable = {
    "volumes": BY_KEY("name"),
    "imagePullSecrets": BY_KEY("name"),
    "hostAliases": BY_KEY("ip"),
    "topologySpreadConstraints": BY_KEY("topologyKey"),
    "schedulingGates": BY_KEY("name"),
    "resourceClaims": BY_KEY("name"),
    **{f"{lst}": BY_KEY("name") for lst in ("containers", "initContainers", "ephemeralContainers")},
    **{f"{lst}.{path}": strat for lst in ("containers", "initContainers", "ephemeralContainers")
       for path, strat in _CONTAINER.items()},
}

#: core/v1 PodStatus.
_POD_STATUS: PathTable = {
    "conditions": BY_KEY("type"),
    "podIPs": BY_KEY("ip"),
    "hostIPs": BY_KEY("ip"),
}


def _at(prefix: str, table: PathTable) -> PathTable:
    return {f"{prefix}.{path}" if prefix else path: strat for path, strat in table.items()}


def pod_spec(path: str) -> PathTable:
    """The merge keys of a PodSpec found at `path` (`spec` for a Pod)."""
    return _at(path, _POD_SPEC)


def pod_template(path: str) -> PathTable:
    """The merge keys of a PodTemplateSpec found at `path` (`spec.template` for a Deployment)."""
    return {**_at(f"{path}.metadata", {"finalizers": PRIMITIVE_SET, "ownerReferences": BY_KEY("uid")}),
            **pod_spec(f"{path}.spec")}


CONDITIONS: PathTable = {"status.conditions": BY_KEY("type")}

#: kind -> the lists a strategic merge patch merges (besides OBJECT_META); others are replaced.
MERGE_KEYS: dict[str, PathTable] = {
    "Pod": {**pod_spec("spec"), **_at("status", _POD_STATUS)},
    "PodTemplate": pod_template("template"),
    "ReplicationController": {**pod_template("spec.template"), **CONDITIONS},
    "ReplicaSet": {**pod_template("spec.template"), **CONDITIONS},
    "Deployment": {**pod_template("spec.template"), **CONDITIONS},
    "DaemonSet": {**pod_template("spec.template"), **CONDITIONS},
    "StatefulSet": {**pod_template("spec.template"), **CONDITIONS},
    "Job": {**pod_template("spec.template"), **CONDITIONS},
    "CronJob": pod_template("spec.jobTemplate.spec.template"),
    "Service": {"spec.ports": BY_KEY("port"), **CONDITIONS},
    "Node": {"spec.podCIDRs": PRIMITIVE_SET, **CONDITIONS, "status.addresses": BY_KEY("type")},
    "Namespace": CONDITIONS,
    "HorizontalPodAutoscaler": CONDITIONS,
}


def strategy(kind: str, path: str) -> ListStrategy | None:
    """The strategy of the field at dotted `path` of a `kind` object; None: atomic (replace)."""
    found = OBJECT_META.get(path)
    if found is None:
        found = MERGE_KEYS.get(kind, {}).get(path)
    return found
