"""Resolve a volumeMount's `subPath` inside its volume without ever leaving it.

A pod writes its own volumes, so a container can plant `evil -> /` in an emptyDir and ask a later
container (or its own restart) to mount subPath `evil`: joined naively that bind-mounts the node's
root. Like Kubernetes (doSafeMakeDir / doSafeOpen), every component is looked at through a directory
descriptor with O_NOFOLLOW, so nothing is followed behind our back; a symlink is followed by hand,
only while its target stays inside the volume (relative targets; an absolute one names a host path,
so it is refused). Missing directories of volumes the pod owns are made the same way (mkdirat).

What stays: the path handed to Docker is checked, then mounted by Docker a moment later; a container
racing to swap a checked directory for a symlink in that window is not stopped here (Kubernetes closes
it by bind-mounting the opened descriptor, which needs the kubelet to own mounts).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

MAX_SYMLINKS = 40  # Linux's own limit (ELOOP)
DIR_MODE = 0o777  # then the umask, as `mkdir -p` would


class SubPathError(ValueError):
    """The subPath is not a path inside its volume; the message says why."""


def check_lexical(sub: str) -> None:
    path = PurePosixPath(sub)
    if path.is_absolute() or ".." in path.parts:
        raise SubPathError("must be a relative path without '..'")


@contextlib.contextmanager
def _base_fd(path: Path) -> Iterator[int]:
    """The volume's own directory (it may be a symlink itself: a hostPath the user named)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _walk(base: Path, parts: list[str], create: bool) -> list[str]:
    """The components, from `base`, that `parts` lead to with symlinks resolved inside the volume."""
    done: list[str] = []
    todo = list(parts)
    hops = 0
    while todo:
        name = todo.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            if not done:
                raise SubPathError("leads out of its volume")
            done.pop()
            continue
        with _base_fd(base) as root:
            fd = root
            opened: list[int] = []
            try:
                for comp in done:  # re-open from the root: each step refuses symlinks itself
                    fd = os.open(comp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                    opened.append(fd)
                try:
                    st = os.lstat(name, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        done.append(name)
                        done.extend(p for p in todo if p not in ("", "."))
                        return done
                    os.mkdir(name, DIR_MODE, dir_fd=fd)
                    st = os.lstat(name, dir_fd=fd)
                if stat.S_ISLNK(st.st_mode):
                    hops += 1
                    if hops > MAX_SYMLINKS:
                        raise SubPathError(os.strerror(errno.ELOOP))
                    target = os.readlink(name, dir_fd=fd)
                    if target.startswith("/"):
                        raise SubPathError(f'escapes its volume through symlink "{"/".join([*done, name])}" '
                                           f'-> "{target}"')
                    todo = [*target.split("/"), *todo]
                    continue
                if todo and not stat.S_ISDIR(st.st_mode):
                    raise SubPathError(f'"{"/".join([*done, name])}" is not a directory')
                done.append(name)
            finally:
                for opened_fd in reversed(opened):
                    os.close(opened_fd)
    return done


def resolve(base: Path, sub: str, create: bool = False) -> Path:
    """The host path of `sub` inside the volume at `base`, with no symlink left in it.

    `create`: make missing directories (volumes the pod owns, like emptyDir). SubPathError when the
    subPath is absolute, has `..`, or a symlink on the way would lead out of the volume."""
    check_lexical(sub)
    if create:
        base.mkdir(parents=True, exist_ok=True)  # the pod's own volume directory: the kubelet's to make
    try:
        parts = _walk(base, sub.split("/"), create)
    except SubPathError:
        raise
    except OSError as exc:
        raise SubPathError(f"cannot be resolved inside its volume: {exc.strerror or exc}") from None
    return base.joinpath(*parts) if parts else base
