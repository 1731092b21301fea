"""Image reference normalisation, registry resolution and the kubelet's pull contract (no root)."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import yaml

from minik8s.images import ImageError
from minik8s.images.base import (
    BASE_IMAGES,
    PAUSE_IMAGE,
    detect_debian_mirror,
    write_busybox_rootfs,
)
from minik8s.images.daemons import (
    builder_dockerd_argv,
    node_dockerd_registry_args,
    registry_argv,
    write_registry_config,
)
from minik8s.images.registry import (
    default_pull_policy,
    ensure_image,
    familiar_name,
    local_name,
    missing_image_message,
    parse_image,
    resolve_image,
)
from minik8s.images.user import dockerfile_bases

REG = "10.200.0.1:5000"
DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("name", "resolved"),
    [
        ("busybox", f"{REG}/library/busybox:latest"),
        ("busybox:latest", f"{REG}/library/busybox:latest"),
        ("python:3.11", f"{REG}/library/python:3.11"),
        ("foo/bar:1", f"{REG}/foo/bar:1"),
        ("foo/bar", f"{REG}/foo/bar:latest"),
        ("docker.io/library/nginx", f"{REG}/library/nginx:latest"),
        ("docker.io/nginx:1.2", f"{REG}/library/nginx:1.2"),
        ("index.docker.io/foo/bar:2", f"{REG}/foo/bar:2"),
        (f"busybox@{DIGEST}", f"{REG}/library/busybox@{DIGEST}"),
        (f"busybox:1@{DIGEST}", f"{REG}/library/busybox:1@{DIGEST}"),
        (f"{REG}/library/busybox:latest", f"{REG}/library/busybox:latest"),
        ("localhost:5000/x:1", "localhost:5000/x:1"),
        ("quay.io/a/b:c", "quay.io/a/b:c"),
        ("localhost/x", "localhost/x"),
        (" busybox ", f"{REG}/library/busybox:latest"),
    ],
)
def test_resolve_image(name: str, resolved: str) -> None:
    assert resolve_image(name, REG) == resolved


@pytest.mark.parametrize(
    ("name", "familiar"),
    [
        ("busybox", "busybox:latest"),
        ("docker.io/library/python:3", "python:3"),
        ("foo/bar", "foo/bar:latest"),
        ("host.example:1/x/y:z", "host.example:1/x/y:z"),
    ],
)
def test_familiar_name(name: str, familiar: str) -> None:
    assert familiar_name(name) == familiar


def test_parse_image_fields() -> None:
    ref = parse_image("10.0.0.1:5000/team/app:v1.2")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("10.0.0.1:5000", "team/app", "v1.2", None)
    assert not ref.on_docker_hub
    hub = parse_image(f"busybox@{DIGEST}")
    assert (hub.domain, hub.path, hub.tag, hub.digest) == ("docker.io", "library/busybox", None, DIGEST)


@pytest.mark.parametrize(
    "bad", ["", "   ", "Busybox", "busybox:", "busybox:bad tag", "a//b", "busybox@sha256:zz", "-x", "x/"]
)
def test_invalid_references_raise_image_error(bad: str) -> None:
    with pytest.raises(ImageError):
        resolve_image(bad, REG)


def test_default_pull_policy() -> None:
    assert default_pull_policy("busybox") == "Always"
    assert default_pull_policy("busybox:latest") == "Always"
    assert default_pull_policy("python:3.11") == "IfNotPresent"
    assert default_pull_policy(f"busybox@{DIGEST}") == "IfNotPresent"


def test_local_name() -> None:
    assert local_name("busybox", REG) == "busybox:latest"
    assert local_name(f"busybox@{DIGEST}", REG) == f"{REG}/library/busybox@{DIGEST}"
    assert local_name("quay.io/a/b:1", REG) == "quay.io/a/b:1"


def test_missing_image_message_names_image_and_fix() -> None:
    msg = missing_image_message("nosuch:1", REG)
    assert msg == (
        f'image "nosuch:1" not found in the cluster registry {REG}; build it with '
        "`minik8s image build -t nosuch:1 DIR` or push it with `minik8s image push nosuch:1`"
    )
    assert "\n" not in msg


def test_dockerfile_bases() -> None:
    text = (
        "# syntax comment\n"
        "ARG BASE=busybox\n"
        "FROM --platform=linux/amd64 python:3.11 AS build\n"
        "RUN echo \\\n  FROM fake\n"
        "FROM build\n"
        "from busybox as final\n"
        "FROM scratch\n"
        "FROM ${BASE}\n"
        "FROM python:3.11\n"
    )
    assert dockerfile_bases(text) == ["python:3.11", "busybox"]


class _FakeImage:
    def __init__(self) -> None:
        self.tags: list[tuple[str, str]] = []

    def tag(self, repository: str, tag: str) -> bool:
        self.tags.append((repository, tag))
        return True


class _FakeImages:
    """Stands in for ``DockerClient.images``: holds local names, serves ``available`` refs."""

    def __init__(self, local: set[str], available: set[str]) -> None:
        self.local, self.available = local, available
        self.pulled: list[str] = []
        self.image = _FakeImage()

    def get(self, name: str) -> _FakeImage:
        if name not in self.local:
            raise docker.errors.ImageNotFound(f"No such image: {name}")
        return self.image

    def pull(self, ref: str) -> _FakeImage:
        self.pulled.append(ref)
        if ref not in self.available:
            raise docker.errors.NotFound(f"manifest for {ref} not found: manifest unknown: manifest unknown")
        return self.image


class _FakeDocker:
    def __init__(self, local: set[str] | None = None, available: set[str] | None = None) -> None:
        self.images = _FakeImages(local or set(), available or set())


def _fake(**kwargs: Any) -> Any:
    return _FakeDocker(**kwargs)


def test_ensure_image_pulls_resolved_ref_and_tags_user_name() -> None:
    node = _fake(available={f"{REG}/library/busybox:latest"})
    assert ensure_image(node, "busybox", REG) == "busybox:latest"
    assert node.images.pulled == [f"{REG}/library/busybox:latest"]
    assert node.images.image.tags == [("busybox", "latest")]


def test_ensure_image_if_not_present_skips_pull() -> None:
    node = _fake(local={"python:3.11"})
    assert ensure_image(node, "python:3.11", REG) == "python:3.11"
    assert node.images.pulled == []


def test_ensure_image_missing_is_clear_error() -> None:
    node = _fake()
    with pytest.raises(ImageError) as err:
        ensure_image(node, "nosuch:1", REG)
    assert str(err.value) == missing_image_message("nosuch:1", REG)
    assert node.images.pulled == [f"{REG}/library/nosuch:1"]


def test_ensure_image_never_policy() -> None:
    node = _fake(available={f"{REG}/library/busybox:latest"})
    with pytest.raises(ImageError, match="imagePullPolicy is Never"):
        ensure_image(node, "busybox", REG, "Never")
    assert node.images.pulled == []
    with pytest.raises(ImageError, match="invalid imagePullPolicy"):
        ensure_image(node, "busybox", REG, "Sometimes")


def test_daemon_argv(tmp_path: Path) -> None:
    config = write_registry_config(tmp_path / "reg.yml", tmp_path / "data", "127.0.0.1:5999")
    loaded = yaml.safe_load(config.read_text())
    assert loaded["http"]["addr"] == "127.0.0.1:5999"
    assert loaded["storage"]["filesystem"]["rootdirectory"] == str((tmp_path / "data").resolve())
    assert registry_argv(config) == ["docker-registry", "serve", str(config)]
    argv = builder_dockerd_argv(tmp_path / "b", REG)
    assert argv[0] == "dockerd" and "--bridge=none" in argv
    assert (
        argv[-4:]
        == node_dockerd_registry_args(REG)
        == [
            "--registry-mirror",
            f"http://{REG}",
            "--insecure-registry",
            REG,
        ]
    )
    assert f"unix://{(tmp_path / 'b').resolve()}/docker.sock" in argv
    with pytest.raises(ValueError, match="too long"):
        builder_dockerd_argv(tmp_path / ("x" * 100), REG)


def test_base_image_table() -> None:
    tags = {tag for spec in BASE_IMAGES for tag in spec.tags}
    assert {PAUSE_IMAGE, "busybox:latest", "python:3.11", "python:3", "python:latest", "nginx:latest"} <= tags
    for spec in BASE_IMAGES:
        assert (Path(__file__).parents[2] / "minik8s/images/base" / spec.key / "Dockerfile").is_file()


def test_busybox_rootfs_is_deterministic(tmp_path: Path) -> None:
    busybox = Path("/bin/busybox")  # Debian's busybox-static, installed by scripts/install.sh
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    write_busybox_rootfs(busybox, first)
    write_busybox_rootfs(busybox, second)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        names = {m.name: m for m in tar.getmembers()}
    assert names["bin/sh"].issym() and names["bin/sh"].linkname == "/bin/busybox"
    assert names["tmp"].mode == 0o1777
    assert "etc/passwd" in names and "etc/group" in names


def test_detect_debian_mirror(tmp_path: Path) -> None:
    (tmp_path / "a.sources").write_text(
        "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\n"
    )
    assert detect_debian_mirror([tmp_path]) == "http://mirror.example/debian"
    legacy = tmp_path / "sources.list"
    legacy.write_text(
        "# deb http://old/debian bookworm main\ndeb [arch=amd64] http://l.example/debian bookworm main\n"
    )
    assert detect_debian_mirror([legacy]) == "http://l.example/debian"
    assert detect_debian_mirror([tmp_path / "missing"]) == "http://deb.debian.org/debian"
