"""User images: ``minik8s image build|push|ls``.

``build_image`` builds a directory with a Dockerfile on the builder dockerd. Base images
named in ``FROM`` lines (``busybox``, ``python:3.11``, ``foo/bar:1``) are pulled from the
cluster registry by their explicit reference first and tagged with the plain name, and
the build runs with ``pull=False``: the builder never falls back to Docker Hub, and a
missing base is a one-line ``ImageError`` before any step runs. RUN steps get
``network_mode="none"`` by default (the builder runs with ``--bridge=none``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.images import Image

from minik8s.images import ImageError
from minik8s.images.registry import (
    OFFICIAL_NAMESPACE,
    catalog,
    familiar_name,
    image_exists,
    list_tags,
    missing_image_message,
    parse_image,
    ping,
    pull_image,
    resolve_image,
)

LOG = logging.getLogger(__name__)

DOCKERFILE = "Dockerfile"
BUILD_NETWORK_MODE = "none"
SCRATCH = "scratch"
_FROM_RE = re.compile(r"^\s*FROM\s+(.+)$", re.IGNORECASE)
_AS_RE = re.compile(r"\s+AS\s+(\S+)\s*$", re.IGNORECASE)


def dockerfile_bases(text: str) -> list[str]:
    """Base images a Dockerfile pulls: ``FROM`` images, minus ``scratch``, stages and ``$ARG`` refs."""
    stages: set[str] = set()
    bases: list[str] = []
    for line in _logical_lines(text):
        match = _FROM_RE.match(line)
        if not match:
            continue
        rest = match.group(1).strip()
        alias = _AS_RE.search(rest)
        if alias:
            rest = rest[: alias.start()].strip()
        words = [w for w in rest.split() if not w.startswith("--")]
        if words:
            image = words[0]
            if (
                image.lower() != SCRATCH
                and image.lower() not in stages
                and "$" not in image
                and image not in bases
            ):
                bases.append(image)
        if alias:
            stages.add(alias.group(1).lower())
    return bases


def _logical_lines(text: str) -> Iterator[str]:
    """Dockerfile lines with comments dropped and backslash continuations joined."""
    pending = ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        yield pending + raw
        pending = ""
    if pending:
        yield pending


def _read_dockerfile(context_dir: Path) -> str:
    path = context_dir / DOCKERFILE
    if not context_dir.is_dir():
        raise ImageError(f"build context {context_dir} is not a directory")
    if not path.is_file():
        raise ImageError(f"no {DOCKERFILE} in {context_dir}")
    return path.read_text(encoding="utf-8", errors="replace")


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text.strip()


def build_context(
    builder: docker.DockerClient,
    context_dir: Path,
    ref: str,
    network_mode: str = BUILD_NETWORK_MODE,
    display: str | None = None,
) -> Image:
    """Build ``context_dir`` as ``ref`` on ``builder`` without pulling; ``ImageError`` on failure.

    ``display`` is the name errors use (the user's tag); it defaults to ``ref``.
    """
    shown = display or ref
    started = time.monotonic()
    try:
        image, _ = builder.images.build(
            path=str(context_dir), tag=ref, rm=True, forcerm=True, pull=False, network_mode=network_mode
        )
    except docker.errors.BuildError as exc:
        raise ImageError(f"building {shown} failed: {_first_line(str(exc.msg))}") from exc
    except docker.errors.APIError as exc:
        raise ImageError(f"building {shown} failed: {_first_line(str(exc.explanation or exc))}") from exc
    LOG.info("built image", extra={"ref": ref, "seconds": round(time.monotonic() - started, 2)})
    return image


def push_ref(builder: docker.DockerClient, ref: str) -> str:
    """Push ``ref`` (a registry-qualified tag present on ``builder``); return its digest if reported."""
    repository, _, tag = ref.rpartition(":")
    if "/" in tag or not repository:
        raise ImageError(f"cannot push {ref}: it needs an explicit tag")
    started = time.monotonic()
    digest = ""
    try:
        stream: Iterator[dict[str, Any]] = builder.images.push(repository, tag=tag, stream=True, decode=True)
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise ImageError(f"pushing {ref} failed: {_first_line(str(detail))}")
            digest = chunk.get("aux", {}).get("Digest", digest)
    except docker.errors.APIError as exc:
        raise ImageError(f"pushing {ref} failed: {_first_line(str(exc.explanation or exc))}") from exc
    LOG.info(
        "pushed image", extra={"ref": ref, "digest": digest, "seconds": round(time.monotonic() - started, 2)}
    )
    return digest


def _prepare_bases(builder: docker.DockerClient, dockerfile: str, registry: str) -> None:
    for base in dockerfile_bases(dockerfile):
        ref = parse_image(base)
        if ref.on_docker_hub or ref.domain == registry:
            if not image_exists(base, registry):
                raise ImageError(f"base {missing_image_message(base, registry)}")
            pull_image(builder, base, registry)


def build_image(
    builder: docker.DockerClient,
    context_dir: Path,
    tag: str,
    registry: str,
    network_mode: str = BUILD_NETWORK_MODE,
) -> str:
    """Build ``context_dir`` (with a Dockerfile) as ``tag``; return the registry ref to push.

    The image is tagged both as the user's name (``myapp:1``) and as its cluster registry
    reference (``REG/library/myapp:1``, returned). Bases come from the cluster registry.
    """
    context = Path(context_dir)
    dockerfile = _read_dockerfile(context)
    ref = parse_image(tag)
    if ref.digest:
        raise ImageError(f"cannot build {tag}: a build tag cannot contain a digest")
    target = resolve_image(tag, registry)
    ping(registry)
    _prepare_bases(builder, dockerfile, registry)
    image = build_context(builder, context, target, network_mode, display=tag)
    if ref.on_docker_hub and ref.tag:
        image.tag(ref.repository, ref.tag)
    return target


def push_image(builder: docker.DockerClient, tag: str, registry: str) -> str:
    """Push the builder's image ``tag`` (user name or registry ref) to the cluster registry.

    Returns the registry reference pushed (``REG/library/myapp:1``).
    """
    target = resolve_image(tag, registry)
    if parse_image(target).domain != registry:
        raise ImageError(f"cannot push {tag}: it names another registry than the cluster registry {registry}")
    try:
        image = builder.images.get(target)
    except docker.errors.ImageNotFound:
        try:
            image = builder.images.get(familiar_name(tag))
        except docker.errors.ImageNotFound:
            raise ImageError(
                f'image "{tag}" is not on the builder; build it with `minik8s image build -t {tag} DIR`'
            ) from None
        repository, _, image_tag = target.rpartition(":")
        image.tag(repository, image_tag)
    except docker.errors.APIError as exc:
        raise ImageError(f"pushing {tag} failed: {_first_line(str(exc.explanation or exc))}") from exc
    push_ref(builder, target)
    LOG.debug("image id pushed", extra={"ref": target, "id": image.id})
    return target


def _user_repository(path: str) -> str:
    prefix = OFFICIAL_NAMESPACE + "/"
    return path[len(prefix) :] if path.startswith(prefix) else path


def list_images(registry: str) -> list[tuple[str, list[str]]]:
    """Every image in the cluster registry as (user-facing name, sorted tags), sorted by name."""
    out: list[tuple[str, list[str]]] = []
    for repository in catalog(registry):
        tags = list_tags(registry, repository)
        if tags:
            out.append((_user_repository(repository), tags))
    return sorted(out)
