"""Downward API values: what a container's env var or a downwardAPI volume file holds for a `fieldRef`
(the pod's own fields) or a `resourceFieldRef` (a container's request or limit in `divisor` units).

As the kubelet does it: a limit the container does not set is the node's allocatable amount (a
container without a memory limit may use the whole node), a request it does not set is its limit when
it has one (the API's defaulting in Kubernetes) and 0 otherwise; the value is rounded up to a whole
number of divisors. Labels and annotations as a file are sorted `key="value"` lines.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

from minik8s.api.downward import ANNOTATIONS, LABELS, subscript
from minik8s.api.quantity import QuantityError, cpu_millis, memory_bytes
from minik8s.api.types import Container, Pod, ResourceFieldSelector

EPHEMERAL_STORAGE = "ephemeral-storage"


class DownwardError(ValueError):
    """A field or resource the kubelet cannot give (admission refuses these; an old object may still ask)."""


def env_field_value(pod: Pod, path: str, pod_ip: str | None, host_ip: str | None) -> str:
    """An env var's `fieldRef` value; a list field (`status.podIPs`) is comma-separated, as the kubelet does."""
    meta = pod.metadata
    values = {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace or "default",
        "metadata.uid": meta.uid,
        "spec.nodeName": pod.spec.nodeName,
        "spec.serviceAccountName": pod.spec.serviceAccountName,
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,  # one address family here: the list is the one IP
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in values:
        return values[path] or ""
    sub = subscript(path)
    if sub is not None:
        return ((meta.labels if sub[0] == LABELS else meta.annotations) or {}).get(sub[1], "")
    raise DownwardError(f"fieldRef.fieldPath: unsupported field {path!r}")


def format_map(values: Mapping[str, str] | None) -> str:
    """Labels or annotations as a file: `key="value"` lines sorted by key, values quoted like Go's %q."""
    return "\n".join(f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in sorted((values or {}).items()))


def volume_field_value(pod: Pod, path: str) -> str:
    """A downwardAPI file's contents for a `fieldRef`."""
    meta = pod.metadata
    if path == LABELS:
        return format_map(meta.labels)
    if path == ANNOTATIONS:
        return format_map(meta.annotations)
    sub = subscript(path)
    if sub is not None:
        return ((meta.labels if sub[0] == LABELS else meta.annotations) or {}).get(sub[1], "")
    plain = {"metadata.name": meta.name, "metadata.namespace": meta.namespace or "default", "metadata.uid": meta.uid}
    if path not in plain:
        raise DownwardError(f"downwardAPI fieldRef: unsupported field {path!r}")
    return plain[path] or ""


def _container(pod: Pod, name: str) -> Container:
    for c in [*(pod.spec.initContainers or []), *pod.spec.containers]:
        if c.name == name:
            return c
    raise DownwardError(f'resourceFieldRef.containerName: no container "{name}" in the pod')


def _ceil_div(value: int, divisor: int) -> int:
    return -(-value // divisor)


def resource_value(pod: Pod, current: Container | None, ref: ResourceFieldSelector,
                   allocatable: Mapping[str, str | int | float]) -> str:
    """ceil(quantity / divisor) of the request or limit `ref` names, of `ref.containerName` or else `current`."""
    if ref.containerName:
        target = _container(pod, ref.containerName)
    elif current is not None:
        target = current
    else:
        raise DownwardError("resourceFieldRef.containerName: required in a volume")
    kind, _, name = ref.resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", EPHEMERAL_STORAGE):
        raise DownwardError(f"resourceFieldRef.resource: unsupported resource {ref.resource!r}")
    res = target.resources
    limits = (res.limits if res else None) or {}
    requests = (res.requests if res else None) or {}
    if kind == "limits":
        quantity = limits.get(name) or allocatable.get(name) or 0
    else:
        quantity = requests.get(name, limits.get(name)) or 0
    divisor = ref.divisor or 1
    try:
        if name == "cpu":
            return str(_ceil_div(cpu_millis(quantity), cpu_millis(divisor)))
        return str(_ceil_div(memory_bytes(quantity), memory_bytes(divisor)))
    except (QuantityError, ZeroDivisionError) as exc:
        raise DownwardError(f"resourceFieldRef {ref.resource}: {exc or 'zero divisor'}") from None


def ephemeral_storage_capacity(path: Path) -> int:
    """The size of the filesystem `path` (or its nearest existing parent) is on: the node's ephemeral storage."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).total
