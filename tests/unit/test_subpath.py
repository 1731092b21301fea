"""subPath resolution: symlinks are followed only while they stay inside the volume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from minik8s.kubelet.subpath import SubPathError, resolve


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    vol = tmp_path / "vol"
    (vol / "data" / "deep").mkdir(parents=True)
    (vol / "file").write_text("x")
    os.symlink("/", vol / "root")  # what a container can plant in its own emptyDir
    os.symlink("/etc", vol / "data" / "etc")
    os.symlink("../..", vol / "data" / "up")
    os.symlink("data/deep", vol / "inside")
    os.symlink("../../data", vol / "data" / "deep" / "back")
    os.symlink("loop", vol / "loop")
    return vol


def test_plain_and_in_volume_symlinks_resolve_inside(volume: Path) -> None:
    assert resolve(volume, "data/deep") == volume / "data" / "deep"
    assert resolve(volume, "inside") == volume / "data" / "deep"
    assert resolve(volume, "inside/back/deep") == volume / "data" / "deep"
    assert resolve(volume, "file") == volume / "file"
    assert resolve(volume, "./data/") == volume / "data"


@pytest.mark.parametrize(("sub", "why"), [
    ("root", 'escapes its volume through symlink "root" -> "/"'),
    ("root/etc", 'escapes its volume through symlink "root" -> "/"'),
    ("data/etc", 'escapes its volume through symlink "data/etc" -> "/etc"'),
    ("data/up", "leads out of its volume"),
    ("data/up/vol/data", "leads out of its volume"),
    ("loop", "Too many levels of symbolic links"),
    ("file/x", '"file" is not a directory'),
    ("/abs", "relative path without '..'"),
    ("a/../b", "relative path without '..'"),
])
def test_escapes_are_refused_with_the_reason(volume: Path, sub: str, why: str) -> None:
    with pytest.raises(SubPathError, match=why.replace("(", r"\(").replace(")", r"\)")):
        resolve(volume, sub, create=True)


def test_missing_directories_are_made_only_in_owned_volumes(volume: Path) -> None:
    assert resolve(volume, "new/one", create=True) == volume / "new" / "one"
    assert (volume / "new" / "one").is_dir()
    assert resolve(volume, "inside/made", create=True) == volume / "data" / "deep" / "made"
    assert resolve(volume, "absent/x") == volume / "absent" / "x"
    assert not (volume / "absent").exists()
    with pytest.raises(SubPathError, match="escapes"):
        resolve(volume, "root/tmp/made-by-test", create=True)
    assert not Path("/tmp/made-by-test").exists()
