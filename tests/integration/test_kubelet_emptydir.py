"""A Memory emptyDir is a real tmpfs of its sizeLimit, unmounted before the pod directory is removed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from minik8s.api import types as t
from minik8s.kubelet import emptydir
from minik8s.kubelet.volumes import prepare_volumes
from tests.conftest import requires

pytestmark = requires("mount", "umount")


def _mounts_of(path: Path) -> list[str]:
    return [line for line in Path("/proc/self/mounts").read_text().splitlines() if f" {path} " in line]


def test_memory_empty_dir_is_a_sized_tmpfs_and_is_unmounted(tmp_path: Path) -> None:
    pod = t.Pod.model_validate({"metadata": {"name": "p", "uid": "u-mem"}, "spec": {
        "containers": [{"name": "c"}],
        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                    {"name": "disk", "emptyDir": {}}]}})
    paths = prepare_volumes(pod, tmp_path)
    shm = paths.paths["shm"]
    try:
        mounts = _mounts_of(shm)
        assert len(mounts) == 1 and mounts[0].startswith("tmpfs ") and "size=1024k" in mounts[0]
        assert not os.path.ismount(paths.paths["disk"])
        prepare_volumes(pod, tmp_path)  # a resync mounts nothing twice
        assert len(_mounts_of(shm)) == 1
        with pytest.raises(OSError):  # the tmpfs holds the volume to its size
            (shm / "big").write_bytes(b"z" * (2 * 1024 * 1024))
    finally:
        emptydir.unmount_volumes(tmp_path / "u-mem")
    assert _mounts_of(shm) == []
