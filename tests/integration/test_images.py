"""Base and user images against a real registry and a real builder dockerd (root only).

Starts its own ``docker-registry`` on 127.0.0.1 (free port) and a builder dockerd with
``--bridge=none`` (temp dirs), builds the pause and busybox base images (not the
debootstrap ones: too slow for every run), and drives build/push/ls/pull as users and
the kubelet do. Everything is stopped by PID at teardown.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSServer

from minik8s.images import ImageError
from minik8s.images.base import BUSYBOX_IMAGE, BUSYBOX_VERSION_TAG, PAUSE_IMAGE, ensure_base_images
from minik8s.images.daemons import (
    builder_docker_url,
    builder_dockerd_argv,
    registry_argv,
    write_registry_config,
)
from minik8s.images.registry import ensure_image, missing_image_message, resolve_image, wait_ready
from minik8s.images.user import build_image, list_images, push_image
from tests.conftest import free_port, requires

pytestmark = requires("dockerd", "docker-registry")

DOCKERD_START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
POLL_S = 0.1
LOOPBACK = "127.0.0.1"
DNS_TEST_ADDRESS = "127.83.0.1"  # port 53 of an address no resolver on the machine uses


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _connect(url: str, proc: subprocess.Popen[bytes], log: Path) -> docker.DockerClient:
    """A client for the dockerd at ``url`` once it answers (the SDK probes the API version on connect)."""
    deadline = time.monotonic() + DOCKERD_START_TIMEOUT_S
    while True:
        try:
            client = docker.DockerClient(base_url=url)
            client.ping()
            return client
        except docker.errors.DockerException:
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"builder dockerd did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(POLL_S)


@dataclass
class ImageEnv:
    registry: str
    builder: docker.DockerClient
    cache_dir: Path
    workdir: Path


@pytest.fixture(scope="module")
def image_env() -> Iterator[ImageEnv]:
    # Short path: dockerd's containerd socket lives under the exec root.
    workdir = Path(tempfile.mkdtemp(prefix="mk8s-img-"))
    registry = f"{LOOPBACK}:{free_port()}"
    config = write_registry_config(workdir / "registry.yml", workdir / "registry", registry)
    procs = [_start(registry_argv(config), workdir / "registry.log")]
    try:
        procs.append(_start(builder_dockerd_argv(workdir / "b", registry), workdir / "dockerd.log"))
        wait_ready(registry)
        builder = _connect(builder_docker_url(workdir / "b"), procs[-1], workdir / "dockerd.log")
        yield ImageEnv(registry=registry, builder=builder, cache_dir=workdir / "cache", workdir=workdir)
        builder.close()
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def bases(image_env: ImageEnv) -> list[str]:
    return ensure_base_images(
        image_env.builder, image_env.registry, image_env.cache_dir, only=["pause", "busybox"]
    )


def test_base_images_pushed_and_idempotent(image_env: ImageEnv, bases: list[str]) -> None:
    assert sorted(bases) == sorted([PAUSE_IMAGE, BUSYBOX_IMAGE, BUSYBOX_VERSION_TAG])
    listed = dict(list_images(image_env.registry))
    assert sorted(listed["busybox"]) == ["1.37", "latest"]
    assert listed["minik8s/pause"] == ["1"]
    ids = {img.id for img in image_env.builder.images.list()}
    assert (
        ensure_base_images(
            image_env.builder, image_env.registry, image_env.cache_dir, only=["pause", "busybox"]
        )
        == []
    )
    assert {img.id for img in image_env.builder.images.list()} == ids


def test_busybox_runs_after_pull_from_registry(image_env: ImageEnv, bases: list[str]) -> None:
    builder = image_env.builder
    for name in ("busybox:latest", resolve_image("busybox", image_env.registry)):
        builder.images.remove(name, force=True)
    with pytest.raises(docker.errors.ImageNotFound):
        builder.images.get("busybox:latest")
    ref = ensure_image(builder, "busybox", image_env.registry)
    assert ref == "busybox:latest"
    out = builder.containers.run(ref, ["echo", "hi"], remove=True, network_mode="none")
    assert out == b"hi\n"


# Applets Kubernetes examples lean on; `wget -T` segfaulted (exit 139) in Debian bookworm's busybox.
APPLET_CHECKS = {
    "wget -T": "httpd -p 127.0.0.1:8080 -h /etc && wget -T 5 -qO- http://127.0.0.1:8080/group | head -1",
    "wget -T timeout": "nc -l -p 8081 >/dev/null & sleep 0.2; wget -T 1 -qO- http://127.0.0.1:8081/; echo rc=$?",
    "nc -w": "httpd -p 127.0.0.1:8082 -h /etc && echo 'GET /group HTTP/1.0' | nc -w 2 127.0.0.1 8082 | head -1",
    "timeout": "timeout 1 sleep 5; echo rc=$?",
}
APPLET_EXPECT = {"wget -T": "root:x:0:", "wget -T timeout": "rc=1", "nc -w": "HTTP/1.1 200 OK",
                 "timeout": "rc=143"}
# `nc -z` is missing: Debian builds busybox-static without NC_EXTRA (its nc has no -z); see the closing note


@pytest.mark.parametrize("check", list(APPLET_CHECKS))
def test_busybox_applets_work(image_env: ImageEnv, bases: list[str], check: str) -> None:
    ref = ensure_image(image_env.builder, "busybox", image_env.registry)
    out = image_env.builder.containers.run(ref, ["sh", "-c", APPLET_CHECKS[check]], remove=True,
                                           network_mode="none")
    assert out.decode().strip().splitlines()[-1] == APPLET_EXPECT[check]


class _OneName(BaseResolver):
    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        if str(request.q.qname) == "web.test." and request.q.qtype == QTYPE.A:
            reply.add_answer(RR("web.test.", QTYPE.A, rdata=A("10.1.2.3"), ttl=5))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


def test_busybox_nslookup_asks_the_named_server(image_env: ImageEnv, bases: list[str]) -> None:
    """`nslookup NAME SERVER`, as Kubernetes' DNS debugging guide runs it (the server on port 53 of a loopback
    address of its own; the container shares the host's network)."""
    server = DNSServer(_OneName(), address=DNS_TEST_ADDRESS, port=53)
    server.start_thread()
    try:
        ref = ensure_image(image_env.builder, "busybox", image_env.registry)
        script = f"nslookup web.test {DNS_TEST_ADDRESS} | tail -n +3; nslookup nope.test {DNS_TEST_ADDRESS}; echo rc=$?"
        out = image_env.builder.containers.run(ref, ["sh", "-c", script], remove=True, network_mode="host").decode()
        assert "Address: 10.1.2.3" in out and "NXDOMAIN" in out, out
        assert out.strip().splitlines()[-1] == "rc=1", out
    finally:
        server.stop()


def test_pause_exits_zero_on_sigterm(image_env: ImageEnv, bases: list[str]) -> None:
    ref = ensure_image(image_env.builder, PAUSE_IMAGE, image_env.registry)
    container = image_env.builder.containers.run(ref, detach=True, network_mode="none")
    try:
        container.stop(timeout=int(STOP_TIMEOUT_S))
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0
    finally:
        container.remove(force=True)


def test_missing_image_is_clear_error(image_env: ImageEnv, bases: list[str]) -> None:
    with pytest.raises(ImageError) as err:
        ensure_image(image_env.builder, "nosuch:1", image_env.registry)
    assert str(err.value) == missing_image_message("nosuch:1", image_env.registry)


def test_user_build_push_ls(image_env: ImageEnv, bases: list[str], tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        'FROM busybox\nCOPY msg /msg\nRUN cat /msg > /copied\nCMD ["cat", "/copied"]\n'
    )
    (tmp_path / "msg").write_text("from user image\n")
    ref = build_image(image_env.builder, tmp_path, "team/app:1", image_env.registry)
    assert ref == f"{image_env.registry}/team/app:1"
    assert push_image(image_env.builder, "team/app:1", image_env.registry) == ref
    assert ("team/app", ["1"]) in list_images(image_env.registry)
    image_env.builder.images.remove(ref, force=True)
    image_env.builder.images.remove("team/app:1", force=True)
    local = ensure_image(image_env.builder, "team/app:1", image_env.registry)
    out = image_env.builder.containers.run(local, remove=True, network_mode="none")
    assert out == b"from user image\n"


@pytest.mark.parametrize(
    ("dockerfile", "message"),
    [
        ("FROM nosuchbase:7\n", 'base image "nosuchbase:7" not found in the cluster registry'),
        ("FROM busybox\nFROOB x\n", "unknown instruction"),
        ("FROM busybox\nRUN false\n", "returned a non-zero code"),
    ],
)
def test_build_errors_are_one_line(
    image_env: ImageEnv, bases: list[str], tmp_path: Path, dockerfile: str, message: str
) -> None:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    before = list_images(image_env.registry)
    with pytest.raises(ImageError) as err:
        build_image(image_env.builder, tmp_path, "broken:1", image_env.registry)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert list_images(image_env.registry) == before


def test_unreachable_registry(image_env: ImageEnv, tmp_path: Path) -> None:
    dead = f"{LOOPBACK}:{free_port()}"
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    with pytest.raises(ImageError, match=f"cluster registry {dead} is unreachable"):
        build_image(image_env.builder, tmp_path, "x:1", dead)
    with pytest.raises(ImageError, match=f"cluster registry {dead} is unreachable"):
        list_images(dead)
