"""emptyDir limits without a cluster: usage is measured like `du` and a disk emptyDir over its sizeLimit
yields an eviction message naming the volume; a Memory emptyDir is sized by sizeLimit or the node's memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minik8s.api import types as t
from minik8s.kubelet import emptydir


def pod(*volumes: dict[str, Any]) -> t.Pod:
    return t.Pod.model_validate({"metadata": {"name": "p", "uid": "u1"},
                                 "spec": {"containers": [{"name": "c"}], "volumes": list(volumes)}})


def fill(pods_dir: Path, volume: str, nbytes: int) -> None:
    path = pods_dir / "u1" / "volumes" / volume
    path.mkdir(parents=True, exist_ok=True)
    (path / "data").write_bytes(b"x" * nbytes)


def test_disk_empty_dir_over_its_size_limit_names_the_volume(tmp_path: Path) -> None:
    p = pod({"name": "cache", "emptyDir": {"sizeLimit": "64Ki"}}, {"name": "free", "emptyDir": {}})
    fill(tmp_path, "cache", 32 * 1024)
    fill(tmp_path, "free", 1024 * 1024)  # no limit: never evicted
    assert emptydir.over_limit(p, tmp_path) is None
    fill(tmp_path, "cache", 128 * 1024)
    assert emptydir.over_limit(p, tmp_path) == 'Usage of EmptyDir volume "cache" exceeds the limit "64Ki". '


def test_memory_empty_dir_is_held_by_its_tmpfs_not_evicted(tmp_path: Path) -> None:
    p = pod({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Ki"}})
    fill(tmp_path, "shm", 64 * 1024)
    assert emptydir.over_limit(p, tmp_path) is None


def test_tmpfs_size_is_the_size_limit_else_the_node_memory() -> None:
    sized = pod({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}})
    unsized = pod({"name": "shm", "emptyDir": {"medium": "Memory"}})
    assert sized.spec.volumes and unsized.spec.volumes
    assert emptydir.tmpfs_size(sized.spec.volumes[0]) == 16 * 1024 * 1024
    assert emptydir.tmpfs_size(unsized.spec.volumes[0]) == emptydir.node_memory_bytes() > 0


def test_usage_counts_allocated_blocks(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"y" * 100_000)
    assert emptydir.usage_bytes(tmp_path) >= 100_000
