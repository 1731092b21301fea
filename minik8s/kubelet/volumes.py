"""A pod's volumes on the node: emptyDir directories it owns, hostPath directories it borrows, and
ConfigMap/Secret directories published by the atomic writer (rewritten when the object changes)."""

from __future__ import annotations

from pathlib import Path

from minik8s.api.types import Pod
from minik8s.kubelet.atomic_writer import PayloadError, write_payload
from minik8s.kubelet.configrefs import ConfigError, ConfigObjects, NoConfigObjects, configmap_payload, secret_payload
from minik8s.kubelet.spec import SpecError, VolumePaths

POD_DIR_VOLUMES = "volumes"
HOST_PATH_DIRECTORY_OR_CREATE = "DirectoryOrCreate"
HOST_PATH_FILE_OR_CREATE = "FileOrCreate"
HOST_PATH_DIRECTORY = "Directory"
HOST_PATH_FILE = "File"


def has_config_volumes(pod: Pod) -> bool:
    return any(v.configMap is not None or v.secret is not None for v in pod.spec.volumes or [])


def prepare_volumes(pod: Pod, pods_dir: Path, objects: ConfigObjects | None = None) -> VolumePaths:
    """Create the pod's emptyDirs (``pods_dir/<uid>/volumes/<name>``), check its hostPaths, and publish
    the current contents of its ConfigMap and Secret volumes (written only when they changed).
    A missing required ConfigMap, Secret or key raises ConfigError naming the volume."""
    uid = pod.metadata.uid or ""
    paths: dict[str, Path] = {}
    owned: set[str] = set()
    read_only: set[str] = set()
    source = objects or NoConfigObjects()
    for v in pod.spec.volumes or []:
        if v.configMap is not None or v.secret is not None:
            path = pods_dir / uid / POD_DIR_VOLUMES / v.name
            if v.configMap is not None:
                payload = configmap_payload(pod, v.name, v.configMap, source)
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
            path.chmod(0o777)  # like Kubernetes: any container user may write an emptyDir
            paths[v.name] = path
            owned.add(v.name)
        elif v.hostPath is not None:
            paths[v.name] = host_path(v.name, v.hostPath.path, v.hostPath.type or "")
        else:
            raise SpecError(f"spec.volumes[{v.name}]: only emptyDir, hostPath, configMap and secret volumes "
                            "are supported")
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
