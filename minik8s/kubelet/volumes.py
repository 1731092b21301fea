"""A pod's volumes on the node: emptyDir directories it owns, hostPath directories it borrows."""

from __future__ import annotations

from pathlib import Path

from minik8s.api.types import Pod
from minik8s.kubelet.spec import SpecError, VolumePaths

POD_DIR_VOLUMES = "volumes"
HOST_PATH_DIRECTORY_OR_CREATE = "DirectoryOrCreate"
HOST_PATH_FILE_OR_CREATE = "FileOrCreate"
HOST_PATH_DIRECTORY = "Directory"
HOST_PATH_FILE = "File"


def prepare_volumes(pod: Pod, pods_dir: Path) -> VolumePaths:
    """Create the pod's emptyDirs (``pods_dir/<uid>/volumes/<name>``) and check its hostPaths."""
    uid = pod.metadata.uid or ""
    paths: dict[str, Path] = {}
    owned: set[str] = set()
    for v in pod.spec.volumes or []:
        if v.emptyDir is not None:
            path = pods_dir / uid / POD_DIR_VOLUMES / v.name
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o777)  # like Kubernetes: any container user may write an emptyDir
            paths[v.name] = path
            owned.add(v.name)
        elif v.hostPath is not None:
            paths[v.name] = host_path(v.name, v.hostPath.path, v.hostPath.type or "")
        else:
            raise SpecError(f"spec.volumes[{v.name}]: only emptyDir and hostPath volumes are supported")
    return VolumePaths(paths=paths, owned=frozenset(owned))


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
