"""Publish a set of files into a volume directory atomically, the way the kubelet's AtomicWriter does.

Layout of a written volume (what a container sees at its mountPath)::

    ..2026_12_01_04_10_00.123456789/   the current payload (a new directory per change)
    ..data -> ..2026_12_01_04_10_00.123456789
    key -> ..data/key                  one link per top-level name of the payload

A change writes a new timestamped directory, points a temporary ``..data_tmp`` link at it and
renames that over ``..data`` (one atomic rename), then links new names and removes the old
directory and the names that left the payload. A reader that resolves ``key`` therefore sees
either the whole old payload or the whole new one, never a mix, and the bind mount of the
volume directory shows the change without restarting the container.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

DATA_DIR_NAME = "..data"
NEW_DATA_DIR_NAME = "..data_tmp"
DIR_MODE = 0o755


@dataclass(frozen=True)
class FileProjection:
    data: bytes
    mode: int


class PayloadError(ValueError):
    """A payload path that would escape the volume or clash with the writer's own names."""


def _check_path(path: str) -> None:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or path.startswith(".."):
        raise PayloadError(f"invalid file path {path!r}: must be relative, without '..' and not start with '..'")


def _timestamp_prefix() -> str:
    return dt.datetime.now(dt.UTC).strftime("..%Y_%m_%d_%H_%M_%S.")


def _current(target: Path) -> Path | None:
    link = target / DATA_DIR_NAME
    if not link.is_symlink():
        return None
    resolved = target / os.readlink(link)
    return resolved if resolved.is_dir() else None


def _unchanged(current: Path, payload: dict[str, FileProjection]) -> bool:
    """True when the published directory holds exactly the payload (contents and modes)."""
    found = {str(p.relative_to(current)) for p in current.rglob("*") if p.is_file()}
    if found != set(payload):
        return False
    for path, proj in payload.items():
        file = current / path
        if file.read_bytes() != proj.data or (file.stat().st_mode & 0o7777) != proj.mode:
            return False
    return True


def _write_dir(target: Path, payload: dict[str, FileProjection]) -> Path:
    new_dir = Path(tempfile.mkdtemp(prefix=_timestamp_prefix(), dir=target))
    new_dir.chmod(DIR_MODE)
    for path, proj in payload.items():
        file = new_dir / path
        for parent in reversed(file.relative_to(new_dir).parents[:-1]):
            (new_dir / parent).mkdir(mode=DIR_MODE, exist_ok=True)
        file.write_bytes(proj.data)
        file.chmod(proj.mode)
    return new_dir


def _top_level(paths: set[str] | list[str]) -> set[str]:
    return {PurePosixPath(p).parts[0] for p in paths}


def write_payload(target: Path, payload: dict[str, FileProjection]) -> bool:
    """Make ``target`` publish exactly ``payload``; False when it already did (nothing written)."""
    for path in payload:
        _check_path(path)
    target.mkdir(parents=True, exist_ok=True)
    target.chmod(DIR_MODE)
    old_dir = _current(target)
    if old_dir is not None and _unchanged(old_dir, payload):
        return False
    old_names = _top_level([str(p.relative_to(old_dir)) for p in old_dir.rglob("*")]) if old_dir else set()
    new_dir = _write_dir(target, payload)
    tmp_link = target / NEW_DATA_DIR_NAME
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()  # left by a writer that died between symlink and rename
    tmp_link.symlink_to(new_dir.name)
    os.rename(tmp_link, target / DATA_DIR_NAME)  # the atomic switch
    new_names = _top_level(list(payload))
    for name in new_names:
        link = target / name
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link) if link.is_dir() else link.unlink()
            link.symlink_to(f"{DATA_DIR_NAME}/{name}")
    if old_dir is not None:
        shutil.rmtree(old_dir, ignore_errors=True)
    for name in old_names - new_names:
        (target / name).unlink(missing_ok=True)
    _remove_stale_dirs(target, new_dir.name)
    return True


def _remove_stale_dirs(target: Path, keep: str) -> None:
    """Timestamped directories other than the live one (left by a writer that died mid-update)."""
    for entry in target.iterdir():
        if entry.name.startswith("..") and entry.name not in (keep, DATA_DIR_NAME) and entry.is_dir() \
                and not entry.is_symlink():
            log.info("removing a stale payload directory", extra={"path": str(entry)})
            shutil.rmtree(entry, ignore_errors=True)
