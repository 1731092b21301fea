"""`minik8s cp`: files and directories to and from a container, as tar through exec (like kubectl cp).

The container needs `tar` in its image. `POD:PATH` names a path in a pod (`NS/POD:PATH` another
namespace). The destination is the copy's own path, as with kubectl; copying into a pod
directory that exists (or a path ending in `/`) puts the copy inside it.
"""

from __future__ import annotations

import io
import posixpath
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import IO

import click

from cli.common import client, namespace_option
from minik8s.client.streams import open_pod_stream
from minik8s.errors import BadRequest, MiniK8sError

SPOOL_BYTES = 64 * 1024 * 1024  # archives up to this size stay in memory
NOT_FOUND_CODES = (126, 127)  # the shell's and the runtime's "command not found"


class CopyError(MiniK8sError):
    code = 400
    reason = "BadRequest"


def _remote(spec: str, namespace: str) -> tuple[str, str, str] | None:
    """(namespace, pod, path) for `[NS/]POD:PATH`; None for a local path."""
    if ":" not in spec or spec.startswith(("/", ".")):
        return None
    pod, _, path = spec.partition(":")
    if "/" in pod:
        namespace, _, pod = pod.partition("/")
    if not pod or not path:
        raise BadRequest(f"{spec!r}: a pod path is POD:PATH (or NAMESPACE/POD:PATH)")
    return namespace, pod, path


def _exec(ns: str, pod: str, container: str | None, command: list[str], stdin: IO[bytes] | None,
          stdout: IO[bytes]) -> tuple[int, bytes]:
    """Run `command` in the pod; returns (exit code, stderr)."""
    session = open_pod_stream(client(), pod, ns, "exec", command, container, stdin=stdin is not None)
    err = io.BytesIO()
    try:
        code = session.run(stdin, stdout, err)
    finally:
        session.close()
    return code, err.getvalue()


def _check(code: int, err: bytes, out: bytes, pod: str) -> None:
    text = (err or out).decode(errors="replace").strip()
    if code in NOT_FOUND_CODES and "tar" in text:
        raise CopyError(f'cp needs "tar" in the container of pod {pod}, and its image has none')
    if code:
        first = text.splitlines()[0] if text else f"tar exited with {code}"
        raise CopyError(f"{pod}: {first}")


def copy_from_pod(ns: str, pod: str, container: str | None, src: str, dest: Path) -> None:
    src = posixpath.normpath(src)
    parent, base = posixpath.split(src)
    if _exec(ns, pod, container, ["test", "-e", src], None, io.BytesIO())[0] == 1:  # 126/127: no `test`
        raise CopyError(f"{pod}:{src}: no such file or directory")
    with tempfile.SpooledTemporaryFile(SPOOL_BYTES) as archive:
        code, err = _exec(ns, pod, container, ["tar", "cf", "-", "-C", parent or "/", base], None, archive)
        archive.seek(0)
        _check(code, err, b"" if code == 0 else archive.read(4096), pod)
        archive.seek(0)
        with tarfile.open(fileobj=archive, mode="r|") as tar:
            for member in tar:
                rel = posixpath.relpath(member.name, base)
                if rel.startswith("..") or posixpath.isabs(member.name):
                    continue  # outside what was asked for: never written outside dest
                member.name = posixpath.normpath(posixpath.join(dest.name, rel))
                tar.extract(member, path=dest.parent, filter="data")


def copy_to_pod(ns: str, pod: str, container: str | None, src: Path, dest: str) -> None:
    if not src.exists():
        raise CopyError(f"{src}: no such file or directory")
    into = dest.endswith("/")
    if not into:
        code, _ = _exec(ns, pod, container, ["test", "-d", dest], None, io.BytesIO())
        into = code == 0
    if into:
        dest = posixpath.join(dest, src.name)
    parent, base = posixpath.split(posixpath.normpath(dest))
    with tempfile.SpooledTemporaryFile(SPOOL_BYTES) as archive:
        with tarfile.open(fileobj=archive, mode="w") as tar:
            tar.add(str(src), arcname=base)
        archive.seek(0)
        out = io.BytesIO()
        code, err = _exec(ns, pod, container, ["tar", "xmf", "-", "-C", parent or "/"], archive, out)  # type: ignore[arg-type]
        _check(code, err, out.getvalue(), pod)


@click.command(name="cp")
@click.argument("src")
@click.argument("dest")
@click.option("-c", "--container", default=None, help="Container name (default: the pod's only container).")
@namespace_option
def cp(src: str, dest: str, container: str | None, namespace: str | None) -> None:
    """Copy files and directories to and from containers (needs tar in the image).

    \b
    Examples:
      minik8s cp web:/etc/hostname ./hostname
      minik8s cp ./site web:/www/site
      minik8s cp -n prod web:/var/log ./logs
    """
    ns = namespace or "default"
    remote_src, remote_dest = _remote(src, ns), _remote(dest, ns)
    if bool(remote_src) == bool(remote_dest):
        raise BadRequest("cp copies between a pod and this machine: one of SRC and DEST must be POD:PATH")
    if remote_src:
        copy_from_pod(*remote_src[:2], container, remote_src[2], Path(dest).absolute())
    elif remote_dest:
        copy_to_pod(*remote_dest[:2], container, Path(src), remote_dest[2])
    sys.stdout.flush()


COMMANDS = [cp]
