"""The downward API's vocabulary and its admission checks: which pod fields an env var or a downwardAPI
file may read (`fieldRef`), which requests/limits as what unit (`resourceFieldRef`).

The kubelet computes the values (`minik8s.kubelet.downward`); what is refused here never reaches it, so
every message names the field, as kube-apiserver's validation does.
"""

from __future__ import annotations

from collections.abc import Iterator

from minik8s.api import types as t
from minik8s.api.quantity import QuantityError, parse_quantity

Causes = list[tuple[str, str]]

LABELS, ANNOTATIONS = "metadata.labels", "metadata.annotations"
#: Field paths an env var may read (plus labels['k'] and annotations['k']): Kubernetes'
#: validEnvDownwardAPIFieldPathExpressions.
ENV_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                   "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs")
#: Field paths a downwardAPI volume file may hold (plus the same subscripts).
VOLUME_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", LABELS, ANNOTATIONS)
#: The requests and limits a resourceFieldRef may name.
RESOURCES = ("limits.cpu", "limits.memory", "limits.ephemeral-storage",
             "requests.cpu", "requests.memory", "requests.ephemeral-storage")
CPU_DIVISORS = ("1m", "1")
MEMORY_DIVISORS = ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")
FIELD_API_VERSION = "v1"


def subscript(field_path: str) -> tuple[str, str] | None:
    """(`metadata.labels` or `metadata.annotations`, key) for `metadata.labels['key']`; None otherwise."""
    for prefix in (LABELS, ANNOTATIONS):
        if field_path.startswith(f"{prefix}['") and field_path.endswith("']"):
            return prefix, field_path[len(prefix) + 2:-2]
    return None


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f'"{v}"' for v in values)


def check_field_ref(ref: t.ObjectFieldSelector, allowed: tuple[str, ...], path: str, causes: Causes) -> None:
    """`fieldPath` is one of `allowed` or a labels/annotations subscript with a valid key."""
    from minik8s.api.validation import DNS1123_SUBDOMAIN, LABEL_NAME, MAX_LABEL  # validation imports this module

    if ref.apiVersion not in (None, FIELD_API_VERSION):
        causes.append((f"{path}.apiVersion", f'Unsupported value: "{ref.apiVersion}": supported values: "v1"'))
    sub = subscript(ref.fieldPath)
    if sub is not None:
        prefix, _, name = sub[1].rpartition("/")
        if not name or len(name) > MAX_LABEL or not LABEL_NAME.match(name) or \
                (prefix and not DNS1123_SUBDOMAIN.match(prefix)):
            causes.append((f"{path}.fieldPath", f'Invalid value: "{ref.fieldPath}": "{sub[1]}" is not a valid '
                                                "label or annotation key"))
        return
    if ref.fieldPath not in allowed:
        causes.append((f"{path}.fieldPath", f'Unsupported value: "{ref.fieldPath}": supported values: '
                                            f"{_quoted(allowed)}, metadata.labels['<KEY>'], "
                                            "metadata.annotations['<KEY>']"))


def check_resource_ref(ref: t.ResourceFieldSelector, path: str, causes: Causes, volume: bool) -> None:
    """The resource is a known request/limit and the divisor one Kubernetes accepts for it; a volume file
    must name its container (an env var defaults to its own)."""
    if volume and not ref.containerName:
        causes.append((f"{path}.containerName", "Required value"))
    if ref.resource not in RESOURCES:
        causes.append((f"{path}.resource", f'Unsupported value: "{ref.resource}": supported values: '
                                           f"{_quoted(RESOURCES)}"))
        return
    if ref.divisor is None:
        return
    try:
        divisor = parse_quantity(ref.divisor)
    except QuantityError as exc:
        causes.append((f"{path}.divisor", f"Invalid value: {exc}"))
        return
    cpu = ref.resource.endswith(".cpu")
    allowed = CPU_DIVISORS if cpu else MEMORY_DIVISORS
    if divisor not in {parse_quantity(d) for d in allowed}:
        what = "cpu" if cpu else ref.resource.split(".", 1)[1]
        causes.append((f"{path}.divisor", f'Invalid value: "{ref.divisor}": only divisor\'s values '
                                          f"{', '.join(allowed)} are supported with the {what} resource"))


def check_volume_file(item: t.DownwardAPIVolumeFile, path: str, causes: Causes) -> None:
    """Exactly one of fieldRef / resourceFieldRef, each valid for a volume."""
    if item.fieldRef is not None and item.resourceFieldRef is not None:
        causes.append((path, 'Invalid value: "resource": fieldRef and resourceFieldRef can not be specified '
                             "simultaneously"))
    elif item.fieldRef is None and item.resourceFieldRef is None:
        causes.append((path, "Required value: one of fieldRef and resourceFieldRef is required"))
    if item.fieldRef is not None:
        check_field_ref(item.fieldRef, VOLUME_FIELD_PATHS, f"{path}.fieldRef", causes)
    if item.resourceFieldRef is not None:
        check_resource_ref(item.resourceFieldRef, f"{path}.resourceFieldRef", causes, volume=True)


def _resource_refs(spec: t.PodSpec, path: str) -> Iterator[tuple[t.ResourceFieldSelector, str]]:
    """Every resourceFieldRef of the pod with its field path."""
    for group, containers in (("initContainers", spec.initContainers or []), ("containers", spec.containers)):
        for i, c in enumerate(containers):
            for j, var in enumerate(c.env or []):
                if var.valueFrom is not None and var.valueFrom.resourceFieldRef is not None:
                    yield var.valueFrom.resourceFieldRef, f"{path}.{group}[{i}].env[{j}].valueFrom.resourceFieldRef"
    for i, v in enumerate(spec.volumes or []):
        files = [(f"{path}.volumes[{i}].downwardAPI", v.downwardAPI.items or [])] if v.downwardAPI else []
        for k, proj in enumerate((v.projected.sources or []) if v.projected else []):
            if proj.downwardAPI is not None:
                files.append((f"{path}.volumes[{i}].projected.sources[{k}].downwardAPI", proj.downwardAPI.items or []))
        for where, items in files:
            for j, item in enumerate(items):
                if item.resourceFieldRef is not None:
                    yield item.resourceFieldRef, f"{where}.items[{j}].resourceFieldRef"


def check_pod_downward(spec: t.PodSpec, path: str, causes: Causes) -> None:
    """What needs the whole pod: every env fieldRef is one env may read, every resourceFieldRef names a
    container of this pod."""
    for group, containers in (("initContainers", spec.initContainers or []), ("containers", spec.containers)):
        for i, c in enumerate(containers):
            for j, var in enumerate(c.env or []):
                src = var.valueFrom
                vpath = f"{path}.{group}[{i}].env[{j}].valueFrom"
                if src is not None and src.fieldRef is not None:
                    check_field_ref(src.fieldRef, ENV_FIELD_PATHS, f"{vpath}.fieldRef", causes)
                if src is not None and src.resourceFieldRef is not None:
                    check_resource_ref(src.resourceFieldRef, f"{vpath}.resourceFieldRef", causes, volume=False)
    names = {c.name for c in [*(spec.initContainers or []), *spec.containers]}
    for ref, where in _resource_refs(spec, path):
        if ref.containerName and ref.containerName not in names:
            causes.append((f"{where}.containerName",
                           f'Invalid value: "{ref.containerName}": must be the name of a container in the pod'))
