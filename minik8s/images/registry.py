"""The cluster registry: its HTTP API, image references, and how a node gets an image.

The registry is the CNCF distribution registry (Debian ``docker-registry``) on the control
plane, plain HTTP (e.g. ``10.200.0.1:5000``). Images that users name without a registry
host (``busybox``, ``python:3.11``, ``foo/bar:1``) live there under their Docker Hub
repository path (``library/busybox:latest``, ``foo/bar:1``).

What we measured (dockerd 20.10.24, registry 2.8, 2-core VM; node dockerd inside a netns
that reaches only the registry, started with ``--registry-mirror http://IP:5000
--insecure-registry IP:5000``, i.e. ``daemons.node_dockerd_registry_args``):

- ``docker pull busybox`` DOES come from the mirror (``IP:5000/library/busybox``) and is
  stored as ``busybox:latest``: 0.17 s; ``python:3.11`` (170 MB) 3.5 s; ``nginx`` after
  python 0.04 s (same layer).
- A MISSING image (``docker pull nosuchimage:1``) is not answered by the mirror's 404:
  dockerd falls back to ``registry-1.docker.io``. It failed in 0.024 s here only because
  the netns has no route at all (DNS "connect: network is unreachable"); the error names
  Docker Hub, not our registry. A node with a default route would send DNS and HTTPS
  traffic off the machine, and how long that takes to fail depends on that network (not
  measured: such traffic is forbidden here).
- Pulling the explicit ref ``IP:5000/library/nosuchimage:1`` fails in 0.024 s with
  "manifest unknown" and talks to nothing but our registry (``pull_image`` end to end on a
  missing image: 0.012 s; on present images: busybox 0.14 s, python:3.11 2.9 s).

So the kubelet must NOT rely on the mirror. The API it calls is::

    ref = ensure_image(node_docker, image, registry, pull_policy)   # -> str

which pulls ``resolve_image(image, registry)`` (see ``pull_image``), tags the result
with the user's name so ``docker ps`` and container specs show ``busybox:latest``, and
returns the reference to pass to ``containers.create``. It blocks (Docker SDK): call it
from a worker thread, never on an event loop. A missing image raises ``ImageError``
whose message names the image and says how to build or push it; the kubelet puts that
message into the ``ErrImagePull`` / ``ImagePullBackOff`` status.
``resolve_image``: ``busybox`` -> ``IP:5000/library/busybox:latest``, ``foo/bar:1`` ->
``IP:5000/foo/bar:1``; a reference that already names a registry host is unchanged.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

import docker
import docker.errors
import httpx

from minik8s.images import ImageError

LOG = logging.getLogger(__name__)

DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
OFFICIAL_NAMESPACE = "library"
DEFAULT_TAG = "latest"

HTTP_TIMEOUT_S = 5.0
CATALOG_PAGE_SIZE = 1000
READY_POLL_INTERVAL_S = 0.1
DEFAULT_READY_TIMEOUT_S = 15.0

MANIFEST_MEDIA_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)

PULL_ALWAYS = "Always"
PULL_IF_NOT_PRESENT = "IfNotPresent"
PULL_NEVER = "Never"
PULL_POLICIES = (PULL_ALWAYS, PULL_IF_NOT_PRESENT, PULL_NEVER)

# docker/distribution reference grammar (reference/regexp.go), anchored pieces.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_DOMAIN_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$"
)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")
_NOT_FOUND_MARKERS = ("manifest unknown", "not found", "name unknown", "does not exist")
_UNREACHABLE_MARKERS = ("connection refused", "no route to host", "i/o timeout", "network is unreachable")


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference, normalised the way dockerd does it."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def on_docker_hub(self) -> bool:
        return self.domain == DOCKER_HUB

    @property
    def repository(self) -> str:
        """The repository as users write it: ``busybox``, ``foo/bar``, ``host:5000/x``."""
        if self.on_docker_hub:
            prefix = OFFICIAL_NAMESPACE + "/"
            return self.path[len(prefix) :] if self.path.startswith(prefix) else self.path
        return f"{self.domain}/{self.path}"

    def suffix(self) -> str:
        """``:tag``, ``@digest`` or ``:tag@digest``."""
        out = f":{self.tag}" if self.tag else ""
        return out + (f"@{self.digest}" if self.digest else "")

    def familiar(self) -> str:
        """The short name users write, with the tag made explicit: ``busybox:latest``."""
        return self.repository + self.suffix()

    def in_registry(self, registry: str) -> str:
        """This image's reference in ``registry``: ``IP:5000/library/busybox:latest``."""
        return f"{registry}/{self.path}{self.suffix()}"


def parse_image(name: str) -> ImageRef:
    """Parse and normalise an image reference; ``ImageError`` if it is not valid.

    Follows dockerd: the first path component is a registry host only when it contains
    ``.`` or ``:`` or is ``localhost``; a Docker Hub name with one component gets
    ``library/``; no tag and no digest means ``:latest``.
    """
    text = name.strip()
    if not text:
        raise ImageError("empty image name")
    remainder, _, digest = text.partition("@")
    if digest and not _DIGEST_RE.match(digest):
        raise ImageError(f"invalid image reference {name!r}: bad digest {digest!r}")
    first, sep, rest = remainder.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, remainder = first, rest
        if not _DOMAIN_RE.match(domain):
            raise ImageError(f"invalid image reference {name!r}: bad registry host {domain!r}")
    else:
        domain = DOCKER_HUB
    path, tag = remainder, ""
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        path, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise ImageError(f"invalid image reference {name!r}: bad tag {tag!r}")
    if domain in DOCKER_HUB_ALIASES:
        domain = DOCKER_HUB
        if "/" not in path:
            path = f"{OFFICIAL_NAMESPACE}/{path}"
    if not _PATH_RE.match(path):
        raise ImageError(
            f"invalid image reference {name!r}: repository names are lowercase letters, digits, "
            "'.', '_', '-' and '/'"
        )
    return ImageRef(
        domain=domain, path=path, tag=tag or (None if digest else DEFAULT_TAG), digest=digest or None
    )


def resolve_image(name: str, registry: str) -> str:
    """The reference a node pulls for ``name``: Docker Hub names map into ``registry``.

    ``busybox`` -> ``REG/library/busybox:latest``, ``foo/bar:1`` -> ``REG/foo/bar:1``;
    a reference that already names a registry host is returned unchanged.
    """
    ref = parse_image(name)
    return ref.in_registry(registry) if ref.on_docker_hub else name.strip()


def familiar_name(name: str) -> str:
    """The user-facing name with its tag: ``busybox`` -> ``busybox:latest``."""
    return parse_image(name).familiar()


def missing_image_message(image: str, registry: str) -> str:
    return (
        f'image "{image}" not found in the cluster registry {registry}; build it with '
        f"`minik8s image build -t {image} DIR` or push it with `minik8s image push {image}`"
    )


def _unreachable(registry: str, exc: Exception) -> ImageError:
    return ImageError(f"cluster registry {registry} is unreachable: {exc}")


def _get(client: httpx.Client, registry: str, url: str, **kwargs: object) -> httpx.Response:
    try:
        return client.get(url, **kwargs)  # type: ignore[arg-type]
    except httpx.TransportError as exc:
        raise _unreachable(registry, exc) from exc


def _client(registry: str, timeout: float) -> httpx.Client:
    return httpx.Client(base_url=f"http://{registry}", timeout=timeout)


def ping(registry: str, timeout: float = HTTP_TIMEOUT_S) -> None:
    """Raise ``ImageError`` unless ``registry`` answers its ``/v2/`` endpoint."""
    with _client(registry, timeout) as client:
        resp = _get(client, registry, "/v2/")
    if resp.status_code != httpx.codes.OK:
        raise ImageError(f"cluster registry {registry} answered /v2/ with HTTP {resp.status_code}")


def wait_ready(registry: str, timeout: float = DEFAULT_READY_TIMEOUT_S) -> None:
    """Poll until ``registry`` answers; ``ImageError`` with the last failure after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ping(registry, timeout=min(HTTP_TIMEOUT_S, timeout))
            return
        except ImageError as exc:
            if time.monotonic() >= deadline:
                raise ImageError(
                    f"cluster registry {registry} not ready after {timeout:.0f}s: {exc}"
                ) from exc
        time.sleep(READY_POLL_INTERVAL_S)


def catalog(registry: str, timeout: float = HTTP_TIMEOUT_S) -> list[str]:
    """Every repository in the registry (``library/busybox``, ``foo/bar``), sorted."""
    repos: list[str] = []
    url: str | None = f"/v2/_catalog?n={CATALOG_PAGE_SIZE}"
    with _client(registry, timeout) as client:
        while url:
            resp = _get(client, registry, url)
            if resp.status_code != httpx.codes.OK:
                raise ImageError(f"cluster registry {registry}: catalog failed with HTTP {resp.status_code}")
            repos.extend(resp.json().get("repositories") or [])
            url = resp.links.get("next", {}).get("url")
    return sorted(repos)


def list_tags(registry: str, repository: str, timeout: float = HTTP_TIMEOUT_S) -> list[str]:
    """Tags of ``repository`` (registry path, e.g. ``library/busybox``); [] if it does not exist."""
    with _client(registry, timeout) as client:
        resp = _get(client, registry, f"/v2/{repository}/tags/list")
    if resp.status_code == httpx.codes.NOT_FOUND:
        return []
    if resp.status_code != httpx.codes.OK:
        raise ImageError(
            f"cluster registry {registry}: tags of {repository} failed with HTTP {resp.status_code}"
        )
    return sorted(resp.json().get("tags") or [])


def manifest_exists(registry: str, repository: str, reference: str, timeout: float = HTTP_TIMEOUT_S) -> bool:
    """Whether ``repository:reference`` (a tag or digest) has a manifest in the registry."""
    headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
    with _client(registry, timeout) as client:
        try:
            resp = client.head(f"/v2/{repository}/manifests/{reference}", headers=headers)
        except httpx.TransportError as exc:
            raise _unreachable(registry, exc) from exc
    if resp.status_code == httpx.codes.OK:
        return True
    if resp.status_code == httpx.codes.NOT_FOUND:
        return False
    raise ImageError(
        f"cluster registry {registry}: manifest {repository}:{reference} check got HTTP {resp.status_code}"
    )


def image_exists(image: str, registry: str, timeout: float = HTTP_TIMEOUT_S) -> bool:
    """Whether the user-facing ``image`` (``busybox``, ``foo/bar:1``) is in the cluster registry."""
    ref = parse_image(image)
    return manifest_exists(registry, ref.path, ref.digest or ref.tag or DEFAULT_TAG, timeout)


def _pull_error(image: str, registry: str, target: str, exc: docker.errors.APIError) -> ImageError:
    detail = (
        str(exc.explanation or exc).strip().splitlines()[0] if str(exc.explanation or exc).strip() else ""
    )
    lowered = detail.lower()
    if isinstance(exc, docker.errors.NotFound) or any(m in lowered for m in _NOT_FOUND_MARKERS):
        ref = parse_image(image)
        if ref.on_docker_hub or ref.domain == registry:
            return ImageError(missing_image_message(image, registry))
        return ImageError(f'image "{image}" not found: {detail}')
    if any(m in lowered for m in _UNREACHABLE_MARKERS):
        host = registry if target != image.strip() else parse_image(image).domain
        what = f"cluster registry {host}" if host == registry else f"registry {host}"
        return ImageError(f'pulling image "{image}" failed: {what} is unreachable: {detail}')
    return ImageError(f'pulling image "{image}" from {target} failed: {detail}')


def pull_image(node_docker: docker.DockerClient, image: str, registry: str) -> str:
    """Pull ``image`` onto a node from the cluster registry; return the ref to create containers with.

    Pulls ``resolve_image(image, registry)`` (never Docker Hub), then tags it with the
    user's name (``busybox:latest``) and returns that name. A digest-only reference is
    returned as the resolved ref (a digest cannot be a tag). Raises ``ImageError`` with
    ``missing_image_message`` when the registry does not have it.
    """
    ref = parse_image(image)
    target = resolve_image(image, registry)
    started = time.monotonic()
    try:
        pulled = node_docker.images.pull(target)
    except docker.errors.APIError as exc:
        raise _pull_error(image, registry, target, exc) from exc
    LOG.info("pulled image", extra={"image": image, "ref": target, "seconds": time.monotonic() - started})
    if not ref.on_docker_hub or ref.tag is None:
        return target
    pulled.tag(ref.repository, ref.tag)
    return ref.familiar()


def default_pull_policy(image: str) -> str:
    """Kubernetes' default: ``Always`` for ``:latest`` or no tag, else ``IfNotPresent``."""
    ref = parse_image(image)
    return PULL_ALWAYS if ref.digest is None and ref.tag == DEFAULT_TAG else PULL_IF_NOT_PRESENT


def local_name(image: str, registry: str) -> str:
    """The name under which a node's dockerd holds ``image`` after ``pull_image``."""
    ref = parse_image(image)
    if ref.on_docker_hub and ref.tag is not None:
        return ref.familiar()
    return resolve_image(image, registry)


def ensure_image(
    node_docker: docker.DockerClient, image: str, registry: str, pull_policy: str | None = None
) -> str:
    """Make ``image`` present on the node per ``pull_policy``; return the ref to create containers with.

    ``pull_policy`` is ``Always``, ``IfNotPresent``, ``Never`` or None (Kubernetes'
    default for the tag). This is the one call the kubelet makes before creating a
    container.
    """
    policy = pull_policy or default_pull_policy(image)
    if policy not in PULL_POLICIES:
        raise ImageError(f"invalid imagePullPolicy {policy!r}: must be one of {', '.join(PULL_POLICIES)}")
    name = local_name(image, registry)
    if policy != PULL_ALWAYS:
        try:
            node_docker.images.get(name)
            return name
        except docker.errors.ImageNotFound:
            if policy == PULL_NEVER:
                raise ImageError(
                    f'image "{image}" is not present on the node and imagePullPolicy is Never'
                ) from None
    return pull_image(node_docker, image, registry)
