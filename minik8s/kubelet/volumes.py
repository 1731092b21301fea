"""A pod's volumes on the node: emptyDir directories it owns, hostPath directories it borrows, and
ConfigMap/Secret/projected/downwardAPI directories published by the atomic writer (rewritten when the
object changes, when the pod's labels or annotations change, or, for a projected ServiceAccount token,
when the token is refreshed)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from minik8s.api.types import (
    ConfigMapVolumeSource,
    DownwardAPIVolumeFile,
    Pod,
    ProjectedVolumeSource,
    SecretVolumeSource,
    Volume,
)
from minik8s.kubelet import emptydir
from minik8s.kubelet.atomic_writer import FileProjection, PayloadError, write_payload
from minik8s.kubelet.configrefs import (
    DEFAULT_MODE,
    ConfigError,
    ConfigObjects,
    NoConfigObjects,
    configmap_payload,
    secret_payload,
)
from minik8s.kubelet.downward import DownwardError, resource_value, volume_field_value
from minik8s.kubelet.satokens import TokenUnavailable
from minik8s.kubelet.spec import SpecError, VolumePaths

POD_DIR_VOLUMES = "volumes"
HOST_PATH_DIRECTORY_OR_CREATE = "DirectoryOrCreate"
HOST_PATH_FILE_OR_CREATE = "FileOrCreate"
HOST_PATH_DIRECTORY = "Directory"
HOST_PATH_FILE = "File"


class Tokens(Protocol):
    """Where a projected serviceAccountToken comes from (the kubelet's `TokenManager`)."""

    def token(self, pod: Pod, audience: str | None, expiration_s: int) -> str: ...


def _published(v: Volume) -> bool:
    """A volume the atomic writer publishes (and a sync refreshes)."""
    return v.configMap is not None or v.secret is not None or v.projected is not None or v.downwardAPI is not None


def has_config_volumes(pod: Pod) -> bool:
    return any(_published(v) for v in pod.spec.volumes or [])


def downward_payload(pod: Pod, volume: str, items: list[DownwardAPIVolumeFile], mode: int,
                     allocatable: Mapping[str, str | int | float]) -> dict[str, FileProjection]:
    """The files of a downwardAPI volume (or projected source): rewritten when the pod's labels or annotations
    change, since each sync publishes the current values."""
    out: dict[str, FileProjection] = {}
    for item in items:
        try:
            if item.fieldRef is not None:
                value = volume_field_value(pod, item.fieldRef.fieldPath)
            elif item.resourceFieldRef is not None:
                value = resource_value(pod, None, item.resourceFieldRef, allocatable)
            else:
                raise DownwardError("one of fieldRef and resourceFieldRef is required")
        except DownwardError as exc:
            raise SpecError(f"spec.volumes[{volume}].downwardAPI.items[{item.path}]: {exc}") from None
        out[item.path] = FileProjection(value.encode(), mode if item.mode is None else item.mode)
    return out


def projected_payload(pod: Pod, volume: str, src: ProjectedVolumeSource, objects: ConfigObjects,
                      tokens: Tokens | None,
                      allocatable: Mapping[str, str | int | float] | None = None) -> dict[str, FileProjection]:
    """Every source's files in one directory (Kubernetes' projected volume)."""
    mode = DEFAULT_MODE if src.defaultMode is None else src.defaultMode
    out: dict[str, FileProjection] = {}
    for proj in src.sources or []:
        if proj.configMap is not None:
            cm = proj.configMap
            out.update(configmap_payload(pod, volume, ConfigMapVolumeSource(
                name=cm.name, items=cm.items, defaultMode=mode, optional=cm.optional), objects))
        elif proj.secret is not None:
            sec = proj.secret
            out.update(secret_payload(pod, volume, SecretVolumeSource(
                secretName=sec.name, items=sec.items, defaultMode=mode, optional=sec.optional), objects))
        elif proj.downwardAPI is not None:
            out.update(downward_payload(pod, volume, proj.downwardAPI.items or [], mode, allocatable or {}))
        elif proj.serviceAccountToken is not None:
            tok = proj.serviceAccountToken
            if tokens is None:
                raise ConfigError("no API to request a service account token from", volume)
            try:
                value = tokens.token(pod, tok.audience, tok.expirationSeconds or 3600)
            except TokenUnavailable as exc:
                raise ConfigError(str(exc), volume) from None
            out[tok.path] = FileProjection(value.encode(), mode)
    return out


def prepare_volumes(pod: Pod, pods_dir: Path, objects: ConfigObjects | None = None,
                    tokens: Tokens | None = None,
                    allocatable: Mapping[str, str | int | float] | None = None) -> VolumePaths:
    """Create the pod's emptyDirs (``pods_dir/<uid>/volumes/<name>``), check its hostPaths, and publish
    the current contents of its ConfigMap, Secret, projected and downwardAPI volumes (written only when they
    changed; `allocatable` is the node's, for a resourceFieldRef to a limit a container does not set).
    A missing required ConfigMap, Secret or key, or a token the API refuses, raises ConfigError naming
    the volume."""
    uid = pod.metadata.uid or ""
    paths: dict[str, Path] = {}
    owned: set[str] = set()
    read_only: set[str] = set()
    source = objects or NoConfigObjects()
    for v in pod.spec.volumes or []:
        if _published(v):
            path = pods_dir / uid / POD_DIR_VOLUMES / v.name
            if v.configMap is not None:
                payload = configmap_payload(pod, v.name, v.configMap, source)
            elif v.projected is not None:
                payload = projected_payload(pod, v.name, v.projected, source, tokens, allocatable)
            elif v.downwardAPI is not None:
                dmode = DEFAULT_MODE if v.downwardAPI.defaultMode is None else v.downwardAPI.defaultMode
                payload = downward_payload(pod, v.name, v.downwardAPI.items or [], dmode, allocatable or {})
            else:
                assert v.secret is not None
                payload = secret_payload(pod, v.name, v.secret, source)
            try:
                write_payload(path, payload)
            except PayloadError as exc:
                raise ConfigError(str(exc), v.name) from None
            paths[v.name] = path
            read_only.add(v.name)
        elif v.emptyDir is not None:
            path = pods_dir / uid / POD_DIR_VOLUMES / v.name
            path.mkdir(parents=True, exist_ok=True)
            if v.emptyDir.medium == emptydir.MEDIUM_MEMORY:
                try:
                    emptydir.mount_memory(path, emptydir.tmpfs_size(v))
                except emptydir.MountError as exc:
                    raise SpecError(f"spec.volumes[{v.name}].emptyDir.medium: cannot mount a tmpfs: {exc}") from None
            path.chmod(0o777)  # like Kubernetes: any container user may write an emptyDir
            fs_group = pod.spec.securityContext.fsGroup if pod.spec.securityContext else None
            if fs_group is not None:  # owned by the pod's fsGroup, and new files inherit it (setgid)
                os.chown(path, -1, fs_group)
                path.chmod(0o2777)
            paths[v.name] = path
            owned.add(v.name)
        elif v.hostPath is not None:
            paths[v.name] = host_path(v.name, v.hostPath.path, v.hostPath.type or "")
        else:
            raise SpecError(f"spec.volumes[{v.name}]: only emptyDir, hostPath, configMap, secret, projected and "
                            "downwardAPI volumes are supported")
    return VolumePaths(paths=paths, owned=frozenset(owned), read_only=frozenset(read_only))


def host_path(name: str, raw: str, kind: str) -> Path:
    path = Path(raw)
    if kind == HOST_PATH_DIRECTORY_OR_CREATE:
        path.mkdir(parents=True, exist_ok=True)
    elif kind == HOST_PATH_FILE_OR_CREATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    elif kind == HOST_PATH_DIRECTORY and not path.is_dir():
        raise SpecError(f"spec.volumes[{name}].hostPath: {raw} is not a directory")
    elif kind == HOST_PATH_FILE and not path.is_file():
        raise SpecError(f"spec.volumes[{name}].hostPath: {raw} is not a file")
    return path
