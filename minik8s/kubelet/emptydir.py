"""emptyDir media and limits, as the Kubernetes kubelet does them.

- `medium: Memory`: the volume is a tmpfs mounted on its directory, sized `sizeLimit` when set, else the
  node's memory (writes past the size fail with ENOSPC); it is unmounted before the pod directory goes.
- `sizeLimit` on the node's disk: the kubelet measures the directory periodically and evicts the pod
  (phase Failed, reason Evicted, a message naming the volume) once its usage exceeds the limit.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from minik8s.api.quantity import memory_bytes
from minik8s.api.types import Pod, Volume

log = logging.getLogger("minik8s.kubelet.emptydir")

MEDIUM_MEMORY = "Memory"
MOUNT_TIMEOUT_S = 10.0


class MountError(Exception):
    """A tmpfs could not be mounted or unmounted (the message says why)."""


def node_memory_bytes() -> int:
    """The machine's physical memory: a Memory emptyDir without sizeLimit may grow to it."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def tmpfs_size(volume: Volume) -> int:
    src = volume.emptyDir
    if src is not None and src.sizeLimit is not None:
        return memory_bytes(src.sizeLimit)
    return node_memory_bytes()


def _run(argv: list[str]) -> None:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=MOUNT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MountError(f"{argv[0]}: {exc}") from None
    if res.returncode != 0:
        raise MountError((res.stderr or res.stdout).strip() or f"{argv[0]} exited {res.returncode}")


def mount_memory(path: Path, size_bytes: int) -> None:
    """Mount a tmpfs of `size_bytes` on `path` (idempotent: an existing mount is kept)."""
    if os.path.ismount(path):
        return
    _run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0777", "tmpfs", str(path)])


def unmount_volumes(pod_dir: Path) -> None:
    """Unmount every Memory emptyDir of a pod (before its directory is removed); failures are logged."""
    volumes = pod_dir / "volumes"
    if not volumes.is_dir():
        return
    for entry in volumes.iterdir():
        if entry.is_dir() and os.path.ismount(entry):
            try:
                _run(["umount", str(entry)])
            except MountError as exc:
                log.warning("could not unmount a Memory emptyDir", extra={"path": str(entry), "error": str(exc)})


def usage_bytes(path: Path) -> int:
    """Bytes used by the files under `path` (allocated blocks, as `du`); files vanishing meanwhile count 0."""
    total = 0
    for root, dirs, files in os.walk(path):
        for name in [*files, *dirs]:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


def over_limit(pod: Pod, pods_dir: Path) -> str | None:
    """The eviction message when a disk emptyDir of the pod uses more than its sizeLimit, else None."""
    for v in pod.spec.volumes or []:
        src = v.emptyDir
        if src is None or src.sizeLimit is None or src.medium == MEDIUM_MEMORY:
            continue  # a Memory emptyDir is held to its size by the tmpfs itself
        path = pods_dir / (pod.metadata.uid or "") / "volumes" / v.name
        if path.is_dir() and usage_bytes(path) > memory_bytes(src.sizeLimit):
            return f'Usage of EmptyDir volume "{v.name}" exceeds the limit "{src.sizeLimit}". '
    return None
